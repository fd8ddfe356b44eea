//! What every API request passes through, before its handler:
//!
//! - **rate limits**: `web.requests_per_window` per `web.window_secs`, per
//!   token and per source address (GCRA buckets: the whole allowance may
//!   be spent at once, then it comes back evenly over the window). Past
//!   it, 429 with `Retry-After`. Loopback addresses are exempt from the
//!   address limit unless `limits.limit_loopback` is set, as for c2s.
//! - **CORS**: the token-authenticated API answers any origin, without
//!   credentials (`Access-Control-Allow-Origin: *`), and preflights get
//!   204. The login form (`/oauth/authorize`), which a cookie protects,
//!   gets no CORS headers at all.
//! - **metrics**: requests by route and status.
//!
//! The web page and the public routes (feeds, discovery) spend the same
//! budgets and are counted the same way, through [`over_budget`] and
//! [`count`]; only the page's 429 differs (an HTML page).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::{hash, ApiError};
use crate::web::Peer;
use crate::Shared;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// Keys kept before forgotten ones are swept.
const SWEEP_AT: usize = 10_000;

/// The API's request budgets.
#[derive(Debug)]
pub(crate) struct ApiLimits {
    by_token: Keyed<[u8; 32]>,
    by_addr: Keyed<IpAddr>,
    limit_loopback: bool,
}

impl ApiLimits {
    pub(crate) fn new(web: &crate::web::WebConfig, limit_loopback: bool) -> Self {
        let n = NonZeroU32::new(web.requests_per_window).unwrap_or(NonZeroU32::MIN);
        let period = Duration::from_secs(web.window_secs.max(1)) / n.get();
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .expect("a non-zero period")
            .allow_burst(n);
        Self {
            by_token: RateLimiter::keyed(quota),
            by_addr: RateLimiter::keyed(quota),
            limit_loopback,
        }
    }

    /// `Ok` when the request is within both budgets; otherwise how long
    /// until it would be.
    pub(crate) fn check(&self, token: Option<[u8; 32]>, ip: IpAddr) -> Result<(), Duration> {
        let now = DefaultClock::default().now();
        if let Some(t) = token {
            self.by_token
                .check_key(&t)
                .map_err(|e| e.wait_time_from(now))?;
            if self.by_token.len() > SWEEP_AT {
                self.by_token.retain_recent();
            }
        }
        if !ip.is_loopback() || self.limit_loopback {
            self.by_addr
                .check_key(&ip)
                .map_err(|e| e.wait_time_from(now))?;
            if self.by_addr.len() > SWEEP_AT {
                self.by_addr.retain_recent();
            }
        }
        Ok(())
    }
}

fn token_of(req: &Request) -> Option<[u8; 32]> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, t) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| hash(t.trim()))
}

/// The route a request matched, as the metrics label it.
pub(crate) fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned())
}

/// How long until the request would be within its budgets (per `token`,
/// and per source address), or `None` when it is within them now.
pub(crate) fn over_budget(
    shared: &Shared,
    req: &Request,
    token: Option<[u8; 32]>,
) -> Option<Duration> {
    let ip = req.extensions().get::<Peer>()?.addr.ip();
    let wait = shared.api_limits.check(token, ip).err()?;
    shared.metrics.limited("api_request");
    Some(wait)
}

/// A 429's `Retry-After`, in whole seconds.
pub(crate) fn retry_after(r: &mut Response, wait: Duration) {
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// Counts a request in `http_requests_total` by route and status.
pub(crate) fn count(shared: &Shared, route: String, r: &Response) {
    shared
        .metrics
        .http_requests
        .get_or_create(&vec![
            ("route", route),
            ("status", r.status().as_u16().to_string()),
        ])
        .inc();
}

/// The layer's function.
pub(crate) async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let route = route_of(&req);
    let cors = route != "/oauth/authorize";
    let mut response = if cors && req.method() == Method::OPTIONS {
        preflight()
    } else {
        match over_budget(&shared, &req, token_of(&req)) {
            Some(wait) => {
                let mut r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests")
                    .into_response();
                retry_after(&mut r, wait);
                r
            }
            None => next.run(req).await,
        }
    };
    if cors {
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    count(&shared, route, &response);
    response
}

/// The same budgets and metrics for the public, non-API routes (feeds,
/// discovery, the avatar). Their errors are JSON like the API's, but they
/// take no token and send no CORS headers.
pub(crate) async fn public(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    let route = route_of(&req);
    let response = match over_budget(&shared, &req, None) {
        Some(wait) => {
            let mut r =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests").into_response();
            retry_after(&mut r, wait);
            r
        }
        None => next.run(req).await,
    };
    count(&shared, route, &response);
    response
}

fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, POST, PUT, PATCH, DELETE, OPTIONS",
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type, Idempotency-Key",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_hold_per_token_and_per_address() {
        let web = crate::web::WebConfig {
            requests_per_window: 3,
            window_secs: 300,
            ..Default::default()
        };
        let l = ApiLimits::new(&web, true);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!((0..3).all(|_| l.check(Some([1; 32]), other).is_ok()));
        // Token 1 spent its three (the address above is another).
        let wait = l.check(Some([1; 32]), ip).unwrap_err();
        assert!(
            wait > Duration::from_secs(50) && wait <= Duration::from_secs(100),
            "{wait:?}"
        );
        // The address budget is separate: three from ip without a token.
        assert!((0..3).all(|_| l.check(None, ip).is_ok()));
        assert!(l.check(None, ip).is_err());
        assert!(
            l.check(Some([2; 32]), ip).is_err(),
            "the address is spent whatever the token"
        );
        // Loopback is exempt from the address budget unless configured.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let l = ApiLimits::new(&web, false);
        assert!((0..10).all(|_| l.check(None, lo).is_ok()));
    }
}

//! The web page: server-rendered HTML (maud, checked at compile time) with
//! a little JavaScript, no front-end build.
//!
//! - [`profile`]: `/users/{localpart}`, anyone's public posts, paged, and
//!   one post at `/users/{localpart}/statuses/{id}`; readable without
//!   JavaScript;
//! - [`session`]: `/login` and `/logout`. A web session is an API token
//!   (stored hashed, revoked at logout) held in an HTTP-only cookie; every
//!   form carries a CSRF token derived from it;
//! - [`home`]: `/`, the home timeline of the logged-in account, paged,
//!   with a post box, follow and unfollow, and live updates: `home.js`
//!   reads the account's streaming API (`/home/stream`, the same SSE
//!   stream Mastodon apps get, authorized by the cookie).
//!
//! Posts are text: maud escapes everything it writes, and the script
//! builds nodes with `textContent`. Every page is sent with a
//! Content-Security-Policy that allows only this origin's script and
//! style, so even markup that slipped through could run nothing.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};

use super::api::entities::entry_of;
use super::api::guard as api_guard;
use super::api::{self, ApiError};
use crate::store::Status;
use crate::Shared;

mod home;
mod profile;
mod session;

/// The policy every page is sent with: nothing but this origin's files,
/// no inline script or style, no framing, forms only to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = include_str!("style.css");
const HOME_JS: &str = include_str!("home.js");

/// The page routes.
pub(super) fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(home::page))
        .route("/home/post", post(home::post))
        // follow, unfollow, approve, decline
        .route("/home/{action}", post(home::account_action))
        .route("/home/privacy", post(home::privacy))
        .route("/home/stream", get(home::stream))
        .route("/login", get(session::form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/users/{localpart}", get(profile::profile))
        .route("/users/{localpart}/statuses/{id}", get(profile::status))
        .route("/static/style.css", get(|| asset("text/css", STYLE)))
        .route("/static/home.js", get(|| asset("text/javascript", HOME_JS)))
        .route_layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
}

async fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// What every page passes through: the API's request budgets (per
/// session and per address; past them, an HTML 429), the security
/// headers, and the request metrics.
async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let route = api_guard::route_of(&req);
    let session = api::cookie(req.headers(), session::SESSION).map(|t| api::hash(&t));
    let mut r = match api_guard::over_budget(&shared, &req, session) {
        Some(wait) => {
            let mut r = error_page(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests: try again in a little while.",
            ));
            api_guard::retry_after(&mut r, wait);
            r
        }
        None => next.run(req).await,
    };
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    api_guard::count(&shared, route, &r);
    r
}

/// A whole page: `head` extra (links), the body.
fn layout(title: &str, head: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Starling" }
                link rel="stylesheet" href="/static/style.css";
                (head)
            }
            body {
                header.top {
                    a.brand href="/" { "Starling" }
                }
                main { (body) }
            }
        }
    }
}

/// Statuses as a list (`id` names it for the script): author, time and
/// text, all escaped. Local authors link to their profiles.
fn status_list(statuses: &[Status], domain: &str, id: &str) -> Markup {
    html! {
        ol.statuses id=(id) {
            @for st in statuses {
                @let entry = entry_of(st);
                @let local = (st.owner.domain() == domain).then(|| st.owner.node()).flatten();
                li.status data-id=(st.id) {
                    div.meta {
                        @if let Some(l) = local {
                            a.author href={ "/users/" (l) } { (l) }
                            " · "
                            a.time href={ "/users/" (l) "/statuses/" (st.id) } {
                                time { (shown_time(st.created_ms())) }
                            }
                        } @else {
                            span.author { (st.owner) }
                            " · "
                            time { (shown_time(st.created_ms())) }
                        }
                    }
                    p.text { (entry.content) }
                }
            }
        }
    }
}

/// An error as a page, with its status: the API's reasons, shown.
fn error_page(e: ApiError) -> Response {
    let ApiError(status, why) = e;
    let title = status.canonical_reason().unwrap_or("Error");
    let page = layout(
        title,
        html! {},
        html! {
            h1 { (title) }
            p.error role="alert" { (why) }
            p { a href="/" { "Back home" } }
        },
    );
    (status, page).into_response()
}

/// 303 See Other to `to`: the answer to a form, so a reload does not post
/// it again.
fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// A `return` path from a form, if it stays on this site.
fn local_path(p: Option<String>) -> String {
    match p {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p,
        _ => "/".to_owned(),
    }
}

/// A status's time as shown: `2026-12-07 21:30 UTC`.
fn shown_time(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    let s = httpdate::fmt_http_date(t);
    // "Mon, 07 Dec 2026 21:30:00 GMT" → "07 Dec 2026 21:30 UTC".
    s.get(5..22).map_or(s.clone(), |d| format!("{d} UTC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_the_site() {
        assert_eq!(local_path(Some("/users/jane".into())), "/users/jane");
        assert_eq!(local_path(Some("//evil.example/".into())), "/");
        assert_eq!(local_path(Some("https://evil.example/".into())), "/");
        assert_eq!(local_path(Some("/\\evil.example".into())), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn times_are_shown_to_the_minute() {
        assert_eq!(shown_time(0), "01 Jan 1970 00:00 UTC");
        assert_eq!(shown_time(1_796_160_645_000), "01 Dec 2026 21:30 UTC");
    }
}

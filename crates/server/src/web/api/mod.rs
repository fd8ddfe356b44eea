//! The Mastodon-compatible client API, over the same accounts, follows and
//! items as XMPP (the mapping is in the README, *Use it from a Mastodon
//! app*).
//!
//! - [`oauth`]: applications, the login form, tokens (stored hashed);
//! - [`entities`]: Account, Status and Instance as JSON, with every field
//!   Mastodon's documentation gives them (clients parse strictly);
//! - [`accounts`]: identity, lookup, an account's statuses;
//! - [`follows`]: follow and unfollow (explicit or presence subscriptions),
//!   relationships, followers, following and follow requests;
//! - [`statuses`]: post, read, delete, and the timelines;
//! - [`streaming`]: the user and public streams as server-sent events.
//!
//! Every route passes [`guard`]: rate limits, CORS, metrics.
//!
//! Errors are Mastodon's shape, `{"error": "…"}` with a 4xx status; a
//! malformed body or parameter is a 400 or 422, never a 500.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::Digest;
use stanza::BareJid;

use crate::Shared;

pub(crate) mod accounts;
pub(crate) mod entities;
pub(crate) mod follows;
pub(crate) mod guard;
pub(crate) mod oauth;
pub(crate) mod statuses;
pub(crate) mod streaming;

/// The API's routes.
pub(super) fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    let guard = axum::middleware::from_fn_with_state(shared.clone(), guard::guard);
    Router::new()
        .route("/api/v1/apps", post(oauth::create_app))
        .route(
            "/oauth/authorize",
            get(oauth::authorize_form).post(oauth::authorize),
        )
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/api/v1/instance", get(entities::instance_v1))
        .route("/api/v2/instance", get(entities::instance_v2))
        .route("/.well-known/nodeinfo", get(entities::nodeinfo_links))
        .route("/nodeinfo/2.0", get(entities::nodeinfo))
        .route(
            "/api/v1/accounts/verify_credentials",
            get(accounts::verify_credentials),
        )
        .route(
            "/api/v1/accounts/update_credentials",
            axum::routing::patch(accounts::update_credentials),
        )
        .route("/api/v1/accounts/lookup", get(accounts::lookup))
        .route("/api/v1/accounts/{id}", get(accounts::account))
        .route(
            "/api/v1/accounts/{id}/statuses",
            get(statuses::account_statuses),
        )
        .route(
            "/api/v1/accounts/relationships",
            get(follows::relationships),
        )
        .route("/api/v1/accounts/search", get(accounts::search))
        .route("/api/v2/search", get(accounts::search))
        .route("/api/v1/accounts/{id}/follow", post(follows::follow))
        .route("/api/v1/accounts/{id}/unfollow", post(follows::unfollow))
        .route(
            "/api/v1/accounts/{id}/remove_from_followers",
            post(follows::remove_from_followers),
        )
        .route("/api/v1/accounts/{id}/followers", get(follows::followers))
        .route("/api/v1/accounts/{id}/following", get(follows::following))
        .route("/api/v1/follow_requests", get(follows::follow_requests))
        .route(
            "/api/v1/follow_requests/{id}/authorize",
            post(follows::authorize),
        )
        .route("/api/v1/follow_requests/{id}/reject", post(follows::reject))
        .route("/api/v1/statuses", post(statuses::create))
        .route(
            "/api/v1/statuses/{id}",
            get(statuses::show).delete(statuses::delete),
        )
        .route("/api/v1/timelines/home", get(statuses::home))
        .route("/api/v1/streaming/user", get(streaming::user))
        .route("/api/v1/streaming/public", get(streaming::public))
        .route("/api/v1/streaming/health", get(streaming::health))
        .route_layer(guard)
        .route("/api/v1/timelines/public", get(statuses::public))
}

/// An API error: its status and Mastodon's `{"error": …}` body.
#[derive(Debug)]
pub(crate) struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub(crate) fn new(status: StatusCode, why: impl Into<String>) -> Self {
        Self(status, why.into())
    }
    pub(crate) fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "The access token is invalid")
    }
    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Record not found")
    }
    pub(crate) fn unprocessable(why: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, why)
    }
    /// The store failed: logged, and a 503 (the request may be retried).
    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "api: store call failed");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "The store is unavailable")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

/// The full JID the API acts as for `me` (publish, retract, subscribe):
/// a resource of the account, as a client's would be.
pub(crate) fn api_jid(me: &BareJid) -> ApiResult<stanza::FullJid> {
    stanza::FullJid::new(&format!("{me}/starling-api"))
        .map_err(|_| ApiError::store("the account's JID is not valid with a resource"))
}

/// A cookie's value, if the request carries it.
pub(crate) fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
}

/// SHA-256 of a token or secret, the form they are stored in.
pub(crate) fn hash(secret: &str) -> [u8; 32] {
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// A fresh random secret: 32 bytes, URL-safe base64.
pub(crate) fn new_secret() -> String {
    use base64::Engine;
    let r: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r)
}

/// The account a request's token stands for: `Authorization: Bearer …`,
/// or `access_token` in the query (which browsers' EventSource needs).
#[derive(Debug, Clone)]
pub(crate) struct Authed {
    pub jid: BareJid,
    pub scopes: String,
}

fn bearer(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    let q = parts.uri.query()?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "access_token")
        .map(|(_, v)| v)
}

async fn authenticate(parts: &Parts, shared: &Arc<Shared>) -> ApiResult<Option<Authed>> {
    let Some(token) = bearer(parts) else {
        return Ok(None);
    };
    let h = hash(&token);
    let rec = shared
        .db(move |s| s.token(&h))
        .await
        .map_err(ApiError::store)?
        .ok_or_else(ApiError::unauthorized)?;
    let jid = BareJid::new(&rec.jid).map_err(|_| ApiError::unauthorized())?;
    Ok(Some(Authed {
        jid,
        scopes: rec.scopes,
    }))
}

impl Authed {
    /// Refuses a token without a write scope (`write`, or the
    /// `write:…` one named), as Mastodon does.
    pub(crate) fn require_write(&self, part: &str) -> ApiResult<()> {
        let ok = self
            .scopes
            .split_whitespace()
            .any(|s| s == "write" || s.strip_prefix("write:") == Some(part));
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "This action is outside the authorized scopes",
            ))
        }
    }
}

impl FromRequestParts<Arc<Shared>> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> ApiResult<Self> {
        authenticate(parts, shared)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }
}

/// A token when one is sent (public reads work without).
#[derive(Debug, Clone)]
pub(crate) struct MaybeAuthed(pub Option<Authed>);

impl FromRequestParts<Arc<Shared>> for MaybeAuthed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> ApiResult<Self> {
        Ok(Self(authenticate(parts, shared).await?))
    }
}

/// A request's parameters, from the query string and the body (a form or
/// JSON, as clients send either): name → value, repeated names (`a[]`)
/// joined into a list.
#[derive(Debug, Default)]
pub(crate) struct Params(pub HashMap<String, serde_json::Value>);

impl Params {
    /// A parameter as text (numbers and booleans as written).
    pub(crate) fn str(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        }
    }

    /// A parameter that must be an unsigned number, when present.
    pub(crate) fn u64(&self, name: &str) -> ApiResult<Option<u64>> {
        match self.str(name).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("{name} must be a number"))
            }),
        }
    }

    fn add_pairs(&mut self, pairs: Vec<(String, String)>) {
        for (k, v) in pairs {
            let k = k.strip_suffix("[]").map(str::to_owned).unwrap_or(k);
            self.0.insert(k, serde_json::Value::String(v));
        }
    }

    /// The query string's parameters alone.
    pub(crate) fn query(uri: &axum::http::Uri) -> ApiResult<Self> {
        let mut p = Self::default();
        if let Some(q) = uri.query() {
            let pairs = serde_urlencoded::from_str(q)
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "malformed query string"))?;
            p.add_pairs(pairs);
        }
        Ok(p)
    }
}

impl FromRequest<Arc<Shared>> for Params {
    type Rejection = ApiError;
    async fn from_request(req: Request, shared: &Arc<Shared>) -> ApiResult<Self> {
        let mut p = Self::query(req.uri())?;
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let limit = shared.config.web.max_body_bytes;
        let body = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over {limit} bytes"),
                )
            })?;
        p.add_body(&body, json)?;
        Ok(p)
    }
}

impl Params {
    fn add_body(&mut self, body: &Bytes, json: bool) -> ApiResult<()> {
        if body.is_empty() {
            return Ok(());
        }
        if json {
            let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}"))
            })?;
            let serde_json::Value::Object(map) = v else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "the JSON body must be an object",
                ));
            };
            self.0.extend(map);
        } else {
            let pairs = serde_urlencoded::from_bytes(body)
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "malformed form body"))?;
            self.add_pairs(pairs);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_read_forms_json_and_refuse_junk() {
        let mut p = Params::default();
        p.add_body(
            &Bytes::from_static(b"status=hi+there&media_ids[]=1&limit=5"),
            false,
        )
        .unwrap();
        assert_eq!(p.str("status").as_deref(), Some("hi there"));
        assert_eq!(p.u64("limit").unwrap(), Some(5));
        assert!(p.0.contains_key("media_ids"));
        let mut j = Params::default();
        j.add_body(
            &Bytes::from_static(br#"{"status":"x","limit":7,"sensitive":true}"#),
            true,
        )
        .unwrap();
        assert_eq!(j.u64("limit").unwrap(), Some(7));
        assert_eq!(j.str("sensitive").as_deref(), Some("true"));
        let e = Params::default()
            .add_body(&Bytes::from_static(b"{not json"), true)
            .unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        let e = Params::default()
            .add_body(&Bytes::from_static(b"[1]"), true)
            .unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        let mut bad = Params::default();
        bad.add_pairs(vec![("limit".into(), "ten".into())]);
        assert!(bad.u64("limit").is_err());
    }
}

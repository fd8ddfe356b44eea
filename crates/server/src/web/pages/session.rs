//! Logging in and out of the web page.
//!
//! - A session is an API token of the account, made at login and stored
//!   only as its hash, like any other; the browser holds it in an
//!   HTTP-only `SameSite=Lax` cookie (`Secure` over HTTPS). Logging out
//!   revokes it, so a copied cookie is worthless afterwards.
//! - Forms of a logged-in page carry a CSRF token: a hash of the session
//!   token under a fixed label, which another site cannot compute and
//!   which needs no storage. The login form itself has no session yet; it
//!   uses a double-submit token in its own strict cookie.
//! - The password is checked as the API's password grant does, under the
//!   login back-off per account and per address.

use std::sync::Arc;

use axum::extract::{Extension, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use sha2::Digest;
use stanza::BareJid;

use super::{error_page, layout, see_other};
use crate::sasl::constant_time_eq;
use crate::web::api::{cookie, hash, new_secret, ApiError, ApiResult, Authed, Params};
use crate::web::Peer;
use crate::Shared;

/// The session cookie.
pub(super) const SESSION: &str = "starling_session";
/// The login form's double-submit cookie.
const LOGIN_CSRF: &str = "starling_login_csrf";
/// The application a web session's token is recorded under.
pub(super) const WEB_CLIENT: &str = "starling-web";

/// The logged-in account of a page request, from its cookie.
#[derive(Debug, Clone)]
pub(super) struct WebSession {
    pub jid: BareJid,
    /// The session token (for the CSRF token and logout).
    token: String,
}

impl WebSession {
    /// The CSRF token of this session's forms.
    pub(super) fn csrf(&self) -> String {
        csrf_of(&self.token)
    }

    /// Checks a form's CSRF token.
    pub(super) fn check(&self, p: &Params) -> ApiResult<()> {
        let sent = p.str("csrf").unwrap_or_default();
        if constant_time_eq(sent.as_bytes(), self.csrf().as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "The form's CSRF token is missing or wrong: reload the page and try again",
            ))
        }
    }

    /// The API's view of this session.
    pub(super) fn authed(&self) -> Authed {
        Authed {
            jid: self.jid.clone(),
            scopes: "read write follow".to_owned(),
        }
    }
}

fn csrf_of(token: &str) -> String {
    let d = sha2::Sha256::digest(format!("starling web csrf\0{token}"));
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session when the cookie names a live one.
pub(super) async fn session_of(
    headers: &HeaderMap,
    shared: &Arc<Shared>,
) -> ApiResult<Option<WebSession>> {
    let Some(token) = cookie(headers, SESSION).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let h = hash(&token);
    let rec = shared
        .db(move |s| s.token(&h))
        .await
        .map_err(ApiError::store)?;
    Ok(rec
        .filter(|r| r.client_id == WEB_CLIENT)
        .and_then(|r| BareJid::new(&r.jid).ok())
        .map(|jid| WebSession { jid, token }))
}

/// An optional session, as an extractor (a dead cookie is no session).
#[derive(Debug, Clone)]
pub(super) struct MaybeSession(pub Option<WebSession>);

impl FromRequestParts<Arc<Shared>> for MaybeSession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Response> {
        session_of(&parts.headers, shared)
            .await
            .map(Self)
            .map_err(error_page)
    }
}

/// A required session: without one, the browser goes to the login form.
impl FromRequestParts<Arc<Shared>> for WebSession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Response> {
        match session_of(&parts.headers, shared).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(see_other("/login")),
            Err(e) => Err(error_page(e)),
        }
    }
}

/// A form posted by a logged-in page, its CSRF token checked: the session
/// and the form's fields. Without a session, the browser goes to the
/// login form; with a bad token, a 403 page.
#[derive(Debug)]
pub(super) struct SessionForm(pub WebSession, pub Params);

impl FromRequest<Arc<Shared>> for SessionForm {
    type Rejection = Response;
    async fn from_request(req: Request, shared: &Arc<Shared>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let me = WebSession::from_request_parts(&mut parts, shared).await?;
        let req = Request::from_parts(parts, body);
        let p = Params::from_request(req, shared)
            .await
            .map_err(error_page)?;
        me.check(&p).map_err(error_page)?;
        Ok(Self(me, p))
    }
}

fn session_cookie(value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{SESSION}={value}; Path=/; HttpOnly; SameSite=Lax");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    c
}

fn login_page(csrf: &str, username: &str, error: Option<&str>) -> maud::Markup {
    layout(
        "Log in",
        html! {},
        html! {
            section.card.narrow {
                h1 { "Log in" }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Username or JID"
                        input name="username" autocomplete="username" required value=(username);
                    }
                    label { "Password"
                        input name="password" type="password" autocomplete="current-password" required;
                    }
                    button type="submit" { "Log in" }
                }
                p.hint { "Use the account you use with your XMPP client." }
            }
        },
    )
}

fn with_login_csrf(status: StatusCode, csrf: &str, page: maud::Markup) -> Response {
    let c = format!("{LOGIN_CSRF}={csrf}; Path=/login; HttpOnly; SameSite=Strict");
    (status, [(header::SET_COOKIE, c)], page).into_response()
}

/// `GET /login`.
pub(super) async fn form(MaybeSession(me): MaybeSession) -> Response {
    if me.is_some() {
        return see_other("/");
    }
    let csrf = new_secret();
    with_login_csrf(StatusCode::OK, &csrf, login_page(&csrf, "", None))
}

/// `POST /login`: a session and its cookie, then home.
pub(super) async fn login(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let sent = p.str("csrf").unwrap_or_default();
    let good = cookie(&headers, LOGIN_CSRF)
        .is_some_and(|c| !c.is_empty() && constant_time_eq(c.as_bytes(), sent.as_bytes()));
    if !good {
        return error_page(ApiError::new(
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong: reload the login page and try again",
        ));
    }
    let username = p.str("username").unwrap_or_default();
    let password = p.str("password").unwrap_or_default();
    let checked = crate::web::api::oauth::check_password(
        &shared,
        &headers,
        peer.addr.ip(),
        username.trim(),
        password,
    )
    .await;
    let jid = match checked {
        Ok(Some(j)) => j,
        Ok(None) => {
            let csrf = new_secret();
            let page = login_page(&csrf, &username, Some("Wrong username or password."));
            return with_login_csrf(StatusCode::UNAUTHORIZED, &csrf, page);
        }
        Err(e) => return error_page(e),
    };
    let scopes = "read write follow";
    match crate::web::api::oauth::new_token(&shared, &jid, WEB_CLIENT, scopes).await {
        Ok((token, _)) => {
            let mut r = see_other("/");
            let set = [
                session_cookie(&token, peer.tls, None),
                format!("{LOGIN_CSRF}=; Path=/login; Max-Age=0"),
            ];
            for c in set {
                if let Ok(v) = c.parse() {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(e) => error_page(e),
    }
}

/// `POST /logout`: the session's token is revoked and the cookie cleared.
pub(super) async fn logout(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    SessionForm(me, _): SessionForm,
) -> Response {
    let h = hash(&me.token);
    if let Err(e) = shared.db(move |s| s.revoke_token(&h)).await {
        return error_page(ApiError::store(e));
    }
    let mut r = see_other("/login");
    if let Ok(v) = session_cookie("", peer.tls, Some(0)).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_session_and_are_not_the_token() {
        let (a, b) = (csrf_of("one"), csrf_of("two"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(!a.contains("one"));
        assert_eq!(a, csrf_of("one"));
    }

    #[test]
    fn the_session_cookie_is_http_only_and_secure_over_https() {
        let c = session_cookie("t", true, None);
        assert!(c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Lax"));
        assert!(!session_cookie("t", false, None).contains("Secure"));
        assert!(session_cookie("", false, Some(0)).contains("Max-Age=0"));
    }
}

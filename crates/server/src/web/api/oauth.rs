//! OAuth 2 for the API, as Mastodon clients use it:
//!
//! - `POST /api/v1/apps` registers a client (its secret is stored hashed);
//! - `GET /oauth/authorize` is a login form, protected against cross-site
//!   posts by a double-submit token (a random value in an HTTP-only,
//!   `SameSite=Strict` cookie and in the form, which must agree); a login
//!   redirects with a code, or shows it for the out-of-band redirect
//!   `urn:ietf:wg:oauth:2.0:oob`;
//! - `POST /oauth/token` exchanges a code, or a username and password (the
//!   password grant; the username may be the JID or its localpart, which
//!   toot sends as `email`), for a token;
//! - `POST /oauth/revoke` revokes one.
//!
//! Passwords are checked against the account's SCRAM keys, slowed down per
//! account and per address by the same back-off as XMPP logins. Codes live
//! in memory for [`CODE_TTL`], at most [`MAX_CODES`] at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;
use stanza::BareJid;

use super::{hash, new_secret, ApiError, ApiResult, Params};
use crate::backoff::Key;
use crate::sasl::{constant_time_eq, Hash};
use crate::store::{AppRecord, TokenRecord};
use crate::web::feed::domain_of;
use crate::web::Peer;
use crate::Shared;

/// The out-of-band redirect: the code is shown, not sent.
pub(crate) const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";
/// How long an authorization code is good for.
pub(crate) const CODE_TTL: Duration = Duration::from_secs(600);
/// Most codes waiting to be exchanged; past it the oldest go.
pub(crate) const MAX_CODES: usize = 10_000;
const CSRF_COOKIE: &str = "starling_oauth_csrf";

/// A code waiting for its exchange.
#[derive(Debug, Clone)]
struct Code {
    jid: BareJid,
    client_id: String,
    redirect_uri: String,
    scopes: String,
    made: Instant,
}

/// Authorization codes by hash, bounded.
#[derive(Debug, Default)]
pub(crate) struct Codes(dashmap::DashMap<[u8; 32], Code>);

impl Codes {
    fn insert(&self, code: &str, c: Code) {
        if self.0.len() >= MAX_CODES {
            self.0.retain(|_, c| c.made.elapsed() < CODE_TTL);
            if self.0.len() >= MAX_CODES {
                let oldest = self.0.iter().min_by_key(|e| e.made).map(|e| *e.key());
                if let Some(k) = oldest {
                    self.0.remove(&k);
                }
            }
        }
        self.0.insert(hash(code), c);
    }

    /// Takes a code: each works once, and only while fresh.
    fn take(&self, code: &str) -> Option<Code> {
        self.0
            .remove(&hash(code))
            .map(|(_, c)| c)
            .filter(|c| c.made.elapsed() < CODE_TTL)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// `POST /api/v1/apps`.
pub(super) async fn create_app(State(shared): State<Arc<Shared>>, p: Params) -> ApiResult {
    let name = p
        .str("client_name")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::unprocessable("client_name is required"))?;
    let redirect_uris = match p.0.get("redirect_uris") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => p.str("redirect_uris").unwrap_or_default(),
    };
    if redirect_uris.split_whitespace().next().is_none() {
        return Err(ApiError::unprocessable("redirect_uris is required"));
    }
    if name.len() > 200 || redirect_uris.len() > 2000 {
        return Err(ApiError::unprocessable(
            "client_name or redirect_uris is too long",
        ));
    }
    let scopes = p.str("scopes").unwrap_or_else(|| "read".into());
    let secret = new_secret();
    let app = AppRecord {
        name,
        client_id: new_secret(),
        secret_hash: hash(&secret),
        redirect_uris,
        scopes,
        website: p.str("website"),
    };
    let a = app.clone();
    shared
        .db(move |s| s.create_app(&a))
        .await
        .map_err(ApiError::store)?;
    let uris: Vec<&str> = app.redirect_uris.split_whitespace().collect();
    Ok(Json(json!({
        "id": app.client_id,
        "name": app.name,
        "website": app.website,
        "scopes": app.scopes.split_whitespace().collect::<Vec<_>>(),
        "redirect_uri": app.redirect_uris,
        "redirect_uris": uris,
        "vapid_key": "",
        "client_id": app.client_id,
        "client_secret": secret,
        "client_secret_expires_at": 0,
    }))
    .into_response())
}

/// The application `client_id` names, if `client_secret` (when given) is
/// its secret.
async fn app_of(
    shared: &Arc<Shared>,
    p: &Params,
    need_secret: bool,
) -> ApiResult<Option<AppRecord>> {
    let Some(id) = p.str("client_id") else {
        return Ok(None);
    };
    let app = shared
        .db(move |s| s.app(&id))
        .await
        .map_err(ApiError::store)?;
    let Some(app) = app else { return Ok(None) };
    match p.str("client_secret") {
        Some(secret) if constant_time_eq(&hash(&secret), &app.secret_hash) => Ok(Some(app)),
        None if !need_secret => Ok(Some(app)),
        _ => Ok(None),
    }
}

/// Checks a username (JID or localpart) and password, under the login
/// back-off. The account's JID when they match.
pub(crate) async fn check_password(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    ip: IpAddr,
    username: &str,
    password: String,
) -> ApiResult<Option<BareJid>> {
    let domain = domain_of(shared, headers);
    let name = if username.contains('@') {
        username.to_owned()
    } else {
        format!("{username}@{domain}")
    };
    let Ok(jid) = BareJid::new(&name) else {
        return Ok(None);
    };
    let keys = [Key::Account(jid.clone()), Key::addr(ip)];
    tokio::time::sleep(shared.backoff.wait(&keys, Instant::now())).await;
    let j = jid.clone();
    let ok = shared
        .db(move |s| {
            Ok::<_, crate::StoreError>(s.account(&j)?.is_some_and(|r| {
                r.keys(Hash::Sha256)
                    .or_else(|| r.keys(Hash::Sha1))
                    .is_some_and(|k| k.verify_password(&password))
            }))
        })
        .await
        .map_err(ApiError::store)?;
    if ok {
        shared.backoff.succeeded(&jid);
        Ok(Some(jid))
    } else {
        shared.backoff.failed(&keys, Instant::now());
        Ok(None)
    }
}

/// Makes and stores a token for `jid`: the token and its record.
pub(crate) async fn new_token(
    shared: &Arc<Shared>,
    jid: &BareJid,
    client_id: &str,
    scopes: &str,
) -> ApiResult<(String, TokenRecord)> {
    let token = new_secret();
    let rec = TokenRecord {
        jid: jid.to_string(),
        client_id: client_id.to_owned(),
        scopes: scopes.to_owned(),
        created_ms: now_ms(),
    };
    let (h, r, max) = (
        hash(&token),
        rec.clone(),
        shared.config.web.max_tokens_per_account,
    );
    shared
        .db(move |s| s.create_token(&h, &r, max))
        .await
        .map_err(ApiError::store)?;
    Ok((token, rec))
}

/// Makes and stores a token; the Token entity.
async fn issue(shared: &Arc<Shared>, jid: &BareJid, client_id: &str, scopes: &str) -> ApiResult {
    let (token, rec) = new_token(shared, jid, client_id, scopes).await?;
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "scope": rec.scopes,
        "created_at": rec.created_ms / 1000,
    }))
    .into_response())
}

/// Makes a personal token for `jid` (the `starling token` command).
pub fn personal_token(
    store: &dyn crate::store::Store,
    jid: &BareJid,
    max: usize,
) -> Result<String, crate::StoreError> {
    let token = new_secret();
    let rec = TokenRecord {
        jid: jid.to_string(),
        client_id: String::new(),
        scopes: "read write follow".into(),
        created_ms: now_ms(),
    };
    store.create_token(&hash(&token), &rec, max)?;
    Ok(token)
}

/// `POST /oauth/token`.
pub(super) async fn token(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    p: Params,
) -> ApiResult {
    let Some(app) = app_of(&shared, &p, true).await? else {
        return Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        ));
    };
    match p.str("grant_type").as_deref() {
        Some("authorization_code") => {
            let code = p.str("code").and_then(|c| shared.oauth_codes.take(&c));
            let redirect = p.str("redirect_uri").unwrap_or_default();
            match code {
                Some(c) if c.client_id == app.client_id && c.redirect_uri == redirect => {
                    issue(&shared, &c.jid, &app.client_id, &c.scopes).await
                }
                _ => Ok(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "the code is unknown, used or expired",
                )),
            }
        }
        Some("password") => {
            let user = p
                .str("username")
                .or_else(|| p.str("email"))
                .unwrap_or_default();
            let pass = p.str("password").unwrap_or_default();
            match check_password(&shared, &headers, peer.addr.ip(), &user, pass).await? {
                Some(jid) => {
                    let scopes = p.str("scope").unwrap_or_else(|| app.scopes.clone());
                    issue(&shared, &jid, &app.client_id, &scopes).await
                }
                None => Ok(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "wrong username or password",
                )),
            }
        }
        _ => Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code or password",
        )),
    }
}

/// `POST /oauth/revoke`.
pub(super) async fn revoke(State(shared): State<Arc<Shared>>, p: Params) -> ApiResult {
    if app_of(&shared, &p, true).await?.is_none() {
        return Ok(oauth_error(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            "unknown client or wrong secret",
        ));
    }
    if let Some(t) = p.str("token") {
        let h = hash(&t);
        shared
            .db(move |s| s.revoke_token(&h))
            .await
            .map_err(ApiError::store)?;
    }
    Ok(Json(json!({})).into_response())
}

fn esc(s: &str) -> String {
    stanza::escape::escape_attr(s).into_owned()
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>\
         <meta name='viewport' content='width=device-width'></head>\
         <body style='font-family:sans-serif;max-width:28em;margin:3em auto'>{body}</body></html>"
    )
}

/// The login form for an application's authorization request.
fn form(p: &Params, app: &AppRecord, csrf: &str, error: Option<&str>) -> String {
    let field = |n: &str| esc(&p.str(n).unwrap_or_default());
    let error = error.map_or(String::new(), |e| {
        format!("<p role='alert' style='color:#b00'>{}</p>", esc(e))
    });
    page(
        "Log in",
        &format!(
            "<h1>Log in to {app_name}</h1>{error}\
             <form method='post' action='/oauth/authorize'>\
             <input type='hidden' name='csrf' value='{csrf}'>\
             <input type='hidden' name='client_id' value='{cid}'>\
             <input type='hidden' name='redirect_uri' value='{ru}'>\
             <input type='hidden' name='scope' value='{scope}'>\
             <input type='hidden' name='state' value='{state}'>\
             <p><label>Username or JID <input name='username' autocomplete='username' required></label></p>\
             <p><label>Password <input name='password' type='password' autocomplete='current-password' required></label></p>\
             <p><button type='submit'>Authorize</button></p></form>",
            app_name = esc(&app.name),
            csrf = esc(csrf),
            cid = field("client_id"),
            ru = field("redirect_uri"),
            scope = field("scope"),
            state = field("state"),
        ),
    )
}

/// The application and redirect of an authorization request, checked.
async fn request_app(shared: &Arc<Shared>, p: &Params) -> ApiResult<AppRecord> {
    let app = app_of(shared, p, false)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "unknown client_id"))?;
    let redirect = p.str("redirect_uri").unwrap_or_default();
    if !app.redirect_uris.split_whitespace().any(|u| u == redirect) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "redirect_uri is not registered for this client",
        ));
    }
    Ok(app)
}

fn with_cookie(csrf: &str, html: String) -> Response {
    let cookie = format!("{CSRF_COOKIE}={csrf}; Path=/oauth; HttpOnly; SameSite=Strict");
    ([(header::SET_COOKIE, cookie)], Html(html)).into_response()
}

/// `GET /oauth/authorize`.
pub(super) async fn authorize_form(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
) -> ApiResult {
    let p = Params::query(&uri)?;
    let app = request_app(&shared, &p).await?;
    let csrf = new_secret();
    Ok(with_cookie(&csrf, form(&p, &app, &csrf, None)))
}

/// `POST /oauth/authorize`: the form, submitted.
pub(super) async fn authorize(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    p: Params,
) -> ApiResult {
    let sent = p.str("csrf").unwrap_or_default();
    let good = super::cookie(&headers, CSRF_COOKIE)
        .is_some_and(|c| !c.is_empty() && constant_time_eq(c.as_bytes(), sent.as_bytes()));
    if !good {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong; reload the login page",
        ));
    }
    let app = request_app(&shared, &p).await?;
    let user = p.str("username").unwrap_or_default();
    let pass = p.str("password").unwrap_or_default();
    let Some(jid) = check_password(&shared, &headers, peer.addr.ip(), &user, pass).await? else {
        let csrf = new_secret();
        let html = form(&p, &app, &csrf, Some("Wrong username or password."));
        let mut r = with_cookie(&csrf, html);
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(r);
    };
    let redirect = p.str("redirect_uri").unwrap_or_default();
    let code = new_secret();
    shared.oauth_codes.insert(
        &code,
        Code {
            jid,
            client_id: app.client_id.clone(),
            redirect_uri: redirect.clone(),
            scopes: p
                .str("scope")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| app.scopes.clone()),
            made: Instant::now(),
        },
    );
    if redirect == OOB {
        let body = format!(
            "<h1>Authorized</h1><p>Copy this code into {}:</p><p><code id='code'>{}</code></p>",
            esc(&app.name),
            esc(&code)
        );
        return Ok(Html(page("Authorized", &body)).into_response());
    }
    let mut to = format!(
        "{redirect}{}code={code}",
        if redirect.contains('?') { '&' } else { '?' }
    );
    if let Some(state) = p.str("state").filter(|s| !s.is_empty()) {
        let q: String = serde_urlencoded::to_string([("state", state)]).unwrap_or_default();
        to.push('&');
        to.push_str(&q);
    }
    Ok((StatusCode::FOUND, [(header::LOCATION, to)]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_work_once_and_stay_bounded() {
        let codes = Codes::default();
        let c = Code {
            jid: BareJid::new("jane@a.example").unwrap(),
            client_id: "c".into(),
            redirect_uri: OOB.into(),
            scopes: "read".into(),
            made: Instant::now(),
        };
        codes.insert("abc", c.clone());
        assert!(codes.take("abc").is_some());
        assert!(codes.take("abc").is_none(), "a code works once");
        let stale = Code {
            made: Instant::now() - CODE_TTL - Duration::from_secs(1),
            ..c.clone()
        };
        codes.insert("old", stale);
        assert!(codes.take("old").is_none(), "an expired code is refused");
        for i in 0..MAX_CODES + 10 {
            codes.insert(&i.to_string(), c.clone());
        }
        assert!(codes.0.len() <= MAX_CODES);
    }

    #[test]
    fn the_csrf_cookie_is_read_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("a=1; {CSRF_COOKIE}=xyz; b=2").parse().unwrap(),
        );
        assert_eq!(
            super::super::cookie(&h, CSRF_COOKIE).as_deref(),
            Some("xyz")
        );
        assert_eq!(super::super::cookie(&HeaderMap::new(), CSRF_COOKIE), None);
    }
}

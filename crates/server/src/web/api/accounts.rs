//! Identity: the token's own account, lookup by `acct`, accounts by id
//! (the bare JID), and the account's privacy (its node's access model).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use stanza::{ns, BareJid};

use super::entities::{
    account_data, account_json, credential_account_json, remote_data, AccountData, Site,
};
use super::{ApiError, ApiResult, Authed, Params};
use crate::pubsub::{AccessModel, Options};
use crate::store::PublishError;
use crate::Shared;

/// The account a path id or `acct` names: a local account that exists,
/// or a remote JID (known by its address alone).
pub(crate) async fn resolve(shared: &Arc<Shared>, site: &Site, id: &str) -> ApiResult<AccountData> {
    let name = id.strip_prefix('@').unwrap_or(id);
    let name = if name.contains('@') {
        name.to_owned()
    } else {
        format!("{name}@{}", site.domain)
    };
    let jid = BareJid::new(&name).map_err(|_| ApiError::not_found())?;
    if jid.node().is_none() {
        return Err(ApiError::not_found());
    }
    if !shared.domains.iter().any(|d| d == jid.domain()) {
        return Ok(remote_data(&jid));
    }
    let j = jid.clone();
    shared
        .db(move |s| account_data(s, &j))
        .await
        .map_err(ApiError::store)?
        .ok_or_else(ApiError::not_found)
}

/// The token's own account, with `source` (an account deleted since the
/// token was made is a 401).
async fn own_account(shared: &Arc<Shared>, site: &Site, me: &Authed) -> ApiResult {
    let j = me.jid.clone();
    let a = shared
        .db(move |s| account_data(s, &j))
        .await
        .map_err(ApiError::store)?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Json(credential_account_json(site, &a)).into_response())
}

/// `GET /api/v1/accounts/verify_credentials`.
pub(super) async fn verify_credentials(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
) -> ApiResult {
    own_account(&shared, &site, &me).await
}

/// `GET /api/v1/accounts/lookup?acct=`.
pub(super) async fn lookup(
    State(shared): State<Arc<Shared>>,
    site: Site,
    uri: axum::http::Uri,
) -> ApiResult {
    let acct = Params::query(&uri)?
        .str("acct")
        .ok_or_else(|| ApiError::unprocessable("acct is required"))?;
    let a = resolve(&shared, &site, &acct).await?;
    Ok(Json(account_json(&site, &a)).into_response())
}

/// `GET /api/v2/search?q=` (and `/api/v1/accounts/search`): accounts by
/// exact address (`user`, `@user`, `user@domain`); Starling has no full
/// text index, so statuses and hashtags are always empty.
pub(super) async fn search(
    State(shared): State<Arc<Shared>>,
    site: Site,
    uri: axum::http::Uri,
) -> ApiResult {
    let p = Params::query(&uri)?;
    let q = p.str("q").unwrap_or_default();
    let wants_accounts = p.str("type").is_none_or(|t| t == "accounts");
    let mut accounts = Vec::new();
    if wants_accounts && !q.trim().is_empty() {
        if let Ok(a) = resolve(&shared, &site, q.trim()).await {
            accounts.push(account_json(&site, &a));
        }
    }
    if uri.path().starts_with("/api/v1/accounts") {
        return Ok(Json(accounts).into_response());
    }
    Ok(
        Json(serde_json::json!({ "accounts": accounts, "statuses": [], "hashtags": [] }))
            .into_response(),
    )
}

/// `GET /api/v1/accounts/:id`.
pub(super) async fn account(
    State(shared): State<Arc<Shared>>,
    site: Site,
    Path(id): Path<String>,
) -> ApiResult {
    let a = resolve(&shared, &site, &id).await?;
    Ok(Json(account_json(&site, &a)).into_response())
}

/// The access model a `source[privacy]` / visibility names.
pub(crate) fn model_of(privacy: &str) -> Option<AccessModel> {
    match privacy {
        "public" | "unlisted" => Some(AccessModel::Open),
        "private" => Some(AccessModel::Presence),
        _ => None,
    }
}

/// `PATCH /api/v1/accounts/update_credentials`: `source[privacy]`, or
/// `locked`, sets the microblog node's access model (created if need be). Other fields
/// (display name, note, avatar) have no XMPP equivalent here yet and are
/// accepted and ignored.
pub(crate) async fn update_credentials(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    p: Params,
) -> ApiResult {
    me.require_write("accounts")?;
    let privacy = p.str("source[privacy]").or_else(|| {
        p.0.get("source")
            .and_then(|s| s.get("privacy"))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    });
    // `locked` is the same switch seen from the follower's side: a locked
    // account approves its followers, which is the `presence` model.
    let locked = p
        .str("locked")
        .map(|l| matches!(l.as_str(), "true" | "1" | "on"));
    let privacy = privacy.or(locked.map(|l| if l { "private" } else { "public" }.to_owned()));
    if let Some(privacy) = privacy {
        let model = model_of(&privacy).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "privacy must be public, unlisted or private, not {privacy:?}"
            ))
        })?;
        let options = Options {
            access_model: Some(model),
            ..Options::default()
        };
        let (o, max) = (me.jid.clone(), shared.config.limits.max_nodes_per_account);
        let r = shared
            .db(move |s| {
                if let Err(PublishError::TooManyNodes) =
                    s.create_node(&o, ns::MICROBLOG, &options, max)?
                {
                    return Ok(false);
                }
                s.configure(&o, ns::MICROBLOG, &options)?;
                Ok::<_, crate::StoreError>(true)
            })
            .await
            .map_err(ApiError::store)?;
        if !r {
            return Err(ApiError::unprocessable(
                "the account has reached its node limit",
            ));
        }
        shared.feeds.touch(&me.jid);
        crate::pep::refresh_access(&shared, &me.jid)
            .await
            .map_err(|_| ApiError::store("refreshing node access failed"))?;
    }
    own_account(&shared, &site, &me).await
}

//! Following through the API, on the one follow graph XMPP uses:
//!
//! - an **open** node (an unlocked account) is followed with an explicit
//!   bare-JID XEP-0060 subscription, as Movim does: no approval;
//! - a **presence**-model node (a locked account), or a remote account,
//!   is followed with a presence subscription request (RFC 6121 §3.1): the
//!   relationship shows `requested` until the owner approves, over XMPP or
//!   with `follow_requests/:id/authorize`.
//!
//! Unfollowing undoes both. Followers and following lists include
//! presence-based follows made by XMPP clients.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use bytes::Bytes;
use serde_json::{json, Value};
use stanza::{ns, BareJid, Jid};

use super::accounts::resolve;
use super::entities::{account_data, account_json, followers_of, following_of, remote_data, Site};
use super::{api_jid, ApiError, ApiResult, Authed, Params};
use crate::pubsub::AccessModel;
use crate::roster::SubKind;
use crate::store::{Store, StoreError};
use crate::Shared;

/// Accounts per page of followers / following / requests.
const LIST_DEFAULT: usize = 40;
const LIST_MAX: usize = 80;

/// Runs a presence subscription stanza as if one of `me`'s clients sent
/// it.
async fn presence(
    shared: &Arc<Shared>,
    me: &BareJid,
    to: &BareJid,
    kind: SubKind,
) -> ApiResult<()> {
    let xml = format!(
        "<presence xmlns='jabber:client' type='{}' to='{}'/>",
        kind.as_str(),
        stanza::escape::escape_attr(to.as_str())
    );
    let st = stanza::Stanza::parse(Bytes::from(xml))
        .map_err(|_| ApiError::unprocessable("the account's JID cannot be addressed"))?;
    if let Some(err) = crate::presence::subscription(shared, &api_jid(me)?, &st, kind).await {
        let text = String::from_utf8_lossy(&err).into_owned();
        let why = if text.contains("blocked") {
            "blocked"
        } else {
            "refused"
        };
        return Err(ApiError::unprocessable(format!(
            "the subscription was {why}"
        )));
    }
    Ok(())
}

/// A Relationship entity of `me` towards `other`.
fn relationship(store: &dyn Store, me: &BareJid, other: &BareJid) -> Result<Value, StoreError> {
    let following = following_of(store, me)?.contains(other);
    let followed_by = followers_of(store, me)?.contains(other);
    let mine = store.roster_item(me, other)?;
    let theirs_pending = mine.as_ref().is_some_and(|i| i.pending_in);
    let requested = !following && mine.as_ref().is_some_and(|i| i.ask);
    let blocking = store.blocklist(me)?.iter().any(|j| j.to_bare() == *other);
    let blocked_by = store.blocklist(other)?.iter().any(|j| j.to_bare() == *me);
    Ok(json!({
        "id": other.to_string(),
        "following": following,
        "showing_reblogs": following,
        "notifying": false,
        "languages": null,
        "followed_by": followed_by,
        "blocking": blocking,
        "blocked_by": blocked_by,
        "muting": false,
        "muting_notifications": false,
        "requested": requested,
        "requested_by": theirs_pending,
        "domain_blocking": false,
        "endorsed": false,
        "note": "",
    }))
}

async fn relationship_of(shared: &Arc<Shared>, me: &BareJid, other: &BareJid) -> ApiResult {
    let (m, o) = (me.clone(), other.clone());
    let r = shared
        .db(move |s| relationship(s, &m, &o))
        .await
        .map_err(ApiError::store)?;
    Ok(Json(r).into_response())
}

/// `POST /api/v1/accounts/:id/follow`.
pub(crate) async fn follow(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    Path(id): Path<String>,
) -> ApiResult {
    me.require_write("follows")?;
    let target = resolve(&shared, &site, &id).await?.jid;
    if target == me.jid {
        return Err(ApiError::unprocessable("you cannot follow yourself"));
    }
    let local = shared.config.served_domain(target.domain()).is_some();
    let t = target.clone();
    let open = local
        && shared
            .db(move |s| s.node(&t, ns::MICROBLOG))
            .await
            .map_err(ApiError::store)?
            .is_some_and(|n| n.config.access_model == AccessModel::Open);
    if open {
        let mut after = None;
        crate::pep::subscribe(
            &shared,
            &api_jid(&me.jid)?,
            &target,
            ns::MICROBLOG.to_owned(),
            me.jid.to_jid(),
            &mut after,
        )
        .await
        .map_err(|e| {
            ApiError::unprocessable(format!("the subscription was refused: {:?}", e.condition))
        })?;
    } else {
        presence(&shared, &me.jid, &target, SubKind::Subscribe).await?;
    }
    relationship_of(&shared, &me.jid, &target).await
}

/// How `follower` follows `publisher`: the JIDs (bare or full) of its
/// explicit subscriptions to the microblog, and `owner`'s roster item for
/// the other of the two (the presence route, seen from `owner`'s side).
async fn follow_edges(
    shared: &Arc<Shared>,
    follower: &BareJid,
    publisher: &BareJid,
    owner: &BareJid,
) -> ApiResult<(Vec<Jid>, Option<crate::roster::RosterItem>)> {
    let other = if owner == follower {
        publisher
    } else {
        follower
    };
    let (f, p, o, c) = (
        follower.clone(),
        publisher.clone(),
        owner.clone(),
        other.clone(),
    );
    shared
        .db(move |s| {
            let subs = s
                .subscriptions_of(&f)?
                .into_iter()
                .filter(|x| x.owner == p && x.node == ns::MICROBLOG)
                .map(|x| x.jid)
                .collect();
            Ok::<_, StoreError>((subs, s.roster_item(&o, &c)?))
        })
        .await
        .map_err(ApiError::store)
}

/// `POST /api/v1/accounts/:id/unfollow`.
pub(crate) async fn unfollow(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    Path(id): Path<String>,
) -> ApiResult {
    me.require_write("follows")?;
    let target = resolve(&shared, &site, &id).await?.jid;
    let (subs, item) = follow_edges(&shared, &me.jid, &target, &me.jid).await?;
    for jid in subs {
        let full = api_jid(&me.jid)?;
        // The API acts for the account: any of its JIDs' subscriptions go.
        let as_owner = jid.to_full().unwrap_or(full);
        let _ = crate::pep::unsubscribe(&shared, &as_owner, &target, ns::MICROBLOG.to_owned(), jid)
            .await;
    }
    if item.is_some_and(|i| i.sub.to() || i.ask) {
        presence(&shared, &me.jid, &target, SubKind::Unsubscribe).await?;
    }
    relationship_of(&shared, &me.jid, &target).await
}

/// `POST /api/v1/accounts/:id/remove_from_followers`: the account stops
/// following me by every route, its explicit subscriptions to my
/// microblog (as the node's owner, XEP-0060 §8.8.2) and its presence
/// subscription (`unsubscribed`). Not following is no error, as on
/// Mastodon: the relationship is returned either way.
pub(crate) async fn remove_from_followers(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    Path(id): Path<String>,
) -> ApiResult {
    me.require_write("follows")?;
    let who = resolve(&shared, &site, &id).await?.jid;
    let (subs, item) = follow_edges(&shared, &who, &me.jid, &me.jid).await?;
    if !subs.is_empty() {
        crate::pep::remove_subscribers(&shared, &me.jid, ns::MICROBLOG, subs)
            .await
            .map_err(|e| ApiError::store(format!("{:?}", e.condition)))?;
    }
    if item.is_some_and(|i| i.sub.from()) {
        presence(&shared, &me.jid, &who, SubKind::Unsubscribed).await?;
    }
    relationship_of(&shared, &me.jid, &who).await
}

/// `GET /api/v1/accounts/relationships?id[]=…`.
pub(super) async fn relationships(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    uri: Uri,
) -> ApiResult {
    let ids: Vec<String> = match uri.query() {
        Some(q) => serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .map_err(|_| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "malformed query string",
                )
            })?
            .into_iter()
            .filter(|(k, _)| k == "id" || k == "id[]")
            .map(|(_, v)| v)
            .take(LIST_MAX)
            .collect(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for id in ids {
        let Ok(a) = resolve(&shared, &site, &id).await else {
            continue;
        };
        let (m, o) = (me.jid.clone(), a.jid);
        out.push(
            shared
                .db(move |s| relationship(s, &m, &o))
                .await
                .map_err(ApiError::store)?,
        );
    }
    Ok(Json(out).into_response())
}

/// A list of accounts, sorted by JID, `limit` of them.
async fn accounts(shared: &Arc<Shared>, site: &Site, jids: Vec<BareJid>, uri: &Uri) -> ApiResult {
    let limit = Params::query(uri)?
        .u64("limit")?
        .map_or(LIST_DEFAULT, |l| (l as usize).clamp(1, LIST_MAX));
    let mut jids = jids;
    jids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    jids.truncate(limit);
    let data = shared
        .db(move |s| {
            jids.iter()
                .map(|j| Ok(account_data(s, j)?.unwrap_or_else(|| remote_data(j))))
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await
        .map_err(ApiError::store)?;
    Ok(Json(
        data.iter()
            .map(|a| account_json(site, a))
            .collect::<Vec<_>>(),
    )
    .into_response())
}

/// `GET /api/v1/accounts/:id/followers`.
pub(super) async fn followers(
    State(shared): State<Arc<Shared>>,
    site: Site,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult {
    graph_list(&shared, &site, &id, &uri, followers_of).await
}

/// `GET /api/v1/accounts/:id/following`.
pub(super) async fn following(
    State(shared): State<Arc<Shared>>,
    site: Site,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult {
    graph_list(&shared, &site, &id, &uri, following_of).await
}

/// One side of an account's follows, as a list of accounts.
async fn graph_list(
    shared: &Arc<Shared>,
    site: &Site,
    id: &str,
    uri: &Uri,
    side: fn(&dyn Store, &BareJid) -> Result<std::collections::HashSet<BareJid>, StoreError>,
) -> ApiResult {
    let who = resolve(shared, site, id).await?.jid;
    let list = shared
        .db(move |s| side(s, &who))
        .await
        .map_err(ApiError::store)?;
    accounts(shared, site, list.into_iter().collect(), uri).await
}

/// `GET /api/v1/follow_requests`: pending presence subscription requests.
pub(super) async fn follow_requests(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    uri: Uri,
) -> ApiResult {
    let m = me.jid.clone();
    let pending = shared
        .db(move |s| {
            Ok::<_, StoreError>(
                s.roster(&m)?
                    .into_iter()
                    .filter(|(_, i)| i.pending_in)
                    .map(|(j, _)| j)
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .map_err(ApiError::store)?;
    accounts(&shared, &site, pending, &uri).await
}

/// `POST /api/v1/follow_requests/:id/authorize` and `…/reject`.
async fn answer(
    shared: Arc<Shared>,
    site: Site,
    me: Authed,
    id: String,
    kind: SubKind,
) -> ApiResult {
    me.require_write("follows")?;
    let who = resolve(&shared, &site, &id).await?.jid;
    // Only a waiting request is answered, as Mastodon does: `subscribed`
    // would otherwise pre-approve, and `unsubscribed` remove a follower.
    let (m, w) = (me.jid.clone(), who.clone());
    let waiting = shared
        .db(move |s| Ok::<_, StoreError>(s.roster_item(&m, &w)?.is_some_and(|i| i.pending_in)))
        .await
        .map_err(ApiError::store)?;
    if !waiting {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no follow request from {who}"),
        ));
    }
    presence(&shared, &me.jid, &who, kind).await?;
    relationship_of(&shared, &me.jid, &who).await
}

pub(crate) async fn authorize(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    Path(id): Path<String>,
) -> ApiResult {
    answer(shared, site, me, id, SubKind::Subscribed).await
}

pub(crate) async fn reject(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    Path(id): Path<String>,
) -> ApiResult {
    answer(shared, site, me, id, SubKind::Unsubscribed).await
}

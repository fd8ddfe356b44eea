//! Statuses and timelines: a status is the XEP-0277 entry on its author's
//! microblog node, posted through the same publish path (store, then
//! fan-out) as an XMPP client's.
//!
//! Reads check the node's access model as XMPP does: an `open` node's
//! statuses are public; others are for the owner and those the model
//! admits. The home timeline merges the statuses of everyone the account
//! follows (explicitly or by presence) and its own, by id.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use stanza::xep::microblog::{Entry, InReplyTo};
use stanza::{ns, BareJid};

use super::accounts::{model_of, resolve};
use super::entities::{contexts, entry_of, following_of, item_uri, status_json, Site};
use super::{ApiError, ApiResult, Authed, MaybeAuthed, Params};
use crate::pubsub::AccessModel;
use crate::store::{Status, StatusRange, Store, StoreError};
use crate::Shared;

/// Statuses per page unless `limit` says otherwise, and the most it may.
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 40;
/// Statuses the public timeline looks at for one page, at most.
const PUBLIC_SCAN: usize = 2_000;

/// Whether `viewer` may read `owner`'s statuses (XEP-0060 §6.1.3 on the
/// microblog node).
pub(crate) fn may_read(
    store: &dyn Store,
    owner: &BareJid,
    viewer: Option<&BareJid>,
) -> Result<bool, StoreError> {
    let Some(node) = store.node(owner, ns::MICROBLOG)? else {
        return Ok(true);
    };
    if node.config.access_model == AccessModel::Open || viewer == Some(owner) {
        return Ok(true);
    }
    let Some(v) = viewer else { return Ok(false) };
    let item = store.roster_item(owner, v)?;
    Ok(crate::pep::check_access(&node.config, item.as_ref()).is_ok())
}

fn paging(p: &Params) -> ApiResult<(StatusRange, usize)> {
    let range = StatusRange {
        max_id: p.u64("max_id")?,
        since_id: p.u64("since_id")?,
        min_id: p.u64("min_id")?,
    };
    let limit = p
        .u64("limit")?
        .map_or(DEFAULT_LIMIT, |l| (l as usize).clamp(1, MAX_LIMIT));
    Ok((range, limit))
}

/// A page as JSON with Mastodon's `Link` header (next: older, prev: newer).
async fn page(
    shared: &Arc<Shared>,
    site: &Site,
    uri: &Uri,
    statuses: Vec<Status>,
    limit: usize,
) -> ApiResult {
    let link = match (statuses.first(), statuses.last()) {
        (Some(first), Some(last)) => {
            let url = format!("{}{}", site.base, uri.path());
            Some(format!(
                "<{url}?limit={limit}&max_id={}>; rel=\"next\", <{url}?limit={limit}&min_id={}>; rel=\"prev\"",
                last.id, first.id
            ))
        }
        _ => None,
    };
    let body = render(shared, site, statuses).await?;
    let mut r = Json(body).into_response();
    if let Some(v) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(header::LINK, v);
    }
    Ok(r)
}

async fn render(
    shared: &Arc<Shared>,
    site: &Site,
    statuses: Vec<Status>,
) -> ApiResult<Vec<serde_json::Value>> {
    let (statuses, cx) = shared
        .db(move |s| {
            let cx = contexts(s, &statuses)?;
            Ok::<_, StoreError>((statuses, cx))
        })
        .await
        .map_err(ApiError::store)?;
    Ok(statuses
        .iter()
        .zip(&cx)
        .map(|(s, c)| status_json(site, s, c))
        .collect())
}

/// A status the viewer may read, or 404 (not 403: a private status's
/// existence is not told).
pub(crate) async fn readable(
    shared: &Arc<Shared>,
    id: &str,
    viewer: Option<BareJid>,
) -> ApiResult<Status> {
    let id: u64 = id.parse().map_err(|_| ApiError::not_found())?;
    shared
        .db(move |s| {
            let Some(st) = s.status(id)? else {
                return Ok(None);
            };
            Ok::<_, StoreError>(may_read(s, &st.owner, viewer.as_ref())?.then_some(st))
        })
        .await
        .map_err(ApiError::store)?
        .ok_or_else(ApiError::not_found)
}

/// `GET /api/v1/statuses/:id`.
pub(super) async fn show(
    State(shared): State<Arc<Shared>>,
    site: Site,
    MaybeAuthed(me): MaybeAuthed,
    Path(id): Path<String>,
) -> ApiResult {
    let st = readable(&shared, &id, me.map(|m| m.jid)).await?;
    let mut v = render(&shared, &site, vec![st]).await?;
    Ok(Json(v.pop()).into_response())
}

/// `POST /api/v1/statuses`: `status`, `in_reply_to_id`, `visibility`.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    p: Params,
) -> ApiResult {
    me.require_write("statuses")?;
    let text = p.str("status").unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "Validation failed: Text can't be blank",
        ));
    }
    let max = shared.config.web.max_status_chars;
    if text.chars().count() > max {
        return Err(ApiError::unprocessable(format!(
            "Validation failed: Text character limit of {max} exceeded"
        )));
    }
    let owner = me.jid.clone();
    let parent = match p.str("in_reply_to_id").filter(|s| !s.is_empty()) {
        Some(id) => Some(readable(&shared, &id, Some(owner.clone())).await?),
        None => None,
    };
    let o = owner.clone();
    let model = shared
        .db(move |s| s.node(&o, ns::MICROBLOG))
        .await
        .map_err(ApiError::store)?
        .map_or(AccessModel::Presence, |n| n.config.access_model);
    if let Some(v) = p.str("visibility").filter(|v| !v.is_empty()) {
        let wanted = model_of(&v).ok_or_else(|| {
            ApiError::unprocessable(format!(
                "visibility {v:?} is not supported: use public, unlisted or private"
            ))
        })?;
        let have = if model == AccessModel::Open {
            AccessModel::Open
        } else {
            AccessModel::Presence
        };
        if wanted != have {
            let now = if have == AccessModel::Open {
                "public"
            } else {
                "private"
            };
            return Err(ApiError::unprocessable(format!(
                "visibility {v:?} does not match the account's posts, which are {now}: \
                 change source[privacy] with update_credentials first"
            )));
        }
    }
    let item_id = crate::pep::new_item_id();
    let now = crate::pep::datetime(crate::pep::now_ms());
    let entry = Entry {
        id: Some(item_uri(&owner, &item_id)),
        title: text.clone(),
        content: text,
        published: Some(now.clone()),
        updated: Some(now),
        author_name: owner.node().map(str::to_owned),
        author_uri: Some(format!("xmpp:{owner}")),
        in_reply_to: parent.map(|st| InReplyTo {
            reference: entry_of(&st)
                .id
                .unwrap_or_else(|| item_uri(&st.owner, &st.item.id)),
            href: Some(item_uri(&st.owner, &st.item.id)),
        }),
    };
    let me_full = super::api_jid(&owner)?;
    let req = crate::pep::prepare(
        &shared,
        &me_full,
        &owner,
        ns::MICROBLOG.to_owned(),
        Some(item_id.clone()),
        &entry.to_element(),
        None,
    )
    .map_err(publish_error)?;
    crate::pep::publish_prepared(&shared, vec![req])
        .await
        .pop()
        .unwrap_or_else(|| {
            Err(stanza::ser::StanzaError::new(
                stanza::StanzaErrorCondition::InternalServerError,
            ))
        })
        .map_err(publish_error)?;
    let (o, i) = (owner.clone(), item_id);
    let st = shared
        .db(move |s| match s.status_id(&o, &i)? {
            Some(id) => s.status(id),
            None => Ok(None),
        })
        .await
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::store("the new status was not found after publishing"))?;
    let mut v = render(&shared, &site, vec![st]).await?;
    Ok(Json(v.pop()).into_response())
}

fn publish_error(e: stanza::ser::StanzaError<'static>) -> ApiError {
    use stanza::StanzaErrorCondition as C;
    match e.condition {
        C::ResourceConstraint => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many posts: slow down")
        }
        C::NotAcceptable => ApiError::unprocessable("the post is too big"),
        C::PolicyViolation => ApiError::unprocessable("the account has reached its node limit"),
        _ => ApiError::store(format!("publish refused: {:?}", e.condition)),
    }
}

/// `DELETE /api/v1/statuses/:id`: retracts the item (followers are told,
/// as for an XMPP retract); answers the status with its `text`.
pub(super) async fn delete(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    Path(id): Path<String>,
) -> ApiResult {
    me.require_write("statuses")?;
    let st = readable(&shared, &id, Some(me.jid.clone())).await?;
    if st.owner != me.jid {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "This action is not allowed",
        ));
    }
    let text = entry_of(&st).content;
    let mut v = render(&shared, &site, vec![st.clone()]).await?;
    let me_full = super::api_jid(&me.jid)?;
    crate::pep::retract(
        &shared,
        &me_full,
        &me.jid,
        ns::MICROBLOG.to_owned(),
        st.item.id.clone(),
        None,
    )
    .await
    .map_err(|e| match e.condition {
        stanza::StanzaErrorCondition::ItemNotFound => ApiError::not_found(),
        c => ApiError::store(format!("retract refused: {c:?}")),
    })?;
    let mut body = v.pop().unwrap_or_default();
    body["text"] = serde_json::Value::String(text);
    Ok(Json(body).into_response())
}

/// `GET /api/v1/accounts/:id/statuses`.
pub(super) async fn account_statuses(
    State(shared): State<Arc<Shared>>,
    site: Site,
    MaybeAuthed(me): MaybeAuthed,
    Path(id): Path<String>,
    uri: Uri,
) -> ApiResult {
    let (range, limit) = paging(&Params::query(&uri)?)?;
    let author = resolve(&shared, &site, &id).await?.jid;
    let statuses = statuses_of(&shared, author, me.map(|m| m.jid), range, limit).await?;
    page(&shared, &site, &uri, statuses, limit).await
}

/// `author`'s statuses as `viewer` may read them (none when the node's
/// access model keeps them out).
pub(crate) async fn statuses_of(
    shared: &Arc<Shared>,
    author: BareJid,
    viewer: Option<BareJid>,
    range: StatusRange,
    limit: usize,
) -> ApiResult<Vec<Status>> {
    shared
        .db(move |s| {
            if !may_read(s, &author, viewer.as_ref())? {
                return Ok(Vec::new());
            }
            s.statuses_by(std::slice::from_ref(&author), range, limit)
        })
        .await
        .map_err(ApiError::store)
}

/// `GET /api/v1/timelines/home`: the account's own statuses and those of
/// everyone it follows, newest first.
pub(super) async fn home(
    State(shared): State<Arc<Shared>>,
    site: Site,
    me: Authed,
    uri: Uri,
) -> ApiResult {
    let (range, limit) = paging(&Params::query(&uri)?)?;
    let statuses = home_of(&shared, me.jid, range, limit).await?;
    page(&shared, &site, &uri, statuses, limit).await
}

/// The home timeline of `jid`: its own statuses and those of everyone it
/// follows and may read, newest first.
pub(crate) async fn home_of(
    shared: &Arc<Shared>,
    jid: BareJid,
    range: StatusRange,
    limit: usize,
) -> ApiResult<Vec<Status>> {
    shared
        .db(move |s| {
            let mut authors = vec![jid.clone()];
            for a in following_of(s, &jid)? {
                if may_read(s, &a, Some(&jid))? {
                    authors.push(a);
                }
            }
            s.statuses_by(&authors, range, limit)
        })
        .await
        .map_err(ApiError::store)
}

/// `GET /api/v1/timelines/public`: statuses on open nodes, newest first.
pub(super) async fn public(State(shared): State<Arc<Shared>>, site: Site, uri: Uri) -> ApiResult {
    let (range, limit) = paging(&Params::query(&uri)?)?;
    let statuses = shared
        .db(move |s| {
            let mut open: HashMap<BareJid, bool> = HashMap::new();
            let mut failed = None;
            let mut keep = |owner: &BareJid| {
                if let Some(&o) = open.get(owner) {
                    return o;
                }
                let o = match s.node(owner, ns::MICROBLOG) {
                    Ok(n) => n.is_some_and(|n| n.config.access_model == AccessModel::Open),
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                };
                open.insert(owner.clone(), o);
                o
            };
            let out = s.all_statuses(range, limit, PUBLIC_SCAN, &mut keep)?;
            match failed {
                Some(e) => Err(e),
                None => Ok(out),
            }
        })
        .await
        .map_err(ApiError::store)?;
    page(&shared, &site, &uri, statuses, limit).await
}

//! The API's entities as JSON, with every field Mastodon's documentation
//! gives them: typed clients (toot's dataclasses, Mastodon.py) refuse or
//! mis-read objects with fields missing. Where Starling has no equivalent
//! (media, polls, emojis, boosts), the field is null, zero or empty.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use stanza::xep::microblog::Entry;
use stanza::{ns, BareJid, Element};

use super::{ApiError, ApiResult};
use crate::pubsub::AccessModel;
use crate::store::{Status, Store, StoreError};
use crate::web::feed::{base_url, domain_of};
use crate::web::Peer;
use crate::Shared;

/// The Mastodon API version Starling's answers follow; clients choose
/// features by it.
pub(crate) const API_VERSION: &str = "4.3.0";

/// What an Account shows, read from the store.
#[derive(Debug, Clone)]
pub(crate) struct AccountData {
    pub jid: BareJid,
    /// The node is not open: follows need approval (`locked`), and posts
    /// are `private`.
    pub locked: bool,
    pub statuses: u64,
    pub followers: usize,
    pub following: usize,
    pub created_ms: u64,
}

/// Who follows `jid`'s microblog: explicit subscribers and presence
/// followers (`from`/`both`), as bare JIDs.
pub(crate) fn followers_of(
    store: &dyn Store,
    jid: &BareJid,
) -> Result<HashSet<BareJid>, StoreError> {
    let mut out: HashSet<BareJid> = store
        .node_subscriptions(jid, ns::MICROBLOG)?
        .into_iter()
        .map(|j| j.to_bare())
        .filter(|j| j != jid)
        .collect();
    out.extend(
        store
            .roster(jid)?
            .into_iter()
            .filter(|(_, i)| i.sub.from())
            .map(|(j, _)| j),
    );
    Ok(out)
}

/// Whose microblogs `jid` follows: its explicit subscriptions and its
/// presence subscriptions (`to`/`both`).
pub(crate) fn following_of(
    store: &dyn Store,
    jid: &BareJid,
) -> Result<HashSet<BareJid>, StoreError> {
    let mut out: HashSet<BareJid> = store
        .subscriptions_of(jid)?
        .into_iter()
        .filter(|s| s.node == ns::MICROBLOG && s.owner != *jid)
        .map(|s| s.owner)
        .collect();
    out.extend(
        store
            .roster(jid)?
            .into_iter()
            .filter(|(_, i)| i.sub.to())
            .map(|(j, _)| j),
    );
    Ok(out)
}

/// A local account's data; `None` when there is no such account.
pub(crate) fn account_data(
    store: &dyn Store,
    jid: &BareJid,
) -> Result<Option<AccountData>, StoreError> {
    let Some(rec) = store.account(jid)? else {
        return Ok(None);
    };
    let node = store.node(jid, ns::MICROBLOG)?;
    Ok(Some(AccountData {
        jid: jid.clone(),
        locked: node
            .as_ref()
            .is_none_or(|n| n.config.access_model != AccessModel::Open),
        statuses: node.as_ref().map_or(0, |n| n.count),
        followers: followers_of(store, jid)?.len(),
        following: following_of(store, jid)?.len(),
        created_ms: rec.created_ms,
    }))
}

/// A remote account, known only by its JID.
pub(crate) fn remote_data(jid: &BareJid) -> AccountData {
    AccountData {
        jid: jid.clone(),
        locked: true,
        statuses: 0,
        followers: 0,
        following: 0,
        created_ms: 0,
    }
}

/// Where links point: the request's base URL and the domain it is for.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub base: String,
    pub domain: String,
}

/// Handlers take the site as an extractor: the `Host` header and the
/// connection's scheme.
impl axum::extract::FromRequestParts<Arc<Shared>> for Site {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        shared: &Arc<Shared>,
    ) -> ApiResult<Self> {
        let peer = parts.extensions.get::<Peer>().ok_or_else(|| {
            ApiError::new(axum::http::StatusCode::BAD_REQUEST, "no connection details")
        })?;
        Self::of(shared, &parts.headers, peer)
    }
}

impl Site {
    pub(crate) fn of(shared: &Shared, headers: &HeaderMap, peer: &Peer) -> ApiResult<Self> {
        let base = base_url(headers, peer).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "a valid Host header is required",
            )
        })?;
        Ok(Self {
            base,
            domain: domain_of(shared, headers).to_owned(),
        })
    }
}

/// An Account entity.
pub(crate) fn account_json(site: &Site, a: &AccountData) -> Value {
    let local = a.jid.node().unwrap_or_default();
    let is_local = a.jid.domain() == site.domain;
    let acct = if is_local {
        local.to_owned()
    } else {
        a.jid.to_string()
    };
    let url = if is_local {
        format!("{}/users/{local}", site.base)
    } else {
        format!("xmpp:{}", a.jid)
    };
    let avatar = format!("{}/avatar.svg", site.base);
    json!({
        "id": a.jid.to_string(),
        "username": local,
        "acct": acct,
        "url": url,
        "uri": format!("xmpp:{}", a.jid),
        "display_name": local,
        "note": "",
        "avatar": avatar,
        "avatar_static": avatar,
        "header": avatar,
        "header_static": avatar,
        "locked": a.locked,
        "fields": [],
        "emojis": [],
        "bot": false,
        "group": false,
        "discoverable": !a.locked,
        "indexable": !a.locked,
        "noindex": a.locked,
        "hide_collections": false,
        "moved": null,
        "suspended": false,
        "limited": false,
        "memorial": false,
        "roles": [],
        "created_at": day(a.created_ms),
        "last_status_at": null,
        "statuses_count": a.statuses,
        "followers_count": a.followers,
        "following_count": a.following,
    })
}

/// The account with `source`, for its owner (verify_credentials).
pub(crate) fn credential_account_json(site: &Site, a: &AccountData) -> Value {
    let mut v = account_json(site, a);
    v["source"] = json!({
        "privacy": if a.locked { "private" } else { "public" },
        "sensitive": false,
        "language": null,
        "note": "",
        "fields": [],
        "follow_requests_count": 0,
    });
    v["role"] = json!({
        "id": "-99", "name": "", "permissions": "0", "color": "", "highlighted": false,
    });
    v
}

/// Midnight UTC of a day, as Mastodon dates accounts.
fn day(ms: u64) -> String {
    crate::pep::datetime(ms - ms % 86_400_000)
}

/// The parsed entry of a status, or an empty one for a payload that is
/// not an Atom entry.
pub(crate) fn entry_of(s: &Status) -> Entry {
    Element::parse(&s.item.payload)
        .ok()
        .and_then(|el| Entry::parse(&el).ok())
        .unwrap_or_default()
}

/// Text as Mastodon's `content`: HTML-escaped, in a paragraph, line
/// breaks as `<br>`.
pub(crate) fn html(text: &str) -> String {
    let escaped = stanza::escape::escape_text(text)
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
        .replace('\n', "<br>");
    format!("<p>{escaped}</p>")
}

/// The XMPP URI of an item, which API posts use as their `atom:id` and
/// replies as `thr:in-reply-to`.
pub(crate) fn item_uri(owner: &BareJid, item_id: &str) -> String {
    format!("xmpp:{owner}?;node={};item={item_id}", ns::MICROBLOG)
}

/// The (owner, item id) an item URI names.
pub(crate) fn parse_item_uri(uri: &str) -> Option<(BareJid, String)> {
    let rest = uri.strip_prefix("xmpp:")?;
    let (jid, query) = rest.split_once('?')?;
    let item = query.split(';').find_map(|p| p.strip_prefix("item="))?;
    let node_ok = query
        .split(';')
        .any(|p| p == format!("node={}", ns::MICROBLOG));
    (node_ok && !item.is_empty()).then(|| Some((BareJid::new(jid).ok()?, item.to_owned())))?
}

/// What a Status shows besides its item: the author, visibility, and the
/// status it replies to.
#[derive(Debug, Clone)]
pub(crate) struct StatusContext {
    pub author: AccountData,
    pub visibility: &'static str,
    /// (status id, author) of the parent.
    pub reply_to: Option<(u64, BareJid)>,
}

/// A Status entity.
pub(crate) fn status_json(site: &Site, s: &Status, cx: &StatusContext) -> Value {
    let e = entry_of(s);
    let local = s.owner.node().unwrap_or_default();
    let url = format!("{}/users/{local}/statuses/{}", site.base, s.id);
    json!({
        "id": s.id.to_string(),
        "uri": e.id.clone().unwrap_or_else(|| item_uri(&s.owner, &s.item.id)),
        "url": url,
        "created_at": crate::pep::datetime(s.created_ms()),
        "edited_at": s.edited_ms().map(crate::pep::datetime),
        "account": account_json(site, &cx.author),
        "content": html(&e.content),
        "text": null,
        "visibility": cx.visibility,
        "sensitive": false,
        "spoiler_text": "",
        "media_attachments": [],
        "application": null,
        "mentions": [],
        "tags": [],
        "emojis": [],
        "reblogs_count": 0,
        "favourites_count": 0,
        "replies_count": 0,
        "in_reply_to_id": cx.reply_to.as_ref().map(|(id, _)| id.to_string()),
        "in_reply_to_account_id": cx.reply_to.as_ref().map(|(_, j)| j.to_string()),
        "reblog": null,
        "poll": null,
        "card": null,
        "language": null,
        "favourited": false,
        "reblogged": false,
        "muted": false,
        "bookmarked": false,
        "pinned": false,
        "filtered": [],
    })
}

/// Reads what [`status_json`] needs for each status, caching authors.
pub(crate) fn contexts(
    store: &dyn Store,
    statuses: &[Status],
) -> Result<Vec<StatusContext>, StoreError> {
    let mut authors: std::collections::HashMap<BareJid, AccountData> = Default::default();
    let mut out = Vec::with_capacity(statuses.len());
    for s in statuses {
        if !authors.contains_key(&s.owner) {
            let a = account_data(store, &s.owner)?.unwrap_or_else(|| remote_data(&s.owner));
            authors.insert(s.owner.clone(), a);
        }
        let author = authors[&s.owner].clone();
        let e = entry_of(s);
        let reply_to = match e.in_reply_to {
            Some(r) => {
                let target = r
                    .href
                    .as_deref()
                    .and_then(parse_item_uri)
                    .or_else(|| parse_item_uri(&r.reference));
                match target {
                    Some((owner, item)) => store.status_id(&owner, &item)?.map(|id| (id, owner)),
                    None => None,
                }
            }
            None => None,
        };
        out.push(StatusContext {
            visibility: if author.locked { "private" } else { "public" },
            author,
            reply_to,
        });
    }
    Ok(out)
}

/// `GET /api/v1/instance`.
pub(super) async fn instance_v1(
    State(shared): State<Arc<Shared>>,
    site: Site,
) -> ApiResult<Response> {
    let web = &shared.config.web;
    let host = site
        .base
        .split_once("://")
        .map_or("", |(_, h)| h)
        .to_owned();
    let ws = site.base.replacen("http", "ws", 1);
    Ok(Json(json!({
        "uri": site.domain,
        "title": format!("Starling at {}", site.domain),
        "short_description": "A microblog on XMPP",
        "description": "Every account is a JID; follow from XMPP, a Mastodon app or a feed reader.",
        "email": "",
        "version": version(),
        "urls": { "streaming_api": ws },
        "stats": { "user_count": 0, "status_count": 0, "domain_count": shared.domains.len() },
        "thumbnail": null,
        "languages": [],
        "registrations": shared.config.allow_registration,
        "approval_required": false,
        "invites_enabled": false,
        "configuration": configuration(web, &ws),
        "contact_account": null,
        "rules": [],
        "host": host,
    }))
    .into_response())
}

fn version() -> String {
    format!(
        "{API_VERSION} (compatible; Starling {})",
        env!("CARGO_PKG_VERSION")
    )
}

fn configuration(web: &crate::web::WebConfig, ws: &str) -> Value {
    json!({
        "urls": { "streaming": ws },
        "accounts": { "max_featured_tags": 0, "max_pinned_statuses": 0 },
        "statuses": {
            "max_characters": web.max_status_chars,
            "max_media_attachments": 0,
            "characters_reserved_per_url": 23,
        },
        "media_attachments": {
            "supported_mime_types": [],
            "image_size_limit": 0,
            "image_matrix_limit": 0,
            "video_size_limit": 0,
            "video_frame_rate_limit": 0,
            "video_matrix_limit": 0,
        },
        "polls": {
            "max_options": 0,
            "max_characters_per_option": 0,
            "min_expiration": 0,
            "max_expiration": 0,
        },
        "translation": { "enabled": false },
    })
}

/// `GET /api/v2/instance`.
pub(super) async fn instance_v2(
    State(shared): State<Arc<Shared>>,
    site: Site,
) -> ApiResult<Response> {
    let ws = site.base.replacen("http", "ws", 1);
    Ok(Json(json!({
        "domain": site.domain,
        "title": format!("Starling at {}", site.domain),
        "version": version(),
        "source_url": "https://github.com/starling-xmpp/starling",
        "description": "A microblog on XMPP",
        "usage": { "users": { "active_month": 0 } },
        "thumbnail": { "url": format!("{}/avatar.svg", site.base), "blurhash": null, "versions": {} },
        "icon": [],
        "languages": [],
        "configuration": configuration(&shared.config.web, &ws),
        "registrations": {
            "enabled": shared.config.allow_registration,
            "approval_required": false,
            "message": null,
            "url": null,
        },
        "api_versions": { "mastodon": 2 },
        "contact": { "email": "", "account": null },
        "rules": [],
    }))
    .into_response())
}

/// `GET /.well-known/nodeinfo`.
pub(super) async fn nodeinfo_links(
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let base = base_url(&headers, &peer).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "a valid Host header is required",
        )
    })?;
    Ok(Json(json!({
        "links": [{
            "rel": "http://nodeinfo.diaspora.software/ns/schema/2.0",
            "href": format!("{base}/nodeinfo/2.0"),
        }]
    }))
    .into_response())
}

/// `GET /nodeinfo/2.0`.
pub(super) async fn nodeinfo(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({
        "version": "2.0",
        "software": { "name": "starling", "version": env!("CARGO_PKG_VERSION") },
        "protocols": [],
        "services": { "inbound": [], "outbound": ["atom1.0"] },
        "openRegistrations": shared.config.allow_registration,
        "usage": { "users": {}, "localPosts": 0 },
        "metadata": { "xmpp": true },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_escaped_text_and_item_uris_round_trip() {
        assert_eq!(
            html("a <b> & \"c\"\nd"),
            "<p>a &lt;b&gt; &amp; &quot;c&quot;<br>d</p>"
        );
        let jane = BareJid::new("jane@a.example").unwrap();
        let uri = item_uri(&jane, "abc");
        assert_eq!(parse_item_uri(&uri), Some((jane, "abc".into())));
        assert_eq!(
            parse_item_uri("xmpp:jane@a.example?;node=other;item=x"),
            None
        );
        assert_eq!(parse_item_uri("https://example.org/x"), None);
        assert_eq!(
            parse_item_uri("xmpp:jane@a.example?;node=urn:xmpp:microblog:0;item="),
            None
        );
    }
}

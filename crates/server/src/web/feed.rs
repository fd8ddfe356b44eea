//! Per-user Atom feeds (RFC 4287) at `/users/{localpart}/feed.atom`, from
//! the same items as the XEP-0277 node: a feed reader follows a Starling
//! account the way an XMPP client does, by polling instead of push.
//!
//! - Only an `open` node is listed: a feed has no reader identity to check
//!   a `presence` or `roster` model against, so such a node's feed is
//!   empty (the account's existence is no secret: its JID is its address).
//! - Each entry is rebuilt from the parsed XEP-0277 entry, not copied, so
//!   whatever a client published cannot break the document or smuggle
//!   markup: every text is escaped, and dates that are not RFC 3339 are
//!   replaced by the time the server stored the item.
//! - Conditional GET: a strong `ETag` (a hash of the body) and
//!   `Last-Modified`, sent once its second has ended (a later change in
//!   the same second would otherwise share its date). A retraction or a
//!   configuration change makes no
//!   newer item, so the last change per account is kept in memory
//!   ([`Changes`]); after a restart, the start time stands for it, which
//!   can only make a reader fetch once more, never miss a change.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Extension, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::Digest;
use stanza::xep::microblog::Entry;
use stanza::{ns, BareJid, Element};

use super::{refuse, Peer};
use crate::pubsub::{AccessModel, StoredItem};
use crate::store::Budget;
use crate::Shared;

/// When each account's feed last changed other than by a new item:
/// retraction, purge, node deletion or reconfiguration. One entry per
/// account that changed since the start, so bounded by the accounts.
#[derive(Debug)]
pub(crate) struct Changes {
    at: dashmap::DashMap<BareJid, u64>,
    started_ms: u64,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            at: dashmap::DashMap::new(),
            started_ms: now_ms(),
        }
    }
}

impl Changes {
    /// Records a change of `owner`'s items now.
    pub(crate) fn touch(&self, owner: &BareJid) {
        self.at.insert(owner.clone(), now_ms());
    }

    fn last(&self, owner: &BareJid) -> u64 {
        self.at.get(owner).map_or(self.started_ms, |t| *t)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The domain a request is for: the `Host` header's, when it names one
/// served here; else the first configured.
pub(crate) fn domain_of<'a>(shared: &'a Shared, headers: &HeaderMap) -> &'a str {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| {
            h.rsplit_once(':').map_or(h, |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    h
                }
            })
        })
        .unwrap_or("");
    shared
        .domains
        .iter()
        .find(|d| d.eq_ignore_ascii_case(host))
        .unwrap_or(&shared.domains[0])
}

/// `scheme://host` of the request, for absolute links; `None` when the
/// `Host` header is missing or not a plain host and port.
pub(crate) fn base_url(headers: &HeaderMap, peer: &Peer) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    let scheme = if peer.tls { "https" } else { "http" };
    ok.then(|| format!("{scheme}://{host}"))
}

/// `GET /users/{localpart}/feed.atom`.
pub(super) async fn feed(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Path(localpart): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(base) = base_url(&headers, &peer) else {
        return refuse(StatusCode::BAD_REQUEST, "a valid Host header is required");
    };
    let domain = domain_of(&shared, &headers);
    let Ok(owner) = BareJid::new(&format!("{localpart}@{domain}")) else {
        return refuse(StatusCode::NOT_FOUND, "no such account");
    };
    let limit = shared.config.web.feed_items;
    let o = owner.clone();
    let read = shared
        .db(move |s| {
            if s.account(&o)?.is_none() {
                return Ok(None);
            }
            let open = s
                .node(&o, ns::MICROBLOG)?
                .is_some_and(|n| n.config.access_model == AccessModel::Open);
            let items = if open {
                s.items(&o, ns::MICROBLOG, Budget::items(limit))?
            } else {
                Vec::new()
            };
            Ok::<_, crate::StoreError>(Some(items))
        })
        .await;
    let items = match read {
        Ok(Some(items)) => items,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "no such account"),
        Err(e) => {
            tracing::error!(%owner, error = %e, "feed: store read failed");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable");
        }
    };
    let newest = items.iter().map(|i| i.published_ms).max().unwrap_or(0);
    let modified_ms = newest.max(shared.feeds.last(&owner));
    // HTTP dates have whole seconds: compare and send those.
    let modified = UNIX_EPOCH + Duration::from_secs(modified_ms / 1000);
    let body = render(&owner, &base, &localpart, &items, modified_ms);
    let etag = format!(
        "\"{}\"",
        stanza::escape::hex(&sha2::Sha256::digest(&body)[..16])
    );
    let fresh = match headers.get(header::IF_NONE_MATCH) {
        // RFC 9110 §13.1.3: If-None-Match, when sent, decides alone.
        Some(v) => v.to_str().is_ok_and(|v| etag_matches(v, &etag)),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| modified <= since),
    };
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // HTTP dates are whole seconds: a date of the current second could be
    // followed by another change within it, which a reader holding it
    // would then miss. Only a second that has ended is sent, and the ETag
    // serves meanwhile.
    if modified_ms / 1000 < now_ms() / 1000 {
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/atom+xml; charset=utf-8"),
    );
    (h, body).into_response()
}

/// Whether an `If-None-Match` list names `etag` (weak comparison, as
/// RFC 9110 §13.1.2 asks for this header).
fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The feed document, newest entry first.
fn render(
    owner: &BareJid,
    base: &str,
    localpart: &str,
    items: &[StoredItem],
    updated_ms: u64,
) -> Vec<u8> {
    let page = format!("{base}/users/{localpart}");
    let node_uri = format!("xmpp:{owner}?;node={}", ns::MICROBLOG);
    let mut feed = Element::new("feed", ns::ATOM)
        .with_child(atom("id", &node_uri))
        .with_child(atom("title", owner.as_str()))
        .with_child(atom("updated", &crate::pep::datetime(updated_ms)))
        .with_child(
            Element::new("author", ns::ATOM)
                .with_child(atom("name", localpart))
                .with_child(atom("uri", &format!("xmpp:{owner}"))),
        )
        .with_child(link(
            "self",
            &format!("{page}/feed.atom"),
            "application/atom+xml",
        ))
        .with_child(link("alternate", &page, "text/html"))
        .with_child(atom("generator", "Starling"));
    for it in items.iter().rev() {
        if let Some(e) = entry(owner, localpart, &node_uri, it) {
            feed = feed.with_child(e);
        }
    }
    let mut out = b"<?xml version='1.0' encoding='utf-8'?>\n".to_vec();
    out.extend_from_slice(&feed.to_bytes());
    out.push(b'\n');
    out
}

/// One feed entry from a stored item; `None` when the payload is not an
/// Atom entry (a client may publish anything to the node).
fn entry(owner: &BareJid, localpart: &str, node_uri: &str, it: &StoredItem) -> Option<Element> {
    let el = Element::parse(&it.payload).ok()?;
    let e = Entry::parse(&el).ok()?;
    let stored = crate::pep::datetime(it.published_ms);
    let published = e.published.filter(|d| is_rfc3339(d)).unwrap_or(stored);
    let updated = e
        .updated
        .filter(|d| is_rfc3339(d))
        .unwrap_or_else(|| published.clone());
    let item_uri = format!("{node_uri};item={}", it.id);
    let id = e.id.unwrap_or_else(|| item_uri.clone());
    let name = e.author_name.unwrap_or_else(|| localpart.to_owned());
    let title = if e.title.is_empty() {
        e.content.chars().take(80).collect()
    } else {
        e.title
    };
    Some(
        Element::new("entry", ns::ATOM)
            .with_child(atom("id", &id))
            .with_child(atom("title", &title).with_attr("type", "text"))
            .with_child(atom("published", &published))
            .with_child(atom("updated", &updated))
            .with_child(
                Element::new("author", ns::ATOM)
                    .with_child(atom("name", &name))
                    .with_child(atom("uri", &format!("xmpp:{owner}"))),
            )
            .with_child(atom("content", &e.content).with_attr("type", "text"))
            .with_child(link("alternate", &item_uri, "")),
    )
}

fn atom(name: &str, text: &str) -> Element {
    Element::new(name, ns::ATOM).with_text(text)
}

fn link(rel: &str, href: &str, ty: &str) -> Element {
    let l = Element::new("link", ns::ATOM)
        .with_attr("rel", rel)
        .with_attr("href", href);
    if ty.is_empty() {
        l
    } else {
        l.with_attr("type", ty)
    }
}

/// Whether `s` is an RFC 3339 date-time (the form Atom requires):
/// `YYYY-MM-DDTHH:MM:SS`, optional fraction, then `Z` or `±HH:MM`.
pub(crate) fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10))
        || !matches!(b[10], b'T' | b't')
        || !(digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] => {
            b.len() == i + 6 && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_shapes() {
        for ok in [
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:00:00.123Z",
            "2026-12-01T10:00:00+01:00",
            "2026-12-01t10:00:00.5-05:30",
        ] {
            assert!(is_rfc3339(ok), "{ok}");
        }
        for bad in [
            "",
            "yesterday",
            "2026-12-01",
            "2026-12-01T10:00:00",
            "2026-12-01T10:00:00.Z",
            "2026-12-01T10:00:00+0100",
            "2026-12-01T10:00:00Z<x/>",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn if_none_match_lists() {
        assert!(etag_matches("\"a\"", "\"a\""));
        assert!(etag_matches("\"b\", W/\"a\"", "\"a\""));
        assert!(etag_matches("*", "\"a\""));
        assert!(!etag_matches("\"b\"", "\"a\""));
    }

    #[test]
    fn a_hostile_entry_is_escaped_and_a_foreign_payload_skipped() {
        let owner = BareJid::new("jane@a.example").unwrap();
        let hostile = Entry {
            title: "</title><script>x</script>".into(),
            content: "]]> & <b>".into(),
            published: Some("not a date".into()),
            ..Entry::default()
        };
        let items = vec![
            StoredItem {
                id: "1".into(),
                publisher: owner.to_string(),
                payload: String::from_utf8(hostile.to_element().to_bytes().to_vec()).unwrap(),
                published_ms: 1_000,
            },
            StoredItem {
                id: "2".into(),
                publisher: owner.to_string(),
                payload: "<geoloc xmlns='http://jabber.org/protocol/geoloc'/>".into(),
                published_ms: 2_000,
            },
        ];
        let body = render(&owner, "http://h", "jane", &items, 2_000);
        let text = std::str::from_utf8(&body).unwrap();
        let doc = Element::parse(text.split_once('\n').unwrap().1.trim()).unwrap();
        let entries: Vec<_> = doc.elements().filter(|e| e.name == "entry").collect();
        assert_eq!(entries.len(), 1, "the geoloc item is not a post");
        let e = Entry::parse(entries[0]).unwrap();
        assert_eq!(e.title, "</title><script>x</script>");
        assert_eq!(e.content, "]]> & <b>");
        assert_eq!(e.published.as_deref(), Some("1970-01-01T00:00:01.000Z"));
        assert!(!text.contains("<script>"));
    }
}

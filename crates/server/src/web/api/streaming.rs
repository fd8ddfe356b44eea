//! Live streams as server-sent events: `GET /api/v1/streaming/user`,
//! `/public` and `/health`.
//!
//! - **user**: the stream is a session in the fan-out registry, of the
//!   account, available with `+notify` for the microblog node. The same
//!   walk that serves XMPP followers (presence follows and explicit
//!   subscriptions, PROTOCOL §6) pushes into its queue, and the same
//!   coalescing writer drains it; here the sink turns each notification
//!   into an `update` (a Status) or `delete` (an id) event. A client too
//!   slow to read overflows its queue like an XMPP session: the stream ends.
//! - **public**: posts on open nodes, from a broadcast channel the publish
//!   path feeds; a lagging reader skips what it missed.
//!
//! A comment line every [`HEARTBEAT`] keeps proxies from closing an idle
//! stream. Rendering a status reads the store, so the JSON of recent
//! statuses is shared by every stream through a small cache. One post
//! reaches every follower's stream as the same shared [`Notification`], so
//! the events made from it are cached too, keyed by that allocation: the
//! first stream parses it and renders the events, the rest clone them.

use std::hash::BuildHasher;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fanout::{Frame, OutboundHandle};
use stanza::{ns, BareJid, Element, FullJid, Notification, StreamErrorCondition};
use tokio::sync::{broadcast, mpsc};

use super::entities::{contexts, status_json, Site};
use super::{ApiError, ApiResult, Authed};
use crate::store::StoreError;
use crate::stream::writer::{write_loop, Sink};
use crate::stream::WriterParams;
use crate::Shared;

/// How often an idle stream gets a comment line.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(15);
/// Rendered statuses kept for the streams; past it the cache starts over.
const CACHE_MAX: usize = 4096;
/// Retracted items' status ids kept for `delete` events (the status is
/// gone from the store by the time the notification is read).
const DELETED_MAX: usize = 4096;
/// Notifications whose events are kept; past it the cache starts over.
const EVENTS_MAX: usize = 1024;
/// Events buffered between a stream's writer and its HTTP body.
const BODY_BUFFER: usize = 64;

/// What the public stream carries.
#[derive(Debug, Clone)]
pub(crate) enum PublicEvent {
    /// A post on an open node: its author and item.
    Update(BareJid, Arc<crate::pubsub::StoredItem>),
    /// A status removed.
    Delete(u64),
}

/// A rendered status, once: every stream that needs it awaits the same
/// cell, so a post to 5,000 streams is read from the store once.
type Rendered = Arc<tokio::sync::OnceCell<Option<Arc<str>>>>;

/// The events of one shared notification, made once for every stream.
type Made = Arc<tokio::sync::OnceCell<Arc<[Bytes]>>>;

/// A cached notification's events. The entry holds the notification so
/// its address, the key, cannot be reused by another while it is cached.
#[derive(Debug)]
struct MadeEntry {
    notification: Arc<Notification>,
    base: String,
    made: Made,
}

/// What the streams share.
#[derive(Debug)]
pub(crate) struct Streams {
    /// (base URL, author, item id, payload hash) → the Status JSON.
    cache: dashmap::DashMap<(String, BareJid, String, u64), Rendered>,
    /// (author, item id) → the status id of a retracted item.
    deleted: dashmap::DashMap<(BareJid, String), u64>,
    /// (notification address, hash of the base URL) → its events.
    events: dashmap::DashMap<(usize, u64), MadeEntry>,
    pub(crate) public: broadcast::Sender<PublicEvent>,
    hasher: std::hash::RandomState,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            cache: Default::default(),
            deleted: Default::default(),
            events: Default::default(),
            public: broadcast::channel(1024).0,
            hasher: Default::default(),
        }
    }
}

impl Streams {
    /// Remembers a status about to be retracted, for `delete` events.
    pub(crate) fn retracting(&self, owner: &BareJid, item_id: &str, status: u64) {
        if self.deleted.len() >= DELETED_MAX {
            self.deleted.clear();
        }
        self.deleted
            .insert((owner.clone(), item_id.to_owned()), status);
        if self.public.receiver_count() > 0 {
            let _ = self.public.send(PublicEvent::Delete(status));
        }
    }

    fn payload_hash(&self, payload: &str) -> u64 {
        self.hasher.hash_one(payload)
    }

    /// The shared cell for `n`'s events under `base`, or `None` when a
    /// different entry holds the key (a hash collision: render uncached).
    fn made_for(&self, n: &Arc<Notification>, base: &str, base_hash: u64) -> Option<Made> {
        let key = (Arc::as_ptr(n) as usize, base_hash);
        if let Some(e) = self.events.get(&key) {
            let same = Arc::ptr_eq(&e.notification, n) && e.base == base;
            return same.then(|| e.made.clone());
        }
        if self.events.len() >= EVENTS_MAX {
            self.events.clear();
        }
        let e = self.events.entry(key).or_insert_with(|| MadeEntry {
            notification: n.clone(),
            base: base.to_owned(),
            made: Default::default(),
        });
        let same = Arc::ptr_eq(&e.notification, n) && e.base == base;
        same.then(|| e.made.clone())
    }
}

/// The Status JSON of `owner`'s item, rendered once for all streams.
async fn render(
    shared: &Arc<Shared>,
    site: &Site,
    owner: &BareJid,
    item_id: &str,
    payload: &str,
) -> Option<Arc<str>> {
    let streams = &shared.api_streams;
    let key = (
        site.base.clone(),
        owner.clone(),
        item_id.to_owned(),
        streams.payload_hash(payload),
    );
    let cell = match streams.cache.get(&key) {
        Some(c) => c.clone(),
        None => {
            if streams.cache.len() >= CACHE_MAX {
                streams.cache.clear();
            }
            streams.cache.entry(key).or_default().clone()
        }
    };
    cell.get_or_init(|| async {
        let (o, i) = (owner.clone(), item_id.to_owned());
        let found = shared
            .db(move |s| {
                let Some(id) = s.status_id(&o, &i)? else {
                    return Ok(None);
                };
                let Some(st) = s.status(id)? else {
                    return Ok(None);
                };
                let cx = contexts(s, std::slice::from_ref(&st))?;
                Ok::<_, StoreError>(Some((st, cx)))
            })
            .await
            .ok()??;
        Some(status_json(site, &found.0, &found.1[0]).to_string().into())
    })
    .await
    .clone()
}

fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The events one XMPP notification makes.
async fn events_of(shared: &Arc<Shared>, site: &Site, bytes: &[u8]) -> Vec<Bytes> {
    let Ok(el) = Element::from_stanza(bytes) else {
        return Vec::new();
    };
    let Some(owner) = el.attr("from").and_then(|f| BareJid::new(f).ok()) else {
        return Vec::new();
    };
    let Some(items) = el
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
        .filter(|i| i.attr("node") == Some(ns::MICROBLOG))
    else {
        return Vec::new();
    };
    // A replay of the last item (delayed) is not news.
    if el.child("delay", ns::DELAY).is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for child in items.elements() {
        let Some(id) = child.attr("id") else { continue };
        match child.name.as_str() {
            "item" => {
                let payload = child
                    .first_element()
                    .map(|p| p.to_bytes())
                    .unwrap_or_default();
                let payload = String::from_utf8_lossy(&payload);
                if let Some(json) = render(shared, site, &owner, id, &payload).await {
                    out.push(event("update", &json));
                }
            }
            "retract" => {
                let key = (owner.clone(), id.to_owned());
                if let Some(status) = shared.api_streams.deleted.get(&key).map(|v| *v) {
                    out.push(event("delete", &status.to_string()));
                }
            }
            _ => {}
        }
    }
    out
}

/// The events of one frame for a stream: a shared notification's come
/// from the cache; anything else is parsed for this stream alone.
async fn frame_events(sink: &SseSink, frame: &Frame, to: &[u8]) -> Arc<[Bytes]> {
    let streams = &sink.shared.api_streams;
    let made = match frame {
        Frame::Notification(n) => streams.made_for(n, &sink.site.base, sink.base_hash),
        Frame::Bytes(_) => None,
    };
    let make = || async {
        let bytes = frame.to_bytes(to);
        events_of(&sink.shared, &sink.site, &bytes).await.into()
    };
    match made {
        Some(cell) => cell.get_or_init(make).await.clone(),
        None => make().await,
    }
}

/// The sink of a user stream: notifications in, SSE events out.
struct SseSink {
    shared: Arc<Shared>,
    site: Site,
    /// Hash of `site.base`, part of the events cache's key.
    base_hash: u64,
    tx: mpsc::Sender<Bytes>,
}

impl Sink for SseSink {
    async fn frames(
        &mut self,
        frames: &[Frame],
        handle: &OutboundHandle,
        stall: Duration,
    ) -> std::io::Result<()> {
        for f in frames {
            for ev in frame_events(self, f, handle.to_escaped()).await.iter() {
                match tokio::time::timeout(stall, self.tx.send(ev.clone())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(std::io::ErrorKind::BrokenPipe.into()),
                    Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
                }
            }
        }
        Ok(())
    }

    async fn error(&mut self, _cond: StreamErrorCondition, _text: Option<&str>) {}

    async fn close(&mut self) {}
}

/// An SSE response whose events come from `rx`, with heartbeats. The body
/// reads `rx` itself (no task between them); when the client goes, hyper
/// drops the body and with it `rx`, which the producer sees as closed.
fn sse(rx: mpsc::Receiver<Bytes>) -> Response {
    use futures_util::StreamExt;
    let hello = futures_util::stream::once(async { Bytes::from_static(b":)\n") });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let b = tokio::select! {
            ev = rx.recv() => ev?,
            () = tokio::time::sleep(HEARTBEAT) => Bytes::from_static(b":thump\n"),
        };
        Some((b, rx))
    });
    let body = hello.chain(events).map(Ok::<_, std::convert::Infallible>);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// `GET /api/v1/streaming/user`.
pub(crate) async fn user(State(shared): State<Arc<Shared>>, site: Site, me: Authed) -> ApiResult {
    let jid = FullJid::new(&format!("{}/sse-{}", me.jid, crate::stream::stream_id()))
        .map_err(|_| ApiError::store("the account's JID is not valid with a resource"))?;
    let limits = &shared.config.limits;
    let handle = shared.fanout.attach(jid.clone(), limits.outbound_queue);
    handle.queue().set_max_bytes(limits.outbound_queue_bytes);
    let presence = fanout::Presence {
        available: true,
        priority: 0,
        notify: vec![ns::MICROBLOG.to_owned()],
    };
    shared
        .fanout
        .registry()
        .set_presence(handle.session(), &presence);
    shared.metrics.api_streams.inc();
    let (tx, rx) = mpsc::channel(BODY_BUFFER);
    let params = WriterParams {
        handle: handle.clone(),
        closing: Arc::new(AtomicBool::new(true)),
        metrics: shared.metrics.clone(),
        stall: limits.write_stall_timeout(),
        sm: Default::default(),
    };
    let sink = SseSink {
        base_hash: shared.api_streams.hasher.hash_one(&site.base),
        shared: shared.clone(),
        site,
        tx: tx.clone(),
    };
    let s = shared.clone();
    tokio::spawn(async move {
        // Ends when the client goes (the body's receiver is dropped and a
        // send fails), on overflow, or at shutdown.
        tokio::select! {
            () = write_loop(sink, params) => {}
            () = tx.closed() => {}
            () = s.stopping() => {}
        }
        s.fanout.detach(&jid);
        handle.queue().close();
        s.metrics.api_streams.dec();
    });
    Ok(sse(rx))
}

/// `GET /api/v1/streaming/public`.
pub(super) async fn public(State(shared): State<Arc<Shared>>, site: Site) -> ApiResult {
    let mut events = shared.api_streams.public.subscribe();
    let (tx, rx) = mpsc::channel(BODY_BUFFER);
    let s = shared.clone();
    s.metrics.api_streams.inc();
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                ev = events.recv() => ev,
                () = tx.closed() => break,
                () = s.stopping() => break,
            };
            let out = match ev {
                Ok(PublicEvent::Update(owner, item)) => {
                    match render(&s, &site, &owner, &item.id, &item.payload).await {
                        Some(json) => event("update", &json),
                        None => continue,
                    }
                }
                Ok(PublicEvent::Delete(id)) => event("delete", &id.to_string()),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if tx.send(out).await.is_err() {
                break;
            }
        }
        s.metrics.api_streams.dec();
    });
    Ok(sse(rx))
}

/// `GET /api/v1/streaming/health`.
pub(super) async fn health() -> Response {
    (StatusCode::OK, "OK").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stanza::{EventKind, PubsubEvent};

    fn notification(id: &str) -> Arc<Notification> {
        let ev = PubsubEvent {
            node: ns::MICROBLOG,
            kind: EventKind::Items(&[]),
            delay: None,
        };
        Arc::new(Notification::new("jane@a.example", id, &ev))
    }

    #[test]
    fn streams_share_one_notifications_events_per_base_url() {
        let s = Streams::default();
        let n = notification("1");
        let a = s.made_for(&n, "http://a", 1).unwrap();
        let again = s.made_for(&n, "http://a", 1).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        // Another base URL renders other links: its own cell.
        let other_base = s.made_for(&n, "http://b", 2).unwrap();
        assert!(!Arc::ptr_eq(&a, &other_base));
        // A base whose hash collides is never handed another base's events.
        assert!(s.made_for(&n, "http://c", 1).is_none());
        // An equal notification in another allocation is another post.
        let twin = notification("1");
        let t = s.made_for(&twin, "http://a", 1).unwrap();
        assert!(!Arc::ptr_eq(&a, &t));
    }

    #[test]
    fn the_events_cache_is_bounded() {
        let s = Streams::default();
        let kept: Vec<_> = (0..EVENTS_MAX * 3)
            .map(|i| notification(&i.to_string()))
            .collect();
        for n in &kept {
            assert!(s.made_for(n, "http://a", 1).is_some());
            assert!(s.events.len() <= EVENTS_MAX);
        }
    }
}

//! Remote resources: a remote contact's resource that sent us available
//! presence becomes a session in the fan-out registry, so presence
//! followers on other servers are served by the same walk and filters as
//! local ones (PROTOCOL §6: `from`/`both`, available, `+notify`).
//!
//! Its `+notify` comes from its caps (XEP-0115): an unknown `ver` is asked
//! with disco#info across s2s and cached only when the answer's hash
//! matches, in the cache c2s uses. Its queue is drained into the outgoing
//! link to its domain by the same coalescing writer as a client's, with
//! the link's queue as the sink; what the link refuses is counted per
//! domain.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fanout::{Frame, OutboundHandle};
use stanza::ser;
use stanza::xep::disco;
use stanza::xep::presence::Broadcast;
use stanza::{Element, FullJid, Jid, StreamErrorCondition};
use tokio::task::JoinHandle;
use tracing::debug;

use super::link::Link;
use crate::metrics::Metrics;
use crate::stream::writer::{write_loop, Sink};
use crate::stream::WriterParams;
use crate::Shared;

/// Caps questions awaiting answers, at most; past it no new `ver` is
/// asked until answers come or the oldest expire.
const MAX_CAPS_QUERIES: usize = 4096;
/// How long a caps question waits for its answer.
const CAPS_QUERY_TTL: Duration = Duration::from_secs(60);

/// One remote resource the fan-out can deliver to.
#[derive(Debug)]
pub(crate) struct RemoteResource {
    handle: OutboundHandle,
    /// The link to its domain, from the local domain that first heard it.
    link: Arc<Link>,
    writer: JoinHandle<()>,
    presence: fanout::Presence,
    caps_ver: Option<String>,
}

/// A remote resource's available presence reached one of our accounts:
/// track it, and learn its interests.
pub(crate) async fn available(shared: &Arc<Shared>, from: &FullJid, local: &Jid, el: &Element) {
    let Some(Broadcast::Available(a)) = Broadcast::parse(el) else {
        return;
    };
    let fed = &shared.s2s;
    let is_new = !fed.remote.contains_key(from);
    if is_new && fed.remote.len() >= shared.config.s2s.max_remote_resources {
        debug!(%from, "s2s: max_remote_resources reached; not tracking");
        return;
    }
    let Some(link) = fed.link(local.domain(), from.domain()) else {
        return;
    };
    let mut query = None;
    let grew;
    {
        let mut entry = fed
            .remote
            .entry(from.clone())
            .or_insert_with(|| attach(shared, from, link.clone()));
        let r = entry.value_mut();
        let was = std::mem::take(&mut r.presence.notify);
        r.presence.available = true;
        r.presence.priority = a.priority;
        r.caps_ver = a.caps.as_ref().map(|c| c.ver.clone());
        if let Some(c) = &a.caps {
            match shared.caps.get(&c.ver) {
                Some(interests) => r.presence.notify = interests.to_vec(),
                None => query = ask(shared, local, from, c),
            }
        }
        grew = is_new || r.presence.notify.iter().any(|n| !was.contains(n));
        shared
            .fanout
            .registry()
            .set_presence(r.handle.session(), &r.presence);
    }
    if let Some(q) = query {
        let _ = link.queue.push(Frame::Bytes(q));
    }
    if grew {
        replay(shared, from, &link).await;
    }
}

/// Unavailable: the resource leaves the registry.
pub(crate) fn unavailable(shared: &Shared, from: &FullJid) {
    if let Some((_, r)) = shared.s2s.remote.remove(from) {
        shared.fanout.detach(from);
        r.handle.queue().close();
        drop(r.writer);
    }
}

/// A registry session for `jid`, drained into `link`.
fn attach(shared: &Shared, jid: &FullJid, link: Arc<Link>) -> RemoteResource {
    let handle = shared
        .fanout
        .attach(jid.clone(), shared.config.limits.outbound_queue);
    handle
        .queue()
        .set_max_bytes(shared.config.limits.outbound_queue_bytes);
    let params = WriterParams {
        handle: handle.clone(),
        closing: Arc::new(AtomicBool::new(true)),
        metrics: shared.metrics.clone(),
        stall: shared.config.limits.write_stall_timeout(),
        sm: Default::default(),
    };
    let sink_link = link.clone();
    let sink = LinkSink {
        link,
        metrics: shared.metrics.clone(),
    };
    let writer = tokio::spawn(write_loop(sink, params));
    RemoteResource {
        handle,
        link: sink_link,
        writer,
        presence: fanout::Presence::default(),
        caps_ver: None,
    }
}

/// The question for an unknown `ver`, unless one is open already.
fn ask(
    shared: &Shared,
    local: &Jid,
    from: &FullJid,
    c: &stanza::xep::presence::Caps,
) -> Option<bytes::Bytes> {
    let q = &shared.s2s.caps_queries;
    if q.iter().any(|e| e.value().0 == c.ver) {
        return None;
    }
    if q.len() >= MAX_CAPS_QUERIES {
        q.retain(|_, (_, at)| at.elapsed() < CAPS_QUERY_TTL);
        if q.len() >= MAX_CAPS_QUERIES {
            return None;
        }
    }
    let id = format!("caps-{}", crate::stream::stream_id());
    q.insert(id.clone(), (c.ver.clone(), Instant::now()));
    let req = disco::Request::Info {
        node: Some(c.disco_node()),
    };
    Some(ser::iq_request(
        "get",
        &id,
        Some(local.domain()),
        Some(from.as_str()),
        &req.to_element().to_bytes(),
    ))
}

/// An answer to one of our caps questions: cached if its hash matches,
/// then every remote resource with that `ver` learns its interests.
/// Returns whether `id` was ours.
pub(crate) async fn caps_answer(shared: &Arc<Shared>, id: &str, el: &Element) -> bool {
    let Some((_, (ver, _))) = shared.s2s.caps_queries.remove(id) else {
        return false;
    };
    let Some(query) = el.child("query", stanza::ns::DISCO_INFO) else {
        return true;
    };
    let Some(interests) = shared.caps.verify(&ver, query) else {
        debug!(%ver, "s2s: a caps answer that does not match its hash");
        return true;
    };
    shared.metrics.caps_cache.set(shared.caps.len() as i64);
    let mut grown = Vec::new();
    for mut r in shared.s2s.remote.iter_mut() {
        if r.caps_ver.as_deref() != Some(ver.as_str()) {
            continue;
        }
        r.presence.notify = interests.to_vec();
        shared
            .fanout
            .registry()
            .set_presence(r.handle.session(), &r.presence);
        grown.push((r.key().clone(), r.link.clone()));
    }
    for (jid, link) in grown {
        replay(shared, &jid, &link).await;
    }
    true
}

/// The last item of each node the resource now receives from the local
/// publishers its account follows, marked as a replay (PROTOCOL §6).
async fn replay(shared: &Arc<Shared>, to: &FullJid, link: &Link) {
    let registry = shared.fanout.registry();
    let Some(session) = registry.session(to) else {
        return;
    };
    let account = registry.account(&to.to_bare());
    let notify = match shared.s2s.remote.get(to) {
        Some(r) => r.presence.notify.clone(),
        None => return,
    };
    let mut wanted = Vec::new();
    for publisher in registry.following(&account) {
        let Some(p) = registry.find_account(&publisher) else {
            continue;
        };
        for node in &notify {
            if registry.delivers_to(&p, registry.node_id(node), &session) {
                wanted.push((publisher.clone(), node.clone()));
            }
        }
    }
    for (owner, node) in wanted {
        let (o, n) = (owner.clone(), node.clone());
        let last = shared
            .db(move |s| s.items(&o, &n, crate::store::Budget::items(1)))
            .await;
        if let Ok(mut items) = last {
            if let Some(it) = items.pop() {
                let _ = link
                    .queue
                    .push(Frame::Bytes(crate::pep::replay(&owner, to, &node, &it)));
            }
        }
    }
}

/// A remote resource's queue drains into its domain's link.
struct LinkSink {
    link: Arc<Link>,
    metrics: Arc<Metrics>,
}

impl Sink for LinkSink {
    async fn frames(
        &mut self,
        frames: &[Frame],
        handle: &OutboundHandle,
        _stall: Duration,
    ) -> std::io::Result<()> {
        for f in frames {
            let bytes = f.to_bytes(handle.to_escaped());
            if self.link.queue.push(Frame::Bytes(bytes)).is_err() {
                self.metrics
                    .s2s_drops
                    .get_or_create(&Metrics::domain(&self.link.remote, "reason", "queue_full"))
                    .inc();
            }
        }
        Ok(())
    }

    async fn error(&mut self, _cond: StreamErrorCondition, _text: Option<&str>) {}

    async fn close(&mut self) {}
}

//! A bound session's own presence: availability, priority and caps
//! (XEP-0115), which decide what the fan-out delivers to it, and the
//! last-item replays it is owed when it becomes available.

use stanza::ser;
use stanza::{ns, BareJid, Element, Stanza, StreamErrorCondition};
use tracing::debug;

use stanza::xep::disco;
use stanza::xep::presence::Broadcast;

use super::{random_token, Conn};
use crate::stream::{Flow, Stop, Transport};

impl<T: Transport> Conn<T> {
    /// Broadcast presence: availability, priority and caps, which decide
    /// what the fan-out delivers to this resource.
    pub(super) async fn on_own_presence(&mut self, stanza: &Stanza) -> Flow {
        let el = Element::from_stanza(stanza.bytes())
            .map_err(|_| Stop::Error(StreamErrorCondition::NotWellFormed, None))?;
        let domain = self.domain().unwrap_or_default().to_owned();
        let caps = self.shared.caps.clone();
        let Some(s) = self.session.as_mut() else {
            return Err(Stop::Gone);
        };
        let mut query = None;
        match Broadcast::parse(&el) {
            Some(Broadcast::Available(a)) => {
                s.presence.available = true;
                s.presence.priority = a.priority;
                s.caps_ver = a.caps.as_ref().map(|c| c.ver.as_str().into());
                s.presence.notify.clear();
                let max_pending = self.shared.config.limits.max_caps_queries;
                if let Some(c) = a.caps {
                    match caps.get(&c.ver) {
                        Some(interests) => s.presence.notify = interests.to_vec(),
                        // Asked already, or too many questions open: no
                        // new one until answers come back.
                        None if s.caps_pending.len() >= max_pending
                            || s.caps_pending.iter().any(|(_, v)| *v == c.ver) => {}
                        None => {
                            // Unknown: ask, and verify the answer's hash.
                            let id = format!("caps-{}", &random_token()[..10]);
                            let q = disco::Request::Info {
                                node: Some(c.disco_node()),
                            };
                            query = Some(ser::iq_request(
                                "get",
                                &id,
                                Some(&domain),
                                Some(s.jid.as_str()),
                                &q.to_element().to_bytes(),
                            ));
                            s.caps_pending.push((id, c.ver));
                        }
                    }
                }
            }
            Some(Broadcast::Unavailable) => s.presence.available = false,
            None => return Ok(()),
        }
        self.shared
            .fanout
            .registry()
            .set_presence(s.handle.session(), &s.presence);
        let me = s.jid.clone();
        let available = s.presence.available;
        crate::presence::broadcast(&self.shared, &me, available.then_some(stanza)).await;
        if let Some(q) = query {
            self.send(q).await?;
        }
        self.replay_last_items().await
    }

    /// A resource that became available gets the last item of every node it
    /// would receive now, marked with `<delay>` as a replay (PROTOCOL §6):
    /// nodes it holds an explicit subscription to (no `+notify` needed) and
    /// nodes in its `+notify` interests. When its interests grow later (caps
    /// verified after the presence), only what was not replayed yet is.
    async fn replay_last_items(&mut self) -> Flow {
        let Some(s) = self.session.as_mut() else {
            return Ok(());
        };
        if !s.presence.available {
            s.replayed_for = None;
            return Ok(());
        }
        let first = s.replayed_for.is_none();
        let done = s.replayed_for.get_or_insert_with(Default::default);
        let registry = self.shared.fanout.registry();
        let session = s.handle.session().clone();
        let me = s.jid.to_bare();
        let mut publishers = registry.following(&registry.account(&me));
        publishers.push(me.clone());
        let mut wanted = Vec::new();
        for p in publishers {
            let Some(account) = registry.find_account(&p) else {
                continue;
            };
            let mut nodes = s.presence.notify.clone();
            if first {
                for n in registry.explicit_nodes(&account, &me) {
                    if !nodes.contains(&n) {
                        nodes.push(n);
                    }
                }
            }
            for node in nodes {
                if !done.contains(&p, &node)
                    && registry.delivers_to(&account, registry.node_id(&node), &session)
                {
                    done.insert(&p, &node);
                    wanted.push((p.clone(), node));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        // One replay batch is one reply's worth: following thousands of
        // publishers must not queue thousands of items at one presence.
        let budget = self.shared.config.limits.reply_budget();
        // A few nodes are read on this task (see `presence::broadcast`);
        // many, as for someone following thousands, on the blocking pool.
        let last = if wanted.len() <= INLINE_READS {
            last_items(&*self.shared.store, wanted, budget)
        } else {
            self.shared
                .db(move |store| Ok::<_, crate::StoreError>(last_items(store, wanted, budget)))
                .await
                .unwrap_or_default()
        };
        let to = s.jid.clone();
        for (publisher, node, it) in last {
            self.send(crate::pep::replay(&publisher, &to, &node, &it))
                .await?;
        }
        Ok(())
    }

    /// An iq result or error from the client: answers to our caps queries.
    pub(super) async fn on_iq_response(&mut self, stanza: &Stanza) -> Flow {
        let Some(s) = self.session.as_mut() else {
            return Err(Stop::Gone);
        };
        let Some(at) = stanza
            .id()
            .and_then(|id| s.caps_pending.iter().position(|(q, _)| *q == *id))
        else {
            return Ok(());
        };
        let (_, ver) = s.caps_pending.swap_remove(at);
        if s.caps_pending.is_empty() {
            // A vector keeps its buffer when emptied: an idle session holds
            // none (#11).
            s.caps_pending = Vec::new();
        }
        if stanza.type_().as_deref() != Some("result") {
            return Ok(());
        }
        let Ok(el) = Element::from_stanza(stanza.bytes()) else {
            return Ok(());
        };
        let Some(query) = el.child("query", ns::DISCO_INFO) else {
            return Ok(());
        };
        let verified = self.shared.caps.verify(&ver, query);
        self.shared
            .metrics
            .caps_cache
            .set(self.shared.caps.len() as i64);
        match verified {
            Some(interests) if s.caps_ver.as_deref() == Some(ver.as_str()) => {
                s.presence.notify = interests.to_vec();
                self.shared
                    .fanout
                    .registry()
                    .set_presence(s.handle.session(), &s.presence);
                return self.replay_last_items().await;
            }
            Some(_) => {}
            None => debug!(jid = %s.jid, %ver, "caps answer does not match its ver; not cached"),
        }
        Ok(())
    }
}

/// How many nodes a replay reads on the session's own task.
const INLINE_READS: usize = 8;

/// The last item of each wanted node whose configuration replays it, as
/// many as one reply's `budget` holds.
fn last_items(
    store: &dyn crate::store::Store,
    wanted: Vec<(BareJid, String)>,
    budget: crate::store::Budget,
) -> Vec<(BareJid, String, crate::pubsub::StoredItem)> {
    let mut out = Vec::new();
    let mut used = 0;
    for (p, n) in wanted {
        let Some(Some(node)) = store.node(&p, &n).ok() else {
            continue;
        };
        if node.config.send_last != crate::pubsub::SendLast::OnSubAndPresence {
            continue;
        }
        let Some(item) = store
            .items(&p, &n, crate::store::Budget::items(1))
            .ok()
            .and_then(|mut v| v.pop())
        else {
            continue;
        };
        if !budget.fits(out.len(), used, item.payload.len()) {
            break;
        }
        used += item.payload.len();
        out.push((p, n, item));
    }
    out
}

/// The (publisher, node) pairs whose last item a resource was replayed
/// since it became available, kept as 64-bit hashes in a sorted vector:
/// one pair costs 8 bytes, not a hash table holding two strings (#11:
/// 250 bytes per idle session). A collision would skip one replay; the
/// hasher's keys are random per process, so nobody can aim for one.
#[derive(Debug, Default)]
pub(super) struct Replayed(Vec<u64>);

impl Replayed {
    fn key(publisher: &BareJid, node: &str) -> u64 {
        use std::hash::BuildHasher as _;
        static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
        KEYS.get_or_init(std::hash::RandomState::new)
            .hash_one((publisher.as_str(), node))
    }

    /// Whether this pair was replayed.
    pub(super) fn contains(&self, publisher: &BareJid, node: &str) -> bool {
        self.0.binary_search(&Self::key(publisher, node)).is_ok()
    }

    /// Notes that this pair was replayed.
    pub(super) fn insert(&mut self, publisher: &BareJid, node: &str) {
        let k = Self::key(publisher, node);
        if let Err(i) = self.0.binary_search(&k) {
            self.0.insert(i, k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_pair_is_remembered_and_no_other() {
        let (a, b) = (BareJid::new("a@x").unwrap(), BareJid::new("b@x").unwrap());
        let mut r = Replayed::default();
        assert!(!r.contains(&a, "n"));
        r.insert(&a, "n");
        r.insert(&a, "n");
        assert!(r.contains(&a, "n"));
        // Neither the other publisher nor the other node.
        assert!(!r.contains(&b, "n"));
        assert!(!r.contains(&a, "m"));
        // The pair is hashed as a pair: "a@x"+"yn" is not "a@xy"+"n".
        assert!(!r.contains(&BareJid::new("a@xy").unwrap(), ""));
        assert_eq!(r.0.len(), 1);
    }
}

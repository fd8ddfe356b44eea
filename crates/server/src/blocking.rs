//! XEP-0191 blocking: the block list, its pushes, and its effects.
//!
//! A block takes effect both ways for presence, messages, iqs and pubsub
//! notifications (the fan-out registry filters them on the hot path). It
//! is durable and in the registry before the iq result is sent, so every
//! publish acknowledged after it honours it.

use std::sync::Arc;

use bytes::Bytes;
use fanout::Frame;
use stanza::ser::{self, StanzaError, XmlWriter};
use stanza::{ns, BareJid, FullJid, Jid, StanzaErrorCondition as C};

use crate::presence::{available, sessions};
use crate::Shared;
use stanza::xep::blocking::Request;

/// Answers a blocking iq: get the list, block, unblock (XEP-0191 §3).
pub(crate) async fn iq(shared: &Arc<Shared>, me: &FullJid, id: &str, req: Request) -> Bytes {
    let err = |e: StanzaError<'_>| ser::stanza_error("iq", Some(id), None, Some(me.as_str()), &e);
    let owner = me.to_bare();
    match req {
        Request::Get => {
            let o = owner.clone();
            let Ok(list) = shared.db(move |s| s.blocklist(&o)).await else {
                return err(StanzaError::new(C::InternalServerError));
            };
            let payload = list_xml("blocklist", &list);
            ser::iq_result(id, None, Some(me.as_str()), Some(&payload))
        }
        Request::Block(jids) => change(shared, me, id, jids, true).await,
        Request::Unblock(jids) => change(shared, me, id, jids, false).await,
    }
}

/// Blocks (or unblocks) `jids`: durable and in the registry before the
/// pushes and the answer; an empty unblock clears the list.
async fn change(
    shared: &Arc<Shared>,
    me: &FullJid,
    id: &str,
    jids: Vec<Jid>,
    block: bool,
) -> Bytes {
    let err = |e: StanzaError<'_>| ser::stanza_error("iq", Some(id), None, Some(me.as_str()), &e);
    let owner = me.to_bare();
    let verb = if block { "block" } else { "unblock" };
    let (o, j) = (owner.clone(), jids.clone());
    let max = shared.config.limits.max_blocklist_items;
    let r = shared.db(move |s| s.set_blocked(&o, &j, block, max)).await;
    let changed = match r {
        Ok(c) => c,
        Err(crate::StoreError::Quota(_)) => {
            return err(StanzaError::new(C::PolicyViolation).with_text("block list full"))
        }
        Err(_) => return err(StanzaError::new(C::InternalServerError)),
    };
    let registry = shared.fanout.registry();
    for j in &changed {
        if block {
            // Unavailable to them first, while it may still pass.
            withdraw_presence(shared, &owner, j);
            registry.block(&owner, j);
        } else {
            registry.unblock(&owner, j);
        }
    }
    // Pushes to every resource (§3.3, §3.4), the list as asked.
    let pushed = if block || !jids.is_empty() {
        &jids
    } else {
        &changed
    };
    let payload = list_xml(verb, pushed);
    for s in sessions(shared, &owner) {
        let push_id = format!("block-{}", rand::random::<u32>());
        let _ = s.queue().push(Frame::Bytes(ser::iq_request(
            "set",
            &push_id,
            None,
            Some(s.jid().as_str()),
            &payload,
        )));
    }
    if !block {
        for j in &changed {
            resend_presence(shared, &owner, j);
        }
    }
    ser::iq_result(id, None, Some(me.as_str()), None)
}

fn list_xml(name: &str, jids: &[Jid]) -> Vec<u8> {
    let mut w = XmlWriter::with_capacity(64 + jids.len() * 48);
    w.open(name).attr("xmlns", ns::BLOCKING);
    if jids.is_empty() {
        w.close_empty();
    } else {
        w.close_start();
        for j in jids {
            w.open("item").attr("jid", j.as_str()).close_empty();
        }
        w.end(name);
    }
    w.as_bytes().to_vec()
}

/// The local sessions a blocked JID covers: its account's, or one.
fn targets(shared: &Shared, j: &Jid) -> Vec<Arc<fanout::SessionEntry>> {
    if j.to_bare().node().is_none() {
        // A whole domain: its local accounts are not enumerated here; the
        // registry still filters everything from them.
        return Vec::new();
    }
    match j.to_full() {
        Some(f) => shared.fanout.registry().session(&f).into_iter().collect(),
        None => available(shared, &j.to_bare()),
    }
}

/// On block: the blocked entity sees our resources go unavailable
/// (XEP-0191 §3.3.2).
fn withdraw_presence(shared: &Shared, owner: &BareJid, j: &Jid) {
    let ours = available(shared, owner);
    for t in targets(shared, j) {
        for o in &ours {
            let _ = t.queue().push(Frame::Bytes(ser::presence(
                Some(o.jid().as_str()),
                Some(t.jid().as_str()),
                Some("unavailable"),
                None,
                b"",
            )));
        }
    }
}

/// On unblock: contacts entitled to our presence get it again (§3.4.2).
fn resend_presence(shared: &Shared, owner: &BareJid, j: &Jid) {
    let Ok(Some(item)) = shared.store.roster_item(owner, &j.to_bare()) else {
        return;
    };
    if !item.sub.from() {
        return;
    }
    for t in targets(shared, j) {
        for o in available(shared, owner) {
            if let Some(p) = shared.presences.get(o.jid()) {
                if let Ok(p) = p.with_addresses(o.jid().as_str(), Some(t.jid().as_str())) {
                    let _ = t.queue().push(Frame::Bytes(p.bytes().clone()));
                }
            }
        }
    }
}

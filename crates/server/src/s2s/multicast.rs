//! XEP-0033 Extended Stanza Addressing between servers, for fan-out per
//! domain: one notification per remote domain that offers it, carrying its
//! recipients as `bcc` addresses, instead of one per recipient.
//!
//! - **As the receiving service** (our domain's JID): a message from a
//!   verified remote stream with `<addresses/>` is delivered to each
//!   address at our domain, with the addresses removed from the copies
//!   (`bcc` ones must not be shown). Addresses at other domains are not
//!   forwarded: Starling relays for nobody.
//! - **As the sender**: when an outgoing stream is verified, the peer's
//!   domain is asked for disco#info; if it lists the XEP-0033 feature, the
//!   fan-out sends that domain one stanza per publish (`fanout::Remotes`).
//!
//! `s2s.multicast = false` turns both off.

use std::sync::Arc;

use bytes::Bytes;
use stanza::xep::disco;
use stanza::{ns, ser, Element, Jid, NsContext};
use tracing::debug;

use crate::Shared;

/// Whether a message to our domain is a multicast one.
pub(super) fn is_multicast(el: &Element) -> bool {
    el.child("addresses", ns::ADDRESS).is_some()
}

/// Delivers a multicast message to its addresses at `local` (our domain
/// the message was sent to).
pub(super) fn deliver(shared: &Shared, from: &Jid, local: &str, mut el: Element) {
    if !shared.config.s2s.multicast {
        return;
    }
    let Some(at) = el.children.iter().position(
        |n| matches!(n, stanza::Node::Element(e) if e.name == "addresses" && e.ns == ns::ADDRESS),
    ) else {
        return;
    };
    let stanza::Node::Element(addresses) = el.children.remove(at) else {
        return;
    };
    let mut to: Vec<Jid> = Vec::new();
    for a in addresses.elements() {
        let kind_ok = matches!(a.attr("type"), Some("to" | "cc" | "bcc"));
        if !kind_ok || a.attr("delivered") == Some("true") {
            continue;
        }
        let Some(j) = a.attr("jid").and_then(|j| Jid::new(j).ok()) else {
            continue;
        };
        let blocked = shared.fanout.registry().is_blocked(
            &j.to_bare(),
            &from.to_bare(),
            from.to_full().as_ref(),
        );
        if j.domain() == local && j.node().is_some() && !blocked && !to.contains(&j) {
            to.push(j);
        }
    }
    el.attrs.retain(|a| a.name != "to");
    let ty = el.attr("type").unwrap_or("normal").to_owned();
    // One serialization; each copy is it with its own `to` spliced in.
    let body = el.to_bytes_in(&NsContext::client());
    let Some(rest) = body.strip_prefix(b"<message") else {
        return;
    };
    debug!(recipients = to.len(), "s2s: multicast delivered");
    for j in to {
        let escaped = stanza::escape_jid(j.as_str());
        let mut copy = Vec::with_capacity(body.len() + escaped.len() + 6);
        copy.extend_from_slice(b"<message to='");
        copy.extend_from_slice(&escaped);
        copy.push(b'\'');
        copy.extend_from_slice(rest);
        let _ = crate::route::deliver_message(shared, &j, &ty, &Bytes::from(copy));
    }
}

/// The question to a newly verified peer: does it take multicast?
pub(super) fn ask(shared: &Shared, local: &str, remote: &str) -> Option<Bytes> {
    if !shared.config.s2s.multicast {
        return None;
    }
    let id = format!("mc-{}", crate::stream::stream_id());
    shared
        .s2s
        .multicast_queries
        .insert(id.clone(), remote.to_owned());
    let q = disco::Request::Info { node: None };
    Some(ser::iq_request(
        "get",
        &id,
        Some(local),
        Some(remote),
        &q.to_element().to_bytes(),
    ))
}

/// An answer to [`ask`]; returns whether `id` was ours.
pub(super) fn answer(shared: &Arc<Shared>, id: &str, el: &Element) -> bool {
    let Some((_, remote)) = shared.s2s.multicast_queries.remove(id) else {
        return false;
    };
    let offers = el.child("query", ns::DISCO_INFO).is_some_and(|q| {
        q.elements()
            .any(|f| f.name == "feature" && f.attr("var") == Some(ns::ADDRESS))
    });
    debug!(%remote, offers, "s2s: multicast support");
    shared.fanout.registry().set_multicast(&remote, offers);
    true
}

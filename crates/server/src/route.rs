//! Message routing between local sessions (RFC 6121 §8.5). Federation is a
//! later issue: messages for other domains get `remote-server-not-found`.
//!
//! - To a full JID with a session: that session.
//! - To a bare JID (or a full JID with no session): `chat` and `normal` go
//!   to the available resources with the highest non-negative priority;
//!   `headline` goes to every such resource; `groupchat` is refused.
//! - Nobody to deliver to: `service-unavailable` (there is no offline
//!   storage), except `headline`, which is dropped as §8.5.2.1.1 allows, and
//!   `error`, which is never answered with an error.

use bytes::Bytes;
use fanout::Frame;
use stanza::ser::{self, StanzaError};
use stanza::{FullJid, Jid, Stanza, StanzaErrorCondition as C};

use crate::Shared;

/// Routes a message from `me`; returns the error to send back, if any.
pub(crate) fn message(shared: &Shared, me: &FullJid, stanza: &Stanza) -> Option<Bytes> {
    let ty = stanza
        .type_()
        .map_or_else(|| "normal".to_owned(), |t| t.into_owned());
    if ty == "error" {
        return None;
    }
    let raw_to = stanza.to().map(|t| t.into_owned());
    let bounce = |cond: C| {
        let id = stanza.id();
        Some(ser::stanza_error(
            "message",
            id.as_deref(),
            raw_to.as_deref(),
            Some(me.as_str()),
            &StanzaError::new(cond),
        ))
    };
    // No `to`: the sender's own account (RFC 6120 §10.3).
    let to = match &raw_to {
        None => me.to_bare().to_jid(),
        Some(t) => match Jid::new(t) {
            Ok(j) => j,
            Err(_) => return bounce(C::JidMalformed),
        },
    };
    if !shared.config.domains.iter().any(|d| d == to.domain()) {
        return bounce(C::RemoteServerNotFound);
    }
    // The server stamps who sent it (RFC 6120 §8.1.2.1).
    let Ok(stamped) = stanza.with_addresses(me.as_str(), None) else {
        return bounce(C::BadRequest);
    };
    let registry = shared.fanout.registry();
    if let Some(full) = to.to_full() {
        if let Some(s) = registry.session(&full) {
            let _ = s.queue().push(Frame::Bytes(stamped.bytes().clone()));
            return None;
        }
    }
    if ty == "groupchat" {
        return bounce(C::ServiceUnavailable);
    }
    let targets: Vec<_> = registry
        .find_account(&to.to_bare())
        .map(|a| {
            a.sessions()
                .iter()
                .filter(|s| s.receives())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let top = targets.iter().map(|s| s.priority()).max();
    let mut delivered = false;
    for s in &targets {
        if ty == "headline" || Some(s.priority()) == top {
            let _ = s.queue().push(Frame::Bytes(stamped.bytes().clone()));
            delivered = true;
        }
    }
    if delivered || ty == "headline" {
        None
    } else {
        bounce(C::ServiceUnavailable)
    }
}

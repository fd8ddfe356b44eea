//! Message and iq routing between local sessions (RFC 6121 §8.5).
//! Federation is a later issue: stanzas for other domains get
//! `remote-server-not-found`. Blocks (XEP-0191) stop stanzas both ways: the
//! blocker's own stanzas bounce with `<not-acceptable/>` + `<blocked/>`,
//! stanzas to a blocker bounce as if nobody were there.
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
    if let Some(e) = block_verdict(shared, me, &to) {
        return Some(ser::stanza_error(
            "message",
            stanza.id().as_deref(),
            raw_to.as_deref(),
            Some(me.as_str()),
            &e,
        ));
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

/// The XEP-0191 verdict for a stanza from `me` to `to`: the error to send
/// back, if the stanza must not pass.
fn block_verdict(shared: &Shared, me: &FullJid, to: &Jid) -> Option<StanzaError<'static>> {
    let registry = shared.fanout.registry();
    let (mine, theirs) = (me.to_bare(), to.to_bare());
    if registry.is_blocked(&mine, &theirs, to.to_full().as_ref()) {
        return Some(
            StanzaError::new(C::NotAcceptable).with_app("blocked", "urn:xmpp:blocking:errors"),
        );
    }
    if registry.is_blocked(&theirs, &mine, Some(me)) {
        return Some(StanzaError::new(C::ServiceUnavailable));
    }
    None
}

/// Routes an iq from `me` to another entity: a full JID with a session
/// gets it; anything else is answered `service-unavailable` (RFC 6121
/// §8.5.2.2, §8.5.3.2). Answers (`result`, `error`) are routed, never
/// answered.
pub(crate) fn iq(shared: &Shared, me: &FullJid, stanza: &Stanza) -> Option<Bytes> {
    let ty = stanza.type_().map(|t| t.into_owned());
    let response = matches!(ty.as_deref(), Some("result" | "error"));
    let raw_to = stanza.to().map(|t| t.into_owned());
    let bounce = |e: StanzaError<'_>| {
        (!response).then(|| {
            ser::stanza_error(
                "iq",
                stanza.id().as_deref(),
                raw_to.as_deref(),
                Some(me.as_str()),
                &e,
            )
        })
    };
    let Some(to) = raw_to.as_deref().and_then(|t| Jid::new(t).ok()) else {
        return bounce(StanzaError::new(C::JidMalformed));
    };
    if !shared.config.domains.iter().any(|d| d == to.domain()) {
        return bounce(StanzaError::new(C::RemoteServerNotFound));
    }
    if let Some(e) = block_verdict(shared, me, &to) {
        return bounce(e);
    }
    let session = to
        .to_full()
        .and_then(|f| shared.fanout.registry().session(&f));
    let Some(s) = session else {
        return bounce(StanzaError::new(C::ServiceUnavailable));
    };
    match stanza.with_addresses(me.as_str(), None) {
        Ok(stamped) => {
            let _ = s.queue().push(Frame::Bytes(stamped.bytes().clone()));
            None
        }
        Err(_) => bounce(StanzaError::new(C::BadRequest)),
    }
}

//! Message and iq routing (RFC 6121 §8.5): between local sessions, and to
//! other domains over s2s. Blocks (XEP-0191) stop stanzas both ways: the
//! blocker's own stanzas bounce with `<not-acceptable/>` + `<blocked/>`,
//! stanzas to a blocker bounce as if nobody were there.
//!
//! - To another domain: its outgoing s2s stream (`crate::s2s`); what cannot
//!   go bounces with `remote-server-not-found` or `remote-server-timeout`.
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
use stanza::{FullJid, Jid, Kind, Stanza, StanzaErrorCondition as C};

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
    let sent = if is_local(shared, to.domain()) {
        deliver_message(shared, &to, &ty, stamped.bytes())
    } else {
        shared
            .s2s
            .send(me.domain(), to.domain(), stamped.bytes().clone())
    };
    sent.err().and_then(bounce)
}

/// Whether `domain` is served here.
pub(crate) fn is_local(shared: &Shared, domain: &str) -> bool {
    shared.config.domains.iter().any(|d| d == domain)
}

/// Delivers a message (stamped with its sender) to the local sessions
/// that should have it; the error is what to bounce with.
pub(crate) fn deliver_message(
    shared: &Shared,
    to: &Jid,
    ty: &str,
    stamped: &Bytes,
) -> Result<(), C> {
    let registry = shared.fanout.registry();
    if let Some(full) = to.to_full() {
        if let Some(s) = registry.session(&full) {
            let _ = s.queue().push(Frame::Bytes(stamped.clone()));
            return Ok(());
        }
    }
    if ty == "groupchat" {
        return Err(C::ServiceUnavailable);
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
            let _ = s.queue().push(Frame::Bytes(stamped.clone()));
            delivered = true;
        }
    }
    if delivered || ty == "headline" || ty == "error" {
        Ok(())
    } else {
        Err(C::ServiceUnavailable)
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
    if let Some(e) = block_verdict(shared, me, &to) {
        return bounce(e);
    }
    let Ok(stamped) = stanza.with_addresses(me.as_str(), None) else {
        return bounce(StanzaError::new(C::BadRequest));
    };
    let sent = if is_local(shared, to.domain()) {
        deliver_iq(shared, &to, stamped.bytes())
    } else {
        shared
            .s2s
            .send(me.domain(), to.domain(), stamped.bytes().clone())
    };
    sent.err().and_then(|c| bounce(StanzaError::new(c)))
}

/// Delivers an iq to a local full JID's session.
pub(crate) fn deliver_iq(shared: &Shared, to: &Jid, stamped: &Bytes) -> Result<(), C> {
    let session = to
        .to_full()
        .and_then(|f| shared.fanout.registry().session(&f));
    let Some(s) = session else {
        return Err(C::ServiceUnavailable);
    };
    let _ = s.queue().push(Frame::Bytes(stamped.clone()));
    Ok(())
}

/// The error for a stanza that could not be delivered, addressed back to
/// its sender, with that sender; `None` for stanzas never answered with an
/// error (errors, headlines, presence).
pub(crate) fn bounce(original: &Bytes, cond: C) -> Option<(Jid, Bytes)> {
    let stanza = Stanza::parse(original.clone()).ok()?;
    let ty = stanza.type_();
    let never = match stanza.kind() {
        Kind::Message => matches!(ty.as_deref(), Some("error" | "headline")),
        Kind::Iq => matches!(ty.as_deref(), Some("error" | "result")),
        Kind::Presence | Kind::Other => true,
    };
    if never {
        return None;
    }
    let sender = Jid::new(&stanza.from()?).ok()?;
    let err = ser::stanza_error(
        stanza.name(),
        stanza.id().as_deref(),
        stanza.to().as_deref(),
        Some(sender.as_str()),
        &StanzaError::new(cond),
    );
    Some((sender, err))
}

/// Delivers an error from [`bounce`] to its local addressee.
pub(crate) fn deliver_local_error(shared: &Shared, (to, err): (Jid, Bytes)) {
    let _ = if err.starts_with(b"<iq") {
        deliver_iq(shared, &to, &err)
    } else {
        deliver_message(shared, &to, "error", &err)
    };
}

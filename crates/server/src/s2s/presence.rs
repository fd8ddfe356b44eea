//! Presence between servers (RFC 6121 §3 and §4 across domains): our
//! accounts' subscription stanzas, presence and probes sent to remote
//! contacts, and the contact's server's half for stanzas that come in.
//!
//! The local half runs on the same roster state machine and store as
//! local subscriptions (`crate::presence`); only the remote half is the
//! other server's.

use std::sync::Arc;

use bytes::Bytes;
use stanza::ser;
use stanza::{BareJid, Element, FullJid, Jid};
use tracing::debug;

use crate::roster::SubKind;
use crate::Shared;

/// Sends a presence stanza from one of our domains to a remote entity.
fn send(shared: &Shared, from_domain: &str, to: &str, bytes: Bytes) {
    let Ok(to) = Jid::new(to) else {
        return;
    };
    if let Err(c) = shared.s2s.send(from_domain, to.domain(), bytes) {
        debug!(%to, ?c, "s2s: presence not queued");
    }
}

/// A presence of `kind` (or available, `None`) from `from` to `to`.
fn stanza(from: &str, to: &str, kind: Option<&str>) -> Bytes {
    ser::presence(Some(from), Some(to), kind, None, b"")
}

/// Routes a subscription stanza from our `user` to a remote `contact`.
pub(crate) fn subscription_out(shared: &Shared, user: &BareJid, contact: &BareJid, kind: SubKind) {
    let b = stanza(user.as_str(), contact.as_str(), Some(kind.as_str()));
    send(shared, user.domain(), contact.as_str(), b);
}

/// `owner`'s available resources, now visible to the remote `contact`
/// (`gained`), or no longer (their unavailability).
pub(crate) fn share(shared: &Shared, owner: &BareJid, contact: &BareJid, gained: bool) {
    for s in crate::presence::available(shared, owner) {
        let from = s.jid();
        let bytes = if gained {
            match shared
                .presences
                .get(from)
                .and_then(|p| p.with_addresses(from.as_str(), Some(contact.as_str())).ok())
            {
                Some(p) => p.bytes().clone(),
                None => continue,
            }
        } else {
            stanza(from.as_str(), contact.as_str(), Some("unavailable"))
        };
        send(shared, owner.domain(), contact.as_str(), bytes);
    }
}

/// Asks a remote contact's server for its presence (§4.3).
pub(crate) fn probe(shared: &Shared, owner: &BareJid, contact: &BareJid) {
    let b = stanza(owner.as_str(), contact.as_str(), Some("probe"));
    send(shared, owner.domain(), contact.as_str(), b);
}

/// A resource's own presence, stamped, to a remote contact's bare JID
/// (its server delivers it to the contact's resources).
pub(crate) fn broadcast_to(
    shared: &Shared,
    me: &FullJid,
    contact: &BareJid,
    stamped: Option<&stanza::Stanza>,
) {
    let bytes = match stamped {
        Some(st) => match st.with_addresses(me.as_str(), Some(contact.as_str())) {
            Ok(p) => p.bytes().clone(),
            Err(_) => return,
        },
        None => stanza(me.as_str(), contact.as_str(), Some("unavailable")),
    };
    send(shared, me.domain(), contact.as_str(), bytes);
}

/// A presence stanza from a remote entity to one of our accounts.
pub(crate) async fn inbound(
    shared: &Arc<Shared>,
    from: &Jid,
    to: &Jid,
    ty: Option<&str>,
    bytes: &Bytes,
) {
    match ty {
        None | Some("unavailable") => {
            deliver(shared, to, bytes);
            let Some(full) = from.to_full() else {
                return;
            };
            if ty.is_some() {
                super::remote::unavailable(shared, &full);
            } else if let Ok(el) = Element::from_stanza(bytes) {
                super::remote::available(shared, &full, to, &el).await;
            }
        }
        Some("probe") => answer_probe(shared, from, &to.to_bare()).await,
        Some(t) => {
            if let Some(kind) = SubKind::parse(t) {
                subscription_in(shared, &from.to_bare(), &to.to_bare(), kind).await;
            }
        }
    }
}

/// Availability to a full JID goes to that session; to a bare JID, to
/// each available resource.
fn deliver(shared: &Shared, to: &Jid, bytes: &Bytes) {
    let targets = match to.to_full() {
        Some(full) => shared
            .fanout
            .registry()
            .session(&full)
            .into_iter()
            .collect(),
        None => crate::presence::available(shared, &to.to_bare()),
    };
    debug!(%to, targets = targets.len(), "s2s: presence delivered");
    for s in targets {
        let _ = s.queue().push(fanout::Frame::Bytes(bytes.clone()));
    }
}

/// A probe from a remote user: our account's presence if the user may
/// see it (§4.3.2), its unavailability when no resource is available.
async fn answer_probe(shared: &Arc<Shared>, from: &Jid, contact: &BareJid) {
    let (c, u) = (contact.clone(), from.to_bare());
    let item = shared.db(move |s| s.roster_item(&c, &u)).await;
    if !matches!(item, Ok(Some(i)) if i.sub.from()) {
        return;
    }
    let to = from.to_bare();
    if crate::presence::available(shared, contact).is_empty() {
        let b = stanza(contact.as_str(), to.as_str(), Some("unavailable"));
        send(shared, contact.domain(), to.as_str(), b);
    } else {
        share(shared, contact, &to, true);
    }
}

/// The contact's server's half of a subscription stanza from a remote
/// `user` to our `contact` (RFC 6121 §3).
async fn subscription_in(shared: &Arc<Shared>, user: &BareJid, contact: &BareJid, kind: SubKind) {
    let registry = shared.fanout.registry();
    if registry.is_blocked(contact, user, None) {
        // XEP-0191 §3.3.2: dropped silently.
        return;
    }
    let (c, u) = (contact.clone(), user.clone());
    let quota = shared.config.limits.roster_quota();
    let r = shared
        .db(move |s| s.inbound_subscription(&c, &u, kind, quota))
        .await;
    let (before, out) = match r {
        Ok(Some(x)) => x,
        Ok(None) => {
            // No such account: a request is refused (§3.1.3).
            if kind == SubKind::Subscribe {
                let b = stanza(contact.as_str(), user.as_str(), Some("unsubscribed"));
                send(shared, contact.domain(), user.as_str(), b);
            }
            return;
        }
        Err(e) => {
            debug!(%user, %contact, error = %e, "s2s: subscription not applied");
            return;
        }
    };
    debug!(%user, %contact, kind = kind.as_str(), ?out, "s2s: inbound subscription");
    if out.push {
        crate::presence::roster_push(shared, contact, user, out.item.as_ref());
    }
    if out.forward {
        let b = stanza(user.as_str(), contact.as_str(), Some(kind.as_str()));
        deliver(shared, &contact.to_jid(), &b);
    }
    if let Some(r) = out.reply {
        let b = stanza(contact.as_str(), user.as_str(), Some(r.as_str()));
        send(shared, contact.domain(), user.as_str(), b);
    }
    let _ = crate::presence::settle(
        shared,
        contact,
        user,
        (before, None),
        (Some(out.item.clone()), None),
    )
    .await;
}

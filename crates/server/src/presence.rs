//! Rosters, presence subscriptions and presence broadcast for bound
//! sessions (RFC 6121 §2–§4), on the state machine in [`crate::roster`].
//!
//! Every change is durable before anything is sent, and the fan-out
//! registry learns each `from`/`both` change (a presence follow) before the
//! stanza that caused it is answered, so every later publish sees it.
//!
//! Availability lives in [`Shared::presences`]: the last available
//! presence of each resource, already stamped with its `from`. A resource
//! is available exactly while it has an entry there.

use std::sync::Arc;

use bytes::Bytes;
use fanout::{Frame, SessionEntry};
use stanza::ser::{self, StanzaError};
use stanza::{BareJid, FullJid, Jid, Stanza, StanzaErrorCondition as C};
use tracing::debug;

use crate::roster::{self, RosterItem, SubKind};
use crate::store::Exchange;
use crate::Shared;
use stanza::xep::roster::Request;

/// Every bound session of an account.
pub(crate) fn sessions(shared: &Shared, bare: &BareJid) -> Vec<Arc<SessionEntry>> {
    shared
        .fanout
        .registry()
        .find_account(bare)
        .map(|a| a.sessions().iter().cloned().collect())
        .unwrap_or_default()
}

/// The sessions of an account that sent available presence.
pub(crate) fn available(shared: &Shared, bare: &BareJid) -> Vec<Arc<SessionEntry>> {
    let mut v = sessions(shared, bare);
    v.retain(|s| shared.presences.contains_key(s.jid()));
    v
}

fn push(s: &SessionEntry, bytes: Bytes) {
    // A full queue ends that session (its writer reports the overflow).
    let _ = s.queue().push(Frame::Bytes(bytes));
}

fn push_id() -> String {
    let r: [u8; 6] = rand::random();
    format!(
        "push-{}",
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Sends a roster push of `owner`'s item for `contact` to every resource
/// of `owner` (RFC 6121 §2.1.6).
pub(crate) fn roster_push(
    shared: &Shared,
    owner: &BareJid,
    contact: &BareJid,
    item: Option<&RosterItem>,
) {
    let q = roster::query([(contact.as_str(), item)], None);
    for s in sessions(shared, owner) {
        push(
            &s,
            ser::iq_request("set", &push_id(), None, Some(s.jid().as_str()), &q),
        );
    }
}

/// Whether `a` and `b` block each other (XEP-0191): nothing passes.
fn blocked(shared: &Shared, a: &Jid, b: &Jid) -> bool {
    shared.fanout.registry().blocked_between(a, b)
}

/// Answers a roster iq (RFC 6121 §2): get, add/update, remove.
pub(crate) async fn roster_iq(shared: &Arc<Shared>, me: &FullJid, id: &str, req: Request) -> Bytes {
    let bare = me.to_bare();
    let err = |cond| iq_error(id, me, cond);
    match req {
        Request::Get => {
            let b = bare.clone();
            let Ok(items) = shared.db(move |s| s.roster(&b)).await else {
                return err(C::InternalServerError);
            };
            let q = roster::query(
                items
                    .iter()
                    .filter(|(_, it)| it.listed)
                    .map(|(j, it)| (j.as_str(), Some(it))),
                None,
            );
            ser::iq_result(id, None, Some(me.as_str()), Some(&q))
        }
        Request::Update { jid, name, groups } => {
            roster_update(shared, me, id, jid, name, groups).await
        }
        Request::Remove(jid) => roster_remove(shared, me, id, jid).await,
    }
}

/// An iq error from the server to `me`.
fn iq_error(id: &str, me: &FullJid, cond: C) -> Bytes {
    ser::stanza_error(
        "iq",
        Some(id),
        None,
        Some(me.as_str()),
        &StanzaError::new(cond),
    )
}

/// Adds or updates a roster item (RFC 6121 §2.3).
async fn roster_update(
    shared: &Arc<Shared>,
    me: &FullJid,
    id: &str,
    jid: BareJid,
    name: Option<String>,
    groups: Vec<String>,
) -> Bytes {
    let bare = me.to_bare();
    let err = |cond| iq_error(id, me, cond);
    if jid == bare {
        return err(C::NotAllowed);
    }
    let (b, j) = (bare.clone(), jid.clone());
    let max = shared.config.limits.max_roster_items;
    let r = shared
        .db(move |s| s.roster_update(&b, &j, name, groups, max))
        .await;
    let item = match r {
        Ok(item) => item,
        Err(crate::StoreError::Quota(_)) => return err(C::PolicyViolation),
        Err(_) => return err(C::InternalServerError),
    };
    roster_push(shared, &bare, &jid, Some(&item));
    if crate::pep::refresh_access(shared, &bare).await.is_err() {
        return err(C::InternalServerError);
    }
    ser::iq_result(id, None, Some(me.as_str()), None)
}

/// Removes a roster item, cancelling the subscriptions both ways (§2.5).
async fn roster_remove(shared: &Arc<Shared>, me: &FullJid, id: &str, jid: BareJid) -> Bytes {
    let bare = me.to_bare();
    let err = |cond| iq_error(id, me, cond);
    let local = shared.config.served_domain(jid.domain()).is_some();
    let (b, j) = (bare.clone(), jid.clone());
    let r = shared.db(move |s| s.roster_remove(&b, &j, local)).await;
    let (before, exchanges) = match r {
        Ok(Some(x)) => (x.before, x.exchanges),
        Ok(None) => return err(C::ItemNotFound),
        Err(_) => return err(C::InternalServerError),
    };
    roster_push(shared, &bare, &jid, None);
    let contact_after = last_contact(&exchanges);
    if exchanges
        .iter()
        .any(|e| e.contact.as_ref().is_some_and(|c| c.push))
    {
        if let Some(item) = &contact_after {
            roster_push(shared, &jid, &bare, item.as_ref());
        }
    }
    let kinds = [SubKind::Unsubscribe, SubKind::Unsubscribed];
    for (kind, ex) in kinds.into_iter().zip(&exchanges) {
        forward_effects(shared, &bare, &jid, kind, ex);
    }
    if !settle(shared, &bare, &jid, before, (None, contact_after)).await {
        return err(C::InternalServerError);
    }
    ser::iq_result(id, None, Some(me.as_str()), None)
}

/// The contact's item after a series of exchanges, if any reached it.
fn last_contact(exchanges: &[Exchange]) -> Option<Option<RosterItem>> {
    exchanges
        .iter()
        .rev()
        .find_map(|e| e.contact.as_ref().map(|c| c.item.clone()))
}

/// A subscription stanza from a resource of `me` (RFC 6121 §3). Returns
/// an error stanza for the sender, if any.
pub(crate) async fn subscription(
    shared: &Arc<Shared>,
    me: &FullJid,
    stanza: &Stanza,
    kind: SubKind,
) -> Option<Bytes> {
    let user = me.to_bare();
    let raw_to = stanza.to().map(|t| t.into_owned()).unwrap_or_default();
    let bounce = |e: StanzaError<'_>| {
        Some(ser::stanza_error(
            "presence",
            stanza.id().as_deref(),
            Some(&raw_to),
            Some(me.as_str()),
            &e,
        ))
    };
    // Subscriptions are between bare JIDs (RFC 6121 §3.1.2).
    let contact = match Jid::new(&raw_to) {
        Ok(j) => j.to_bare(),
        Err(_) => return bounce(StanzaError::new(C::JidMalformed)),
    };
    if contact == user {
        return None;
    }
    let local = shared.config.served_domain(contact.domain()).is_some();
    let registry = shared.fanout.registry();
    if registry.is_blocked(&user, &contact, None) {
        return bounce(
            StanzaError::new(C::NotAcceptable).with_app("blocked", "urn:xmpp:blocking:errors"),
        );
    }
    if registry.is_blocked(&contact, &user, None) {
        // XEP-0191 §3.3.2: the blocker's server drops it silently.
        return None;
    }
    let (u, c) = (user.clone(), contact.clone());
    let quota = shared.config.limits.roster_quota();
    let r = shared
        .db(move |s| s.subscription(&u, &c, kind, local, quota))
        .await;
    let (before, ex) = match r {
        Ok(x) => x,
        Err(crate::StoreError::Quota(q)) => {
            debug!(%user, %contact, ?q, "subscription refused by a quota");
            return bounce(StanzaError::new(C::PolicyViolation).with_text(match q {
                crate::store::Quota::RosterItems => "your roster is full",
                _ => "the contact cannot take more subscription requests",
            }));
        }
        Err(_) => return bounce(StanzaError::new(C::InternalServerError)),
    };
    debug!(%user, %contact, kind = kind.as_str(), ?ex, "subscription");
    let user_after = ex
        .reply
        .as_ref()
        .map_or_else(|| ex.user.item.clone(), |(_, o)| o.item.clone());
    let contact_after = ex.contact.as_ref().map(|c| c.item.clone());
    // Pushes: each side whose visible item changed.
    if ex.user.push || ex.reply.as_ref().is_some_and(|(_, o)| o.push) {
        roster_push(shared, &user, &contact, user_after.as_ref());
    }
    if let (Some(c), Some(item)) = (&ex.contact, &contact_after) {
        if c.push {
            roster_push(shared, &contact, &user, item.as_ref());
        }
    }
    forward_effects(shared, &user, &contact, kind, &ex);
    // A presence stanza has no answer to fail; refresh_access logged it.
    let _ = settle(
        shared,
        &user,
        &contact,
        before,
        (Some(user_after), contact_after),
    )
    .await;
    None
}

/// Delivers what an exchange routes: the stanza to the contact's
/// available resources, and the contact server's own answer back to the
/// user's.
fn forward_effects(
    shared: &Shared,
    user: &BareJid,
    contact: &BareJid,
    kind: SubKind,
    ex: &Exchange,
) {
    if ex.user.forward && shared.config.served_domain(contact.domain()).is_none() {
        // The contact's server runs its half.
        crate::s2s::presence::subscription_out(shared, user, contact, kind);
        return;
    }
    if ex.contact.as_ref().is_some_and(|c| c.forward) {
        for s in available(shared, contact) {
            push(
                &s,
                ser::presence(
                    Some(user.as_str()),
                    Some(contact.as_str()),
                    Some(kind.as_str()),
                    None,
                    b"",
                ),
            );
        }
    }
    if let Some((r, o)) = &ex.reply {
        if o.forward {
            for s in available(shared, user) {
                push(
                    &s,
                    ser::presence(
                        Some(contact.as_str()),
                        Some(user.as_str()),
                        Some(r.as_str()),
                        None,
                        b"",
                    ),
                );
            }
        }
    }
}

/// After the items between `a` and `b` changed from `before` to `after`
/// (`None` in `after`: that side did not change): presence follows in the
/// registry, presence sent or withdrawn, and access to the owners' nodes.
pub(crate) async fn settle(
    shared: &Arc<Shared>,
    a: &BareJid,
    b: &BareJid,
    before: (Option<RosterItem>, Option<RosterItem>),
    after: (Option<Option<RosterItem>>, Option<Option<RosterItem>>),
) -> bool {
    let registry = shared.fanout.registry();
    let mut ok = true;
    // after.0 == None means a's item was removed by the caller (roster
    // remove): treat as no subscription.
    let a_after = after.0.unwrap_or(None);
    let b_after = after.1.unwrap_or_else(|| before.1.clone());
    for (owner, contact, was, now) in [
        (a, b, before.0.as_ref(), a_after.as_ref()),
        (b, a, before.1.as_ref(), b_after.as_ref()),
    ] {
        let from = |i: Option<&RosterItem>| i.is_some_and(|i| i.sub.from());
        let to = |i: Option<&RosterItem>| i.is_some_and(|i| i.sub.to());
        let remote = shared.config.served_domain(contact.domain()).is_none();
        if from(was) != from(now) {
            // The contact now follows (or no longer follows) the owner.
            registry.set_presence_follow(owner, contact, from(now));
            ok &= crate::pep::refresh_access(shared, owner).await.is_ok();
            if remote {
                // Its server learns the owner's presence, or that it is
                // gone (§3.1.5, §3.3.3).
                crate::s2s::presence::share(shared, owner, contact, from(now));
            }
        } else if was.map(|i| &i.groups) != now.map(|i| &i.groups) {
            ok &= crate::pep::refresh_access(shared, owner).await.is_ok();
        }
        if remote && !to(was) && to(now) {
            crate::s2s::presence::probe(shared, owner, contact);
        }
        if to(was) != to(now) {
            // The owner now sees (or no longer sees) the contact.
            let gained = to(now);
            for cs in available(shared, contact) {
                let from_jid = cs.jid().clone();
                let current = shared.presences.get(&from_jid).map(|p| p.value().clone());
                for os in available(shared, owner) {
                    let bytes = if gained {
                        match current.as_ref().and_then(|p| {
                            p.with_addresses(from_jid.as_str(), Some(os.jid().as_str()))
                                .ok()
                        }) {
                            Some(p) => p.bytes().clone(),
                            None => continue,
                        }
                    } else {
                        unavailable(&from_jid, os.jid())
                    };
                    push(&os, bytes);
                }
            }
        }
    }
    ok
}

/// An unavailable presence from `from` to `to`.
fn unavailable(from: &FullJid, to: &FullJid) -> Bytes {
    unavailable_to(from, to.as_str())
}

fn unavailable_to(from: &FullJid, to: &str) -> Bytes {
    ser::presence(
        Some(from.as_str()),
        Some(to),
        Some("unavailable"),
        None,
        b"",
    )
}

/// Broadcasts a resource's own presence (RFC 6121 §4.2, §4.4, §4.5):
/// `Some(stanza)` for available, `None` for unavailable (also on
/// disconnect). The first available presence of a session also probes the
/// contacts it sees and redelivers pending subscription requests.
pub(crate) async fn broadcast(shared: &Arc<Shared>, me: &FullJid, stanza: Option<&Stanza>) {
    let bare = me.to_bare();
    let initial = stanza.is_some() && !shared.presences.contains_key(me);
    let stamped = match stanza {
        Some(s) => match s.with_addresses(me.as_str(), None) {
            Ok(st) => Some(st),
            Err(_) => return,
        },
        None => {
            if shared.presences.remove(me).is_none() {
                // Never available: nobody was told it was.
                shared.directed.remove(me);
                return;
            }
            None
        }
    };
    if let Some(st) = &stamped {
        shared.presences.insert(me.clone(), st.clone());
    }
    // Read on this task, not the blocking pool: a redb read never waits
    // for a writer and a roster stays in the store's cache, so the read
    // costs less than the two thread hand-offs (one per login, #11).
    let roster = shared.store.roster(&bare).unwrap_or_default();
    let me_jid = me.to_jid();
    let send_to = |s: &SessionEntry| {
        if blocked(shared, &me_jid, &s.jid().to_jid()) {
            return;
        }
        let bytes = match &stamped {
            Some(st) => match st.with_addresses(me.as_str(), Some(s.jid().as_str())) {
                Ok(p) => p.bytes().clone(),
                Err(_) => return,
            },
            None => unavailable(me, s.jid()),
        };
        push(s, bytes);
    };
    // Contacts subscribed to us, and our own resources.
    for (contact, _) in roster.iter().filter(|(_, i)| i.sub.from()) {
        if shared.config.served_domain(contact.domain()).is_none() {
            if !blocked(shared, &me_jid, &contact.to_jid()) {
                crate::s2s::presence::broadcast_to(shared, me, contact, stamped.as_ref());
            }
            continue;
        }
        for s in available(shared, contact) {
            send_to(&s);
        }
    }
    for s in available(shared, &bare) {
        send_to(&s);
    }
    // Directed presence recipients hear of unavailability too (§4.6.3).
    if stamped.is_none() {
        if let Some((_, targets)) = shared.directed.remove(me) {
            for t in targets {
                if shared.config.served_domain(t.domain()).is_none() {
                    let b = unavailable_to(me, t.as_str());
                    let _ = shared.s2s.send(me.domain(), t.domain(), b);
                    continue;
                }
                match t.to_full() {
                    Some(f) => {
                        if let Some(s) = shared.fanout.registry().session(&f) {
                            send_to(&s);
                        }
                    }
                    None => available(shared, &t.to_bare())
                        .iter()
                        .for_each(|s| send_to(s)),
                }
            }
        }
        return;
    }
    if !initial {
        return;
    }
    let Some(own) = shared.fanout.registry().session(me) else {
        return;
    };
    // Probes (§4.3): what the contacts we see, and our other resources,
    // are now.
    let seen = roster
        .iter()
        .filter(|(_, i)| i.sub.to())
        .map(|(c, _)| c.clone())
        .chain(std::iter::once(bare.clone()));
    for contact in seen {
        if shared.config.served_domain(contact.domain()).is_none() {
            if contact != bare {
                crate::s2s::presence::probe(shared, &bare, &contact);
            }
            continue;
        }
        for s in available(shared, &contact) {
            if s.jid() == me || blocked(shared, &me_jid, &s.jid().to_jid()) {
                continue;
            }
            if let Some(p) = shared.presences.get(s.jid()) {
                if let Ok(p) = p.with_addresses(s.jid().as_str(), Some(me.as_str())) {
                    push(&own, p.bytes().clone());
                }
            }
        }
    }
    // Subscription requests that waited for us (§3.1.3), except from
    // those we block (or who block us): a block stops their requests too.
    for (contact, _) in roster.iter().filter(|(_, i)| i.pending_in) {
        if blocked(shared, &me_jid, &contact.to_jid()) {
            continue;
        }
        push(
            &own,
            ser::presence(
                Some(contact.as_str()),
                Some(bare.as_str()),
                Some("subscribe"),
                None,
                b"",
            ),
        );
    }
}

/// Directed presence (RFC 6121 §4.6): an available or unavailable
/// presence with a `to`, delivered to that entity only.
pub(crate) fn directed(shared: &Shared, me: &FullJid, stanza: &Stanza) -> Option<Bytes> {
    let raw_to = stanza.to()?.into_owned();
    let Ok(to) = Jid::new(&raw_to) else {
        return None;
    };
    let remote = shared.config.served_domain(to.domain()).is_none();
    if to.to_bare().node().is_none() || blocked(shared, &me.to_jid(), &to) {
        return None;
    }
    let unavailable = stanza.type_().as_deref() == Some("unavailable");
    {
        let mut list = shared.directed.entry(me.clone()).or_default();
        if unavailable {
            list.retain(|j| *j != to);
        } else if !list.contains(&to) {
            // Each target is remembered until unavailable: bounded.
            if list.len() >= shared.config.limits.max_directed_presences {
                return Some(ser::stanza_error(
                    "presence",
                    stanza.id().as_deref(),
                    Some(&raw_to),
                    Some(me.as_str()),
                    &StanzaError::new(C::PolicyViolation).with_text("too many directed presences"),
                ));
            }
            list.push(to.clone());
        }
    }
    if remote {
        if let Ok(p) = stanza.with_addresses(me.as_str(), None) {
            let _ = shared.s2s.send(me.domain(), to.domain(), p.bytes().clone());
        }
        return None;
    }
    let targets: Vec<Arc<SessionEntry>> = match to.to_full() {
        Some(f) => shared.fanout.registry().session(&f).into_iter().collect(),
        None => available(shared, &to.to_bare()),
    };
    for s in targets {
        if let Ok(p) = stanza.with_addresses(me.as_str(), Some(s.jid().as_str())) {
            push(&s, p.bytes().clone());
        }
    }
    None
}

//! Rosters and the presence subscription state machine (RFC 6121 §3).
//!
//! Pure logic, no I/O: [`outbound`] is what the user's server does with a
//! subscription stanza the user sends about a contact, and [`inbound`] is
//! what the contact's server does when it arrives. Both take the current
//! roster item (or none) and return the new one plus what to do: push the
//! item to the account's resources, route or deliver the stanza, answer
//! automatically. The server applies both halves in one store transaction
//! when both accounts are local.
//!
//! The item keeps RFC 6121's states: `subscription` (none, to, from,
//! both), the pending-out `ask`, the pending-in flag, and a stored
//! pre-approval (§3.4). A pending-in request from someone who is not in the
//! roster is kept in a hidden item (`listed = false`): RFC 6121 §3.1.3 says
//! it is not a roster item until the user acts on it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use stanza::ser;

/// RFC 6121 `subscription` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Sub {
    /// Neither sees the other's presence.
    #[default]
    None,
    /// The user sees the contact's presence.
    To,
    /// The contact sees the user's presence.
    From,
    /// Both ways.
    Both,
}

impl Sub {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Sub::None => "none",
            Sub::To => "to",
            Sub::From => "from",
            Sub::Both => "both",
        }
    }
    /// Whether the user sees the contact's presence.
    pub fn to(self) -> bool {
        matches!(self, Sub::To | Sub::Both)
    }
    /// Whether the contact sees the user's presence (and so follows the
    /// user's PEP nodes).
    pub fn from(self) -> bool {
        matches!(self, Sub::From | Sub::Both)
    }
    fn with(to: bool, from: bool) -> Self {
        match (to, from) {
            (false, false) => Sub::None,
            (true, false) => Sub::To,
            (false, true) => Sub::From,
            (true, true) => Sub::Both,
        }
    }
}

/// One roster item: the user's view of one contact.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RosterItem {
    /// The handle the user gave the contact.
    pub name: Option<String>,
    /// Roster groups.
    pub groups: Vec<String>,
    /// The subscription state.
    pub sub: Sub,
    /// Pending out: the user asked to see the contact's presence.
    pub ask: bool,
    /// Pending in: the contact asked to see the user's presence.
    pub pending_in: bool,
    /// The user pre-approved a request from the contact (§3.4).
    pub approved: bool,
    /// Whether the item is in the roster the user sees. False for a
    /// pending-in request from a stranger.
    pub listed: bool,
}

impl RosterItem {
    /// Whether nothing is left worth keeping.
    pub fn is_empty(&self) -> bool {
        !self.listed && !self.pending_in
    }
}

/// The four subscription presence types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// Ask to see the contact's presence.
    Subscribe,
    /// Approve a request (or pre-approve).
    Subscribed,
    /// Stop seeing the contact's presence.
    Unsubscribe,
    /// Deny a request, or cancel the contact's subscription.
    Unsubscribed,
}

impl SubKind {
    /// From a presence `type`.
    pub fn parse(t: &str) -> Option<Self> {
        Some(match t {
            "subscribe" => Self::Subscribe,
            "subscribed" => Self::Subscribed,
            "unsubscribe" => Self::Unsubscribe,
            "unsubscribed" => Self::Unsubscribed,
            _ => return None,
        })
    }
    /// The presence `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Subscribed => "subscribed",
            Self::Unsubscribe => "unsubscribe",
            Self::Unsubscribed => "unsubscribed",
        }
    }
}

/// What to do after a state machine step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The item as it is now; `None` when it should be deleted.
    pub item: Option<RosterItem>,
    /// Push the item to the account's resources.
    pub push: bool,
    /// Route the stanza on (outbound) or deliver it to the account's
    /// resources (inbound).
    pub forward: bool,
    /// Answer on the account's behalf with this type (inbound only).
    pub reply: Option<SubKind>,
}

fn done(item: RosterItem, changed: bool, forward: bool) -> Outcome {
    Outcome {
        item: (!item.is_empty()).then_some(item),
        push: changed,
        forward,
        reply: None,
    }
}

/// The user sends `kind` about the contact whose item is `item`
/// (RFC 6121 §3.1.2, §3.2.2, §3.3.2, §3.4).
pub fn outbound(item: Option<&RosterItem>, kind: SubKind) -> Outcome {
    let mut it = item.cloned().unwrap_or_default();
    let before = it.clone();
    let forward = match kind {
        SubKind::Subscribe => {
            // Always routed: the contact's server answers for an existing
            // subscription, and the request refreshes a lost one.
            if !it.sub.to() {
                it.ask = true;
            }
            it.listed = true;
            true
        }
        SubKind::Subscribed => {
            if it.pending_in {
                it.pending_in = false;
                it.sub = Sub::with(it.sub.to(), true);
                it.listed = true;
                true
            } else if !it.sub.from() {
                // Pre-approval (§3.4): stored, not routed.
                it.approved = true;
                it.listed = true;
                false
            } else {
                false
            }
        }
        SubKind::Unsubscribe => {
            let had = it.sub.to() || it.ask;
            it.sub = Sub::with(false, it.sub.from());
            it.ask = false;
            had
        }
        SubKind::Unsubscribed => {
            let had = it.sub.from() || it.pending_in;
            it.sub = Sub::with(it.sub.to(), false);
            it.pending_in = false;
            it.approved = false;
            had
        }
    };
    // A hidden item only becomes a push when it is listed.
    let changed = it != before && it.listed && state_visible_change(&before, &it);
    done(it, changed, forward)
}

/// The contact's subscription stanza of `kind` arrives at the user, whose
/// item for the contact is `item` (RFC 6121 §3.1.3, §3.1.5, §3.2.3, §3.3.3).
pub fn inbound(item: Option<&RosterItem>, kind: SubKind) -> Outcome {
    let mut it = item.cloned().unwrap_or_default();
    let before = it.clone();
    let mut reply = None;
    let forward = match kind {
        SubKind::Subscribe => {
            if it.sub.from() {
                // Already subscribed: answer for the user (§3.1.3).
                reply = Some(SubKind::Subscribed);
                false
            } else if it.approved {
                it.approved = false;
                it.sub = Sub::with(it.sub.to(), true);
                reply = Some(SubKind::Subscribed);
                false
            } else {
                it.pending_in = true;
                true
            }
        }
        SubKind::Subscribed => {
            if it.ask {
                it.ask = false;
                it.sub = Sub::with(true, it.sub.from());
                true
            } else {
                false
            }
        }
        SubKind::Unsubscribe => {
            let had = it.sub.from() || it.pending_in;
            it.sub = Sub::with(it.sub.to(), false);
            it.pending_in = false;
            had
        }
        SubKind::Unsubscribed => {
            let had = it.sub.to() || it.ask;
            it.sub = Sub::with(false, it.sub.from());
            it.ask = false;
            had
        }
    };
    let changed = it != before && it.listed && state_visible_change(&before, &it);
    let mut out = done(it, changed, forward);
    out.reply = reply;
    out
}

/// Whether a change shows in the roster (`pending_in` and `approved` do
/// not: RFC 6121 carries neither in a roster push).
fn state_visible_change(a: &RosterItem, b: &RosterItem) -> bool {
    a.sub != b.sub || a.ask != b.ask || a.listed != b.listed || a.approved != b.approved
}

/// A `<query xmlns='jabber:iq:roster'>` holding the given items; `None`
/// (or a hidden item) is written as `subscription='remove'`.
pub fn query<'a>(
    items: impl IntoIterator<Item = (&'a str, Option<&'a RosterItem>)>,
    ver: Option<&str>,
) -> Bytes {
    let items: Vec<(&str, Option<&RosterItem>, Vec<&str>)> = items
        .into_iter()
        .map(|(j, it)| {
            let it = it.filter(|i| i.listed);
            let groups =
                it.map_or_else(Vec::new, |i| i.groups.iter().map(String::as_str).collect());
            (j, it, groups)
        })
        .collect();
    let views: Vec<ser::RosterItem<'_>> = items
        .iter()
        .map(|(jid, it, groups)| ser::RosterItem {
            jid,
            name: it.and_then(|i| i.name.as_deref()),
            subscription: it.map_or("remove", |i| i.sub.as_str()),
            ask: it.filter(|i| i.ask).map(|_| "subscribe"),
            groups,
        })
        .collect();
    ser::roster_query(&views, ver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stanza::Element;

    fn listed(sub: Sub) -> RosterItem {
        RosterItem {
            sub,
            listed: true,
            ..RosterItem::default()
        }
    }

    /// Runs one stanza through both servers, as the local case does.
    fn exchange(
        user: Option<RosterItem>,
        contact: Option<RosterItem>,
        kind: SubKind,
    ) -> (Option<RosterItem>, Option<RosterItem>, Outcome, Outcome) {
        let o = outbound(user.as_ref(), kind);
        let i = if o.forward {
            inbound(contact.as_ref(), kind)
        } else {
            Outcome {
                item: contact.clone(),
                ..Outcome::default()
            }
        };
        (o.item.clone(), i.item.clone(), o, i)
    }

    #[test]
    fn subscribe_then_approve_gives_to_and_from() {
        let (u, c, o, i) = exchange(None, None, SubKind::Subscribe);
        let u = u.unwrap();
        assert_eq!((u.sub, u.ask, u.listed), (Sub::None, true, true));
        assert!(o.push && o.forward && i.forward);
        let c = c.unwrap();
        assert!(c.pending_in && !c.listed, "a stranger's request is hidden");
        assert!(!i.push);
        // The contact approves: the reverse direction.
        let (c2, u2, o2, i2) = exchange(Some(c), Some(u), SubKind::Subscribed);
        let (c2, u2) = (c2.unwrap(), u2.unwrap());
        assert_eq!(c2.sub, Sub::From);
        assert!(c2.listed && !c2.pending_in);
        assert_eq!((u2.sub, u2.ask), (Sub::To, false));
        assert!(o2.push && o2.forward && i2.push && i2.forward);
    }

    #[test]
    fn both_needs_the_reverse_request() {
        let u = listed(Sub::To);
        let c = listed(Sub::From);
        let (c, u, ..) = exchange(Some(c), Some(u), SubKind::Subscribe);
        let (c, u) = (c.unwrap(), u.unwrap());
        assert!(c.ask && u.pending_in);
        let (u, c, ..) = exchange(Some(u), Some(c), SubKind::Subscribed);
        assert_eq!(u.unwrap().sub, Sub::Both);
        assert_eq!(c.unwrap().sub, Sub::Both);
    }

    #[test]
    fn an_existing_subscription_is_answered_for_the_user() {
        let i = inbound(Some(&listed(Sub::From)), SubKind::Subscribe);
        assert_eq!(i.reply, Some(SubKind::Subscribed));
        assert!(!i.forward && !i.push);
    }

    #[test]
    fn preapproval_is_stored_and_used() {
        let o = outbound(None, SubKind::Subscribed);
        assert!(!o.forward, "a pre-approval is not routed");
        let c = o.item.unwrap();
        assert!(c.approved);
        let i = inbound(Some(&c), SubKind::Subscribe);
        let c = i.item.unwrap();
        assert_eq!(c.sub, Sub::From);
        assert!(!c.approved);
        assert_eq!(i.reply, Some(SubKind::Subscribed));
    }

    #[test]
    fn unsubscribe_and_unsubscribed_take_each_half_away() {
        let (u, c, ..) = exchange(
            Some(listed(Sub::Both)),
            Some(listed(Sub::Both)),
            SubKind::Unsubscribe,
        );
        assert_eq!(u.as_ref().unwrap().sub, Sub::From);
        assert_eq!(c.as_ref().unwrap().sub, Sub::To);
        let (u, c, ..) = exchange(u, c, SubKind::Unsubscribed);
        assert_eq!(u.unwrap().sub, Sub::None);
        assert_eq!(c.unwrap().sub, Sub::None);
    }

    #[test]
    fn denying_a_strangers_request_leaves_nothing() {
        let c = inbound(None, SubKind::Subscribe).item.unwrap();
        let o = outbound(Some(&c), SubKind::Unsubscribed);
        assert!(o.item.is_none(), "the hidden item is deleted");
        assert!(o.forward);
    }

    #[test]
    fn stray_stanzas_change_nothing() {
        let i = inbound(Some(&listed(Sub::None)), SubKind::Subscribed);
        assert!(!i.forward && !i.push, "an unrequested approval is dropped");
        let o = outbound(Some(&listed(Sub::None)), SubKind::Unsubscribe);
        assert!(!o.forward && !o.push);
    }

    #[test]
    fn roster_xml_round_trips_through_the_request_parser() {
        use stanza::xep::roster::Request;
        use stanza::xep::IqType;
        let it = RosterItem {
            name: Some("Jane <3".into()),
            groups: vec!["friends".into(), "x&y".into()],
            ..listed(Sub::To)
        };
        let q = query([("jane@example.org", Some(&it))], None);
        let el = Element::parse(std::str::from_utf8(&q).unwrap()).unwrap();
        assert_eq!(
            Request::parse(IqType::Set, &el).unwrap(),
            Request::Update {
                jid: stanza::BareJid::new("jane@example.org").unwrap(),
                name: it.name.clone(),
                groups: it.groups.clone(),
            }
        );
        let rm = query([("jane@example.org", None)], None);
        assert!(matches!(
            Request::parse(
                IqType::Set,
                &Element::parse(std::str::from_utf8(&rm).unwrap()).unwrap()
            ),
            Ok(Request::Remove(_))
        ));
    }
}

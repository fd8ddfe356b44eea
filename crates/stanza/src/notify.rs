//! Pubsub event notifications, serialized once per publish.
//!
//! Between the recipients of one publish only `to` differs (PROTOCOL §6):
//! the `id` is per publish, not per recipient. A [`Notification`] therefore
//! holds two shared byte strings,
//!
//! ```text
//! prefix: <message from='jane@example.org' type='headline' id='n-8f3c' to='
//! body:   '><event xmlns='http://jabber.org/protocol/pubsub#event'>…</event></message>
//! ```
//!
//! and a recipient's copy is the three slices `prefix`, its own escaped full
//! JID, `body`: ready for one vectored write, with nothing serialized or
//! copied per recipient. [`event_message`] is the per-recipient reference
//! serialization the template must agree with.

use bytes::Bytes;

use crate::escape::escape_attr_into;
use crate::ns;
use crate::ser::XmlWriter;

/// One item inside an `<items/>` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventItem<'a> {
    /// The item id.
    pub id: &'a str,
    /// The publisher's bare JID (XEP-0060 §7.1.2.3 `publisher`).
    pub publisher: Option<&'a str>,
    /// The payload: namespace-complete XML (an Atom `<entry>`), or empty.
    pub payload: &'a [u8],
}

/// What happened on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind<'a> {
    /// Items published.
    Items(&'a [EventItem<'a>]),
    /// Items retracted.
    Retract(&'a [&'a str]),
    /// All items purged.
    Purge,
    /// The node was deleted.
    Delete,
}

/// A pubsub event on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubsubEvent<'a> {
    /// The node, e.g. `urn:xmpp:microblog:0`.
    pub node: &'a str,
    /// What happened.
    pub kind: EventKind<'a>,
    /// XEP-0203 stamp for replays of the last item; `None` for live events.
    pub delay: Option<(&'a str, &'a str)>,
}

impl PubsubEvent<'_> {
    /// Appends `<event …>…</event>` and the optional `<delay/>`.
    pub fn write(&self, w: &mut XmlWriter) {
        w.open("event")
            .attr("xmlns", ns::PUBSUB_EVENT)
            .close_start();
        match self.kind {
            EventKind::Items(items) => {
                w.open("items").attr("node", self.node).close_start();
                for it in items {
                    w.open("item")
                        .attr("id", it.id)
                        .attr_opt("publisher", it.publisher);
                    if it.payload.is_empty() {
                        w.close_empty();
                    } else {
                        w.close_start().raw(it.payload).end("item");
                    }
                }
                w.end("items");
            }
            EventKind::Retract(ids) => {
                w.open("items").attr("node", self.node).close_start();
                for id in ids {
                    w.open("retract").attr("id", id).close_empty();
                }
                w.end("items");
            }
            EventKind::Purge => {
                w.open("purge").attr("node", self.node).close_empty();
            }
            EventKind::Delete => {
                w.open("delete").attr("node", self.node).close_empty();
            }
        }
        w.end("event");
        if let Some((from, stamp)) = self.delay {
            w.open("delay")
                .attr("xmlns", ns::DELAY)
                .attr("from", from)
                .attr("stamp", stamp)
                .close_empty();
        }
    }
}

/// The whole notification for one recipient, serialized from scratch. This
/// is the reference the template is tested against, and what the `naive`
/// fan-out strategy does per recipient.
pub fn event_message(from: &str, to: &str, id: &str, event: &PubsubEvent<'_>) -> Bytes {
    let mut w = XmlWriter::with_capacity(256 + payload_len(event));
    w.open("message")
        .attr("from", from)
        .attr("type", "headline")
        .attr("id", id)
        .attr("to", to)
        .close_start();
    event.write(&mut w);
    w.end("message");
    w.into_bytes()
}

/// One event for many recipients at one remote domain, through its
/// XEP-0033 multicast service (the domain itself): sent to `service`, with
/// each recipient as a `bcc` address, which the service strips from the
/// copies it delivers.
pub fn event_message_multicast(
    from: &str,
    service: &str,
    id: &str,
    event: &PubsubEvent<'_>,
    recipients: &[String],
) -> Bytes {
    let mut w = XmlWriter::with_capacity(
        256 + payload_len(event) + recipients.iter().map(|r| r.len() + 32).sum::<usize>(),
    );
    w.open("message")
        .attr("from", from)
        .attr("type", "headline")
        .attr("id", id)
        .attr("to", service)
        .close_start();
    w.open("addresses")
        .attr("xmlns", crate::ns::ADDRESS)
        .close_start();
    for r in recipients {
        w.open("address")
            .attr("type", "bcc")
            .attr("jid", r)
            .close_empty();
    }
    w.end("addresses");
    event.write(&mut w);
    w.end("message");
    w.into_bytes()
}

fn payload_len(event: &PubsubEvent<'_>) -> usize {
    match event.kind {
        EventKind::Items(items) => items.iter().map(|i| i.payload.len() + 64).sum(),
        _ => 64,
    }
}

/// A notification serialized once, shared by every recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    prefix: Bytes,
    body: Bytes,
}

impl Notification {
    /// Serializes `event` from `from` with stanza id `id`.
    pub fn new(from: &str, id: &str, event: &PubsubEvent<'_>) -> Self {
        let mut w = XmlWriter::with_capacity(96);
        w.open("message")
            .attr("from", from)
            .attr("type", "headline")
            .attr("id", id)
            .raw(b" to='");
        let prefix = w.into_bytes();
        let mut w = XmlWriter::with_capacity(64 + payload_len(event));
        w.raw(b"'>");
        event.write(&mut w);
        w.end("message");
        Self {
            prefix,
            body: w.into_bytes(),
        }
    }

    /// The slices of one recipient's copy. `to_escaped` is the recipient's
    /// full JID already escaped for an attribute (see [`escape_jid`]).
    #[inline]
    pub fn parts<'a>(&'a self, to_escaped: &'a [u8]) -> [&'a [u8]; 3] {
        [&self.prefix, to_escaped, &self.body]
    }

    /// Total length of one recipient's copy.
    #[inline]
    pub fn len_for(&self, to_escaped: &[u8]) -> usize {
        self.prefix.len() + to_escaped.len() + self.body.len()
    }

    /// One recipient's copy as contiguous bytes (tests, fallbacks).
    pub fn to_bytes_for(&self, to_escaped: &[u8]) -> Bytes {
        Bytes::from(self.parts(to_escaped).concat())
    }
}

/// A JID escaped for use inside a single-quoted attribute. Sessions compute
/// this once at bind time and reuse it for every notification.
pub fn escape_jid(jid: &str) -> Bytes {
    let mut out = Vec::with_capacity(jid.len());
    escape_attr_into(&mut out, jid);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::{Element, NsContext};
    use proptest::prelude::*;

    const ENTRY: &[u8] =
        b"<entry xmlns='http://www.w3.org/2005/Atom'><title type='text'>hanging out</title>\
        <id>tag:example.org,2026:posts-8f3c</id></entry>";

    fn parse(b: &[u8]) -> Element {
        Element::parse_in(std::str::from_utf8(b).unwrap(), &NsContext::client()).unwrap()
    }

    #[test]
    fn template_equals_whole_message() {
        let items = [EventItem {
            id: "8f3c",
            publisher: Some("jane@example.org"),
            payload: ENTRY,
        }];
        let ev = PubsubEvent {
            node: ns::MICROBLOG,
            kind: EventKind::Items(&items),
            delay: None,
        };
        let n = Notification::new("jane@example.org", "n-8f3c", &ev);
        let to = "joe@other.org/phone";
        let fast = n.to_bytes_for(&escape_jid(to));
        let slow = event_message("jane@example.org", to, "n-8f3c", &ev);
        assert_eq!(parse(&fast), parse(&slow));
        assert_eq!(fast.len(), n.len_for(&escape_jid(to)));
        let m = parse(&fast);
        assert_eq!(m.attr("type"), Some("headline"));
        let item = m
            .child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
            .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
            .unwrap();
        assert_eq!(item.attr("publisher"), Some("jane@example.org"));
        assert!(item.child("entry", ns::ATOM).is_some());
    }

    #[test]
    fn a_multicast_event_names_each_recipient_as_bcc() {
        let items = [EventItem {
            id: "8f3c",
            publisher: None,
            payload: ENTRY,
        }];
        let ev = PubsubEvent {
            node: ns::MICROBLOG,
            kind: EventKind::Items(&items),
            delay: None,
        };
        let to = ["joe@other.org".to_owned(), "kim's@other.org/a&b".to_owned()];
        let m = parse(&event_message_multicast(
            "jane@example.org",
            "other.org",
            "n1",
            &ev,
            &to,
        ));
        assert_eq!(m.attr("to"), Some("other.org"));
        let addrs: Vec<_> = m
            .child("addresses", ns::ADDRESS)
            .unwrap()
            .elements()
            .map(|a| {
                (
                    a.attr("type").unwrap().to_owned(),
                    a.attr("jid").unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            addrs,
            [
                ("bcc".to_owned(), to[0].clone()),
                ("bcc".to_owned(), to[1].clone())
            ]
        );
        assert!(m.child("event", ns::PUBSUB_EVENT).is_some());
    }

    #[test]
    fn retract_and_delay() {
        let ev = PubsubEvent {
            node: ns::MICROBLOG,
            kind: EventKind::Retract(&["a", "b"]),
            delay: Some(("jane@example.org", "2026-11-24T10:00:00Z")),
        };
        let m = parse(&event_message("jane@example.org", "joe@x/y", "r1", &ev));
        let items = m
            .child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
            .unwrap();
        let ids: Vec<_> = items.elements().map(|r| r.attr("id").unwrap()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(
            m.child("delay", ns::DELAY).unwrap().attr("stamp"),
            Some("2026-11-24T10:00:00Z")
        );
    }

    proptest! {
        // Any recipient JID text, item id and title: the template and the
        // per-recipient serializer produce the same stanza.
        #[test]
        fn template_matches_reference(to in "[a-z]{1,8}@[a-z]{1,8}/[ -~]{1,12}",
                                      id in "[ -~]{1,16}", title in "\\PC{0,64}") {
            let mut w = XmlWriter::default();
            w.open("entry").attr("xmlns", ns::ATOM).close_start().text_element("title", None, &title).end("entry");
            let payload = w.into_bytes();
            let items = [EventItem { id: &id, publisher: None, payload: &payload }];
            let ev = PubsubEvent { node: ns::MICROBLOG, kind: EventKind::Items(&items), delay: None };
            let n = Notification::new("jane@example.org", &id, &ev);
            let fast = n.to_bytes_for(&escape_jid(&to));
            let slow = event_message("jane@example.org", &to, &id, &ev);
            prop_assert_eq!(parse(&fast), parse(&slow));
        }
    }
}

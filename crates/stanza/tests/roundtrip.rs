//! Property tests: any stanza, serialized, then framed at random chunk
//! boundaries, parses back equal.

use proptest::prelude::*;
use stanza::element::{Element, Node, NsContext};
use stanza::framer::{Event, Framer};
use stanza::Stanza;

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.-]{0,7}"
}

fn text() -> impl Strategy<Value = String> {
    // Any printable text, including markup characters that need escaping.
    "[ -~\u{a0}-\u{2fff}\t\n]{0,24}"
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("jabber:client".to_owned()),
        Just("http://www.w3.org/2005/Atom".to_owned()),
        Just("http://jabber.org/protocol/pubsub".to_owned()),
        "urn:[a-z]{1,6}",
    ]
}

fn element() -> impl Strategy<Value = Element> {
    let leaf = (
        name(),
        namespace(),
        prop::collection::vec((name(), text()), 0..4),
        text(),
    )
        .prop_map(|(n, ns, attrs, t)| {
            let mut e = Element::new(n, ns);
            for (k, v) in attrs {
                e.set_attr(&k, v);
            }
            if !t.is_empty() {
                e = e.with_text(t);
            }
            e
        });
    leaf.prop_recursive(4, 24, 4, |inner| {
        (
            name(),
            namespace(),
            prop::collection::vec(inner, 0..4),
            text(),
        )
            .prop_map(|(n, ns, kids, t)| {
                let mut e = Element::new(n, ns);
                for k in kids {
                    e = e.with_child(k);
                }
                if !t.is_empty() {
                    e = e.with_text(t);
                }
                e
            })
    })
}

fn stanza() -> impl Strategy<Value = Element> {
    (
        prop_oneof![Just("message"), Just("presence"), Just("iq")],
        prop::option::of("[a-z]{1,5}@[a-z]{1,5}\\.org(/[ -~]{1,6})?"),
        prop::option::of("[ -~]{1,8}"),
        prop::collection::vec(element(), 0..3),
    )
        .prop_map(|(kind, to, id, kids)| {
            let mut e = Element::new(kind, "jabber:client");
            if let Some(to) = to {
                e.set_attr("to", to);
            }
            if let Some(id) = id {
                e.set_attr("id", id);
            }
            for k in kids {
                e = e.with_child(k);
            }
            e
        })
}

/// Declarations are an artefact of serialization, not part of the infoset.
fn strip(mut e: Element) -> Element {
    e.decls.clear();
    e.prefix = None;
    e.children = e
        .children
        .into_iter()
        .map(|c| match c {
            Node::Element(k) => Node::Element(strip(k)),
            t => t,
        })
        .collect();
    e
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn framed_at_random_boundaries_parses_back_equal(
        stanzas in prop::collection::vec(stanza(), 1..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let mut wire = HEADER.to_vec();
        for s in &stanzas {
            wire.extend_from_slice(&s.to_bytes_in(&NsContext::client()));
            wire.extend_from_slice(b" ");
        }
        wire.extend_from_slice(b"</stream:stream>");
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len())).collect();
        points.push(wire.len());
        points.sort_unstable();
        let mut f = Framer::default();
        let mut got = Vec::new();
        let mut last = 0;
        let mut closed = false;
        for p in points {
            f.feed(&wire[last..p]);
            last = p;
            while let Some(ev) = f.next().expect("valid input") {
                match ev {
                    Event::Stanza(b) => got.push(b),
                    Event::StreamClose => closed = true,
                    Event::StreamOpen(_) => {}
                }
            }
        }
        prop_assert!(closed);
        // Every byte fed is accounted for.
        prop_assert_eq!(f.consumed() + f.buffered() as u64, wire.len() as u64);
        prop_assert_eq!(got.len(), stanzas.len());
        for (bytes, want) in got.iter().zip(&stanzas) {
            let model = Stanza::parse(bytes.clone()).unwrap();
            prop_assert_eq!(model.name(), want.name.as_str());
            let (to, id) = (model.to(), model.id());
            prop_assert_eq!(to.as_deref(), want.attr("to"));
            prop_assert_eq!(id.as_deref(), want.attr("id"));
            let back = Element::from_stanza(bytes).unwrap();
            prop_assert_eq!(strip(back), strip(want.clone()));
        }
    }
}

//! An idle framer holds no receive buffer (#11: 4 KiB per idle session).

use stanza::{Event, Framer};

const HEADER: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>";

fn drain(f: &mut Framer) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(ev) = f.next().expect("well-formed") {
        out.push(ev);
    }
    out
}

#[test]
fn a_new_framer_holds_no_buffer() {
    let mut f = Framer::default();
    assert_eq!(f.buffer_mut().capacity(), 0);
}

#[test]
fn a_drained_framer_lets_its_buffer_go_and_a_partial_stanza_keeps_it() {
    let mut f = Framer::default();
    f.feed(HEADER);
    f.feed(b"<presence/><message to='a@b'><body>hel");
    let evs = drain(&mut f);
    assert_eq!(evs.len(), 2, "header and presence");
    // Half a message is buffered: it must stay.
    assert!(!f.release_if_empty());
    assert_eq!(f.buffered(), "<message to='a@b'><body>hel".len());
    f.feed(b"lo</body></message>");
    let evs = drain(&mut f);
    let Some(Event::Stanza(msg)) = evs.first() else {
        panic!("a stanza, got {evs:?}");
    };
    assert_eq!(&msg[..], b"<message to='a@b'><body>hello</body></message>");
    // Everything yielded: the buffer goes, the yielded stanza stays valid.
    assert!(f.release_if_empty());
    assert_eq!(f.buffer_mut().capacity(), 0);
    assert_eq!(&msg[..], b"<message to='a@b'><body>hello</body></message>");
    // And framing goes on from a fresh buffer.
    f.feed(b"<iq type='get' id='1'/>");
    assert_eq!(drain(&mut f).len(), 1);
}

#[test]
fn a_drained_framer_keeps_nothing_of_its_largest_stanza() {
    let mut f = Framer::default();
    f.feed(HEADER);
    f.feed(
        b"<iq type='set' id='p' a='1' b='2' c='3'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
          <publish node='n'><item id='i'><entry xmlns='http://www.w3.org/2005/Atom' xmlns:t='urn:t'>\
          <t:x><t:y><t:z d='4' e='5'/></t:y></t:x></entry></item></publish></pubsub></iq>",
    );
    assert_eq!(drain(&mut f).len(), 2, "header and iq");
    assert!(f.held_bytes() > 0, "scanning kept its buffer and lists");
    assert!(f.release_if_empty());
    assert_eq!(f.held_bytes(), 0);
    // The stream's namespaces are still known to the next stanza.
    f.feed(b"<t:q xmlns:t='urn:t'/><message/>");
    assert_eq!(drain(&mut f).len(), 2);
}

//! The framer's tests: events, limits, namespaces, and bytes accounted.

use super::*;

const HEADER: &str = "<?xml version='1.0'?><stream:stream to='example.org' version='1.0' \
    xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fn run_all(f: &mut Framer) -> Result<Vec<Event>, FrameError> {
    let mut out = Vec::new();
    while let Some(ev) = f.next()? {
        out.push(ev);
    }
    Ok(out)
}

fn frame(input: &str) -> Result<Vec<Event>, FrameError> {
    let mut f = Framer::default();
    f.feed(input.as_bytes());
    run_all(&mut f)
}

fn frame_bytewise(input: &[u8]) -> Result<Vec<Event>, FrameError> {
    let mut f = Framer::default();
    let mut out = Vec::new();
    for &b in input {
        f.feed(&[b]);
        out.extend(run_all(&mut f)?);
    }
    Ok(out)
}

fn stanzas(evs: &[Event]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Stanza(b) => Some(String::from_utf8(b.to_vec()).unwrap()),
            _ => None,
        })
        .collect()
}

#[test]
fn header_stanzas_close() {
    let body = "<message to='a@b'><body>hi &amp; bye &#x263A;</body></message> \n\
                <presence/><iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>";
    let input = format!("{HEADER}{body}</stream:stream>");
    let evs = frame(&input).unwrap();
    match &evs[0] {
        Event::StreamOpen(h) => {
            assert_eq!(h.name, "stream:stream");
            assert_eq!(h.attr("to"), Some("example.org"));
            assert_eq!(h.namespace(""), Some("jabber:client"));
            assert_eq!(
                h.namespace("stream"),
                Some("http://etherx.jabber.org/streams")
            );
        }
        e => panic!("expected header, got {e:?}"),
    }
    assert_eq!(
        stanzas(&evs),
        vec![
            "<message to='a@b'><body>hi &amp; bye &#x263A;</body></message>",
            "<presence/>",
            "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
        ]
    );
    assert_eq!(evs.last(), Some(&Event::StreamClose));
    assert_eq!(evs.len(), 5);
}

#[test]
fn byte_at_a_time_equals_all_at_once() {
    let input = format!(
        "{HEADER}<message><body a=\"x&lt;y\">t<![CDATA[ <raw> ]] ]]></body></message>\
         <iq><x xmlns:p='urn:p'><p:y p:z='1'/></x></iq></stream:stream>"
    );
    assert_eq!(
        frame(&input).unwrap(),
        frame_bytewise(input.as_bytes()).unwrap()
    );
}

#[test]
fn xml_declaration_again_after_restart() {
    let mut f = Framer::default();
    f.feed(HEADER.as_bytes());
    assert!(matches!(f.next(), Ok(Some(Event::StreamOpen(_)))));
    f.reset();
    f.feed(HEADER.as_bytes());
    assert!(matches!(f.next(), Ok(Some(Event::StreamOpen(_)))));
    // ...but a second declaration inside a stream is a PI.
    f.feed(b"<?xml version='1.0'?>");
    assert_eq!(
        f.next(),
        Err(FrameError::Restricted(Restricted::ProcessingInstruction))
    );
}

#[test]
fn stream_prefix_is_injected() {
    let input = format!("{HEADER}<stream:features><bind/></stream:features>");
    let evs = frame(&input).unwrap();
    assert_eq!(
        stanzas(&evs),
        vec!["<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind/></stream:features>"]
    );
}

#[test]
fn reserved_prefixes_cannot_be_rebound() {
    for bad in [
        "<message xmlns:xml='urn:evil'/>",
        "<message><body xmlns:xmlns='urn:x'/></message>",
        "<message xmlns:x='http://www.w3.org/XML/1998/namespace'/>",
        "<message xmlns='http://www.w3.org/XML/1998/namespace'/>",
    ] {
        let e = frame(&format!("{HEADER}{bad}")).unwrap_err();
        assert_eq!(
            e,
            FrameError::NotWellFormed("reserved namespace prefix re-bound"),
            "{bad}"
        );
    }
    let ok = "<message xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'/>";
    assert_eq!(stanzas(&frame(&format!("{HEADER}{ok}")).unwrap()), [ok]);
}

#[test]
fn unbound_prefix_is_not_well_formed() {
    let input = format!("{HEADER}<message><q:x/></message>");
    assert_eq!(
        frame(&input),
        Err(FrameError::NotWellFormed("unbound namespace prefix"))
    );
    // A declaration goes out of scope with its element.
    let input = format!("{HEADER}<message><a xmlns:q='u'/><q:x/></message>");
    assert!(frame(&input).is_err());
}

#[test]
fn restricted_xml() {
    let cases: [(&str, FrameError); 5] = [
        ("<!-- hi -->", FrameError::Restricted(Restricted::Comment)),
        (
            "<?php x?>",
            FrameError::Restricted(Restricted::ProcessingInstruction),
        ),
        (
            "<!DOCTYPE x [<!ENTITY a 'b'>]>",
            FrameError::Restricted(Restricted::Doctype),
        ),
        (
            "<message>&lol;</message>",
            FrameError::Restricted(Restricted::EntityReference),
        ),
        (
            "<message a='&ent;'/>",
            FrameError::Restricted(Restricted::EntityReference),
        ),
    ];
    for (body, want) in cases {
        let input = format!("{HEADER}{body}");
        let got = frame(&input).unwrap_err();
        assert_eq!(got, want, "{body}");
        assert_eq!(got.condition(), StreamErrorCondition::RestrictedXml);
    }
}

#[test]
fn malformed() {
    for body in [
        "<message><body></message>",
        "<message a=b/>",
        "<message a='1' a='2'/>",
        "<message a='<'/>",
        "<message>\u{1}</message>",
        "<message>&#0;</message>",
        "<message>& x</message>",
        "hello",
        "<1x/>",
        "<message a='1'b='2'/>",
    ] {
        let input = format!("{HEADER}{body}");
        let got = frame(&input).unwrap_err();
        assert_eq!(
            got.condition(),
            StreamErrorCondition::NotWellFormed,
            "{body}: {got:?}"
        );
    }
}

#[test]
fn unclosed_tag_waits_then_limit_applies() {
    let mut f = Framer::new(Limits {
        max_stanza_bytes: 1000,
        ..Limits::default()
    });
    f.feed(HEADER.as_bytes());
    f.next().unwrap();
    f.feed(b"<message><body>");
    assert_eq!(f.next(), Ok(None));
    f.feed(&[b'a'; 2000]);
    assert_eq!(f.next(), Err(FrameError::TooLarge { limit: 1000 }));
    // Failed is sticky.
    assert!(f.next().is_err());
}

#[test]
fn invalid_utf8() {
    let mut input = format!("{HEADER}<message><body>").into_bytes();
    input.extend_from_slice(&[0xff, 0xfe]);
    input.extend_from_slice(b"</body></message>");
    let mut f = Framer::default();
    f.feed(&input);
    assert_eq!(run_all(&mut f), Err(FrameError::InvalidUtf8));
}

#[test]
fn limits() {
    let deep = format!("{HEADER}{}", "<a>".repeat(10_000));
    assert_eq!(frame(&deep), Err(FrameError::TooDeep { limit: 64 }));
    let attrs: String = (0..1000).map(|i| format!(" a{i}='x'")).collect();
    let many = format!("{HEADER}<message{attrs}/>");
    assert_eq!(
        frame(&many),
        Err(FrameError::TooManyAttributes { limit: 64 })
    );
    // 1,000 declarations, 40 per element over 25 nested elements.
    let nested: String = (0..25)
        .map(|e| {
            let decls: String = (0..40).map(|i| format!(" xmlns:p{e}x{i}='u'")).collect();
            format!("<a{decls}>")
        })
        .collect();
    let decls = format!("{HEADER}<message>{nested}");
    assert_eq!(
        frame(&decls),
        Err(FrameError::TooManyNamespaces { limit: 64 })
    );
}

#[test]
fn reference_errors_do_not_depend_on_chunking() {
    // Found by the fuzzer: a verdict made before the `;` arrived.
    for body in [
        "<m>&a b;</m>",
        "<m>&ab</m>",
        "<m a='&lt x'/>",
        "<m>&abcdefghijklmnop;</m>",
    ] {
        let input = format!("{HEADER}{body}");
        let whole = frame(&input).unwrap_err();
        let bytewise = frame_bytewise(input.as_bytes()).unwrap_err();
        assert_eq!(whole, bytewise, "{body}");
    }
}

#[test]
fn whitespace_keepalives_do_not_accumulate() {
    let mut f = Framer::default();
    f.feed(HEADER.as_bytes());
    f.next().unwrap();
    for _ in 0..1000 {
        f.feed(b" \n");
        assert_eq!(f.next(), Ok(None));
    }
    assert_eq!(f.buffered(), 0);
}

#[test]
fn buffered_bytes_are_visible_for_starttls() {
    let mut f = Framer::default();
    f.feed(HEADER.as_bytes());
    f.next().unwrap();
    f.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message/>");
    assert!(matches!(f.next(), Ok(Some(Event::Stanza(_)))));
    assert!(f.buffered() > 0, "injected bytes must be detectable");
}

/// Streams whose headers declare the usual namespaces, in either order,
/// share one scope; any other header gets its own, and its prefixes still
/// reach the stanzas that borrow them.
#[test]
fn common_headers_share_one_scope() {
    let opened = |header: &str| {
        let mut f = Framer::default();
        f.feed(header.as_bytes());
        run_all(&mut f).unwrap();
        f
    };
    let a = opened(HEADER);
    let b = opened(
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' \
         xmlns='jabber:client' to='example.org' version='1.0'>",
    );
    assert!(std::ptr::eq(a.scope().unwrap(), b.scope().unwrap()));
    assert_eq!(a.scope().unwrap().namespaces().len(), 2);
    let s1 = opened(
        std::str::from_utf8(&crate::ser::server_stream_header(
            "a.example",
            Some("b.example"),
            None,
        ))
        .unwrap(),
    );
    let s2 = opened(
        std::str::from_utf8(&crate::ser::server_stream_header(
            "c.example",
            Some("b.example"),
            Some("x"),
        ))
        .unwrap(),
    );
    assert!(std::ptr::eq(s1.scope().unwrap(), s2.scope().unwrap()));
    assert_eq!(s1.scope().unwrap().namespaces().len(), 3);

    let mut c = opened(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         xmlns:x='urn:x' to='example.org'>",
    );
    assert!(!std::ptr::eq(a.scope().unwrap(), c.scope().unwrap()));
    c.feed(b"<message><x:y/></message>");
    assert_eq!(
        stanzas(&run_all(&mut c).unwrap()),
        vec!["<message xmlns:x='urn:x'><x:y/></message>"]
    );
}

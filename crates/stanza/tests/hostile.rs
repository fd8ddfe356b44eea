//! The hostile-input corpus: each case ends in its typed error, never a
//! panic, and the framer never buffers much beyond its stanza-size limit.

use stanza::framer::{Event, FrameError, Framer, Limits, Restricted};
use stanza::StreamErrorCondition;

const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream to='example.org' version='1.0' \
    xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Feeds `input` in 64 KiB chunks, as a socket would, and returns the first
/// error. Asserts the buffer stays bounded the whole time.
fn feed_until_error(input: impl Iterator<Item = Vec<u8>>) -> FrameError {
    let limits = Limits::default();
    let mut f = Framer::new(limits);
    for chunk in input {
        f.feed(&chunk);
        loop {
            match f.next() {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) => return e,
            }
        }
        assert!(
            f.buffered() <= limits.max_stanza_bytes + 64 * 1024 + HEADER.len(),
            "buffer grew to {}",
            f.buffered()
        );
    }
    panic!("input was accepted");
}

fn chunks(parts: Vec<Vec<u8>>) -> impl Iterator<Item = Vec<u8>> {
    parts
        .into_iter()
        .flat_map(|p| p.chunks(64 * 1024).map(<[u8]>::to_vec).collect::<Vec<_>>())
}

fn case(body: &[u8]) -> FrameError {
    feed_until_error(chunks(vec![HEADER.to_vec(), body.to_vec()]))
}

#[test]
fn unclosed_tag() {
    let e = case(b"<message><body>hi</message>");
    assert_eq!(e.condition(), StreamErrorCondition::NotWellFormed);
    let e = case(b"<message><body>hi</stream:stream>");
    assert_eq!(e.condition(), StreamErrorCondition::NotWellFormed);
}

#[test]
fn ten_megabyte_attribute() {
    // Streamed lazily: the framer must stop long before 10 MB is held.
    let head = b"<message a='".to_vec();
    let filler = (0..160).map(|_| vec![b'x'; 64 * 1024]);
    let input = std::iter::once(HEADER.to_vec())
        .chain(std::iter::once(head))
        .chain(filler);
    assert_eq!(
        feed_until_error(input),
        FrameError::TooLarge { limit: 256 * 1024 }
    );
}

#[test]
fn nesting_ten_thousand_deep() {
    let e = case(&b"<a>".repeat(10_000));
    assert_eq!(e, FrameError::TooDeep { limit: 64 });
    assert_eq!(e.condition(), StreamErrorCondition::PolicyViolation);
}

#[test]
fn billion_laughs() {
    let lol = b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>\
        <!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>\
        <stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>&lol2;";
    let e = feed_until_error(std::iter::once(lol.to_vec()));
    assert_eq!(e, FrameError::Restricted(Restricted::Doctype));
    assert_eq!(e.condition(), StreamErrorCondition::RestrictedXml);
    // Inside a stream too.
    assert_eq!(
        case(b"<!DOCTYPE x>"),
        FrameError::Restricted(Restricted::Doctype)
    );
}

#[test]
fn invalid_utf8() {
    assert_eq!(
        case(b"<message>\xc3\x28</message>"),
        FrameError::InvalidUtf8
    );
    assert_eq!(case(b"<m\xff/>"), FrameError::InvalidUtf8);
}

#[test]
fn thousand_attributes() {
    let attrs: String = (0..1000).map(|i| format!(" a{i}='x'")).collect();
    assert_eq!(
        case(format!("<message{attrs}/>").as_bytes()),
        FrameError::TooManyAttributes { limit: 64 }
    );
}

#[test]
fn thousand_namespace_declarations() {
    let nested: String = (0..25)
        .map(|e| {
            let d: String = (0..40)
                .map(|i| format!(" xmlns:n{e}_{i}='urn:x'"))
                .collect();
            format!("<x{d}>")
        })
        .collect();
    assert_eq!(
        case(format!("<message>{nested}").as_bytes()),
        FrameError::TooManyNamespaces { limit: 64 }
    );
}

#[test]
fn comment_and_processing_instruction() {
    assert_eq!(
        case(b"<message><!-- x --></message>"),
        FrameError::Restricted(Restricted::Comment)
    );
    assert_eq!(
        case(b"<message><?evil x?></message>"),
        FrameError::Restricted(Restricted::ProcessingInstruction)
    );
}

#[test]
fn garbage_bytes() {
    let e = case(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    assert_eq!(e.condition(), StreamErrorCondition::NotWellFormed);
}

#[test]
fn good_stanzas_before_the_bad_one_are_yielded() {
    let mut f = Framer::default();
    f.feed(HEADER);
    f.feed(b"<presence/><!-- x -->");
    assert!(matches!(f.next(), Ok(Some(Event::StreamOpen(_)))));
    assert!(matches!(f.next(), Ok(Some(Event::Stanza(_)))));
    assert!(f.next().is_err());
}

/// XML 1.0's `Char` rule holds everywhere a stanza carries characters: text,
/// CDATA, attribute values, character references, names, and the header.
#[test]
fn characters_xml_forbids() {
    let cases: &[&[u8]] = &[
        "<message><body>\u{FFFE}</body></message>".as_bytes(),
        "<message><body>\u{FFFF}</body></message>".as_bytes(),
        "<message a='\u{FFFF}'/>".as_bytes(),
        b"<message><body><![CDATA[\x01]]></body></message>",
        b"<message><body><![CDATA[a\x1fb]]></body></message>",
        b"<message a='\x01'/>",
        b"<message a='&#x1;'/>",
        b"<message><body>&#x1;</body></message>",
        b"<message><body>&#xFFFE;</body></message>",
        b"<message><body>&#0;</body></message>",
        b"<message><body>\x0c</body></message>",
        "<message\u{FFFF}/>".as_bytes(),
    ];
    for body in cases {
        let e = case(body);
        assert_eq!(
            e.condition(),
            StreamErrorCondition::NotWellFormed,
            "{:?}: {e}",
            String::from_utf8_lossy(body)
        );
    }
    // The header is held to the same rule.
    let header = "<stream:stream to='example.org\u{FFFE}' version='1.0' \
        xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
    let e = feed_until_error(std::iter::once(header.as_bytes().to_vec()));
    assert_eq!(e.condition(), StreamErrorCondition::NotWellFormed);
    // The characters just inside the allowed ranges still pass.
    let mut f = Framer::new(Limits::default());
    f.feed(HEADER);
    f.feed("<message a='\u{FFFD}\t'><body>\u{D7FF}\u{E000}\u{FFFD}\u{10000}<![CDATA[\t\r\n]]></body></message>".as_bytes());
    let mut stanzas = 0;
    while let Some(ev) = f.next().unwrap() {
        stanzas += usize::from(matches!(ev, Event::Stanza(_)));
    }
    assert_eq!(stanzas, 1);
}

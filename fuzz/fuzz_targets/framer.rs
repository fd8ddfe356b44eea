//! Fuzzes the framer and the stanza parser together.
//!
//! Input: the first byte picks a chunk size, the rest is the stream. The
//! stream is fed in chunks, as a socket would deliver it. Invariants beyond
//! "no panic":
//! - conservation: bytes consumed + bytes left buffered = bytes fed, after
//!   every call, and each stanza yielded is no longer than what was consumed
//!   for it (plus the namespace declarations copied from the header);
//! - memory: the buffer never holds more than the stanza limit plus one
//!   chunk;
//! - every stanza yielded is valid UTF-8 and parses as a stanza;
//! - XML 1.0's `Char` rule: every character of a stanza yielded, and every
//!   character reference in it, is an XML `Char` (no control characters,
//!   no U+FFFE or U+FFFF);
//! - after an error the framer stays failed with the same error;
//! - feeding the same input in one piece yields the same events up to the
//!   first error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stanza::framer::{Event, Framer, Limits};

fn run(data: &[u8], chunk: usize, limits: Limits) -> (Vec<Event>, Option<stanza::FrameError>) {
    let mut f = Framer::new(limits);
    let mut events = Vec::new();
    let mut fed = 0usize;
    let mut last_consumed = 0u64;
    for piece in data.chunks(chunk.max(1)) {
        f.feed(piece);
        fed += piece.len();
        loop {
            match f.next() {
                Ok(Some(ev)) => {
                    assert_eq!(f.consumed() + f.buffered() as u64, fed as u64, "bytes lost or duplicated");
                    if let Event::Stanza(b) = &ev {
                        let taken = f.consumed() - last_consumed;
                        let header = f.scope().map_or(0, |h| {
                            h.namespaces().iter().map(|(p, u)| p.len() + 6 * u.len() + 12).sum::<usize>()
                        });
                        assert!(b.len() as u64 <= taken + header as u64, "stanza larger than its input");
                        let text = std::str::from_utf8(b).expect("stanzas are UTF-8");
                        assert!(text.chars().all(is_xml_char), "a forbidden character passed: {text:?}");
                        assert!(char_refs_ok(text), "a forbidden character reference passed: {text:?}");
                        stanza::Stanza::from_framed(b.clone()).expect("framed stanzas parse");
                        stanza::Stanza::parse(b.clone()).expect("framed stanzas are UTF-8");
                    }
                    last_consumed = f.consumed();
                    events.push(ev);
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(f.next(), Err(e.clone()), "errors are sticky");
                    return (events, Some(e));
                }
            }
        }
        assert!(f.buffered() <= fed, "buffered more than was fed");
        assert!(
            f.buffered() <= limits.max_stanza_bytes + chunk.max(1),
            "buffer exceeds limit plus one chunk"
        );
        assert_eq!(f.consumed() + f.buffered() as u64, fed as u64, "bytes lost or duplicated");
    }
    (events, None)
}

/// XML 1.0 `Char`.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Every `&#N;` / `&#xN;` in `text` names an XML `Char`. (Inside CDATA such
/// text is literal, and literal text passes this check anyway when it is
/// well-formed; a CDATA `&#1;` is a false alarm this target accepts by
/// skipping CDATA sections.)
fn char_refs_ok(text: &str) -> bool {
    let mut rest = text;
    while let Some(i) = rest.find("<![CDATA[") {
        // Check the part before the CDATA section, skip the section.
        if !refs_ok(&rest[..i]) {
            return false;
        }
        match rest[i..].find("]]>") {
            Some(j) => rest = &rest[i + j + 3..],
            None => return true,
        }
    }
    refs_ok(rest)
}

fn refs_ok(text: &str) -> bool {
    text.match_indices("&#").all(|(i, _)| {
        let body = &text[i + 2..];
        let Some(end) = body.find(';') else { return false };
        let (digits, radix) = match body[..end].strip_prefix('x') {
            Some(h) => (h, 16),
            None => (&body[..end], 10),
        };
        u32::from_str_radix(digits, radix).ok().and_then(char::from_u32).is_some_and(is_xml_char)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, rest)) = data.split_first() else { return };
    let limits = Limits {
        max_stanza_bytes: 4096,
        max_depth: 16,
        max_attributes: 16,
        max_namespace_decls: 16,
    };
    let chunked = run(rest, (c as usize % 64) + 1, limits);
    let whole = run(rest, rest.len().max(1), limits);
    // Chunking must not change the outcome.
    assert_eq!(chunked, whole);
});

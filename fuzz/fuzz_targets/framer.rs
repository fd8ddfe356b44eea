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
                        let header = f.header().map_or(0, |h| {
                            h.namespaces.iter().map(|(p, u)| p.len() + 6 * u.len() + 12).sum::<usize>()
                        });
                        assert!(b.len() as u64 <= taken + header as u64, "stanza larger than its input");
                        assert!(std::str::from_utf8(b).is_ok());
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

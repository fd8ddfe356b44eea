//! A deterministic corpus of realistic client-to-server stanzas.

use stanza::ser::XmlWriter;

/// The stream header the corpus is framed under.
pub const HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream to='example.org' version='1.0' \
    xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// The kinds of stanza in the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A chat message with a body and a receipt request.
    Message,
    /// Available presence with show, status, priority and XEP-0115 caps.
    Presence,
    /// A microblog publish whose Atom entry is about 300 bytes.
    Publish300,
    /// A microblog publish whose Atom entry is about 3 KB.
    Publish3k,
}

impl Kind {
    /// All kinds, in report order.
    pub const ALL: [Kind; 4] = [
        Kind::Message,
        Kind::Presence,
        Kind::Publish300,
        Kind::Publish3k,
    ];

    /// A short label for bench ids.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence_caps",
            Kind::Publish300 => "publish_300B",
            Kind::Publish3k => "publish_3KB",
        }
    }
}

/// Text of `n` bytes from a fixed vocabulary, with characters that need
/// escaping, so the parser sees entities as real posts contain.
fn prose(n: usize, seed: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "park",
        "was",
        "lovely",
        "today",
        "&",
        "coffee",
        "<3",
        "with",
        "friends",
        "café",
        "über",
        "\"quoted\"",
        "microblog",
        "federation",
        "posts",
        "follow",
        "me",
        "at",
        "xmpp:",
        "jane@example.org",
    ];
    let mut s = String::with_capacity(n + 16);
    let mut i = seed;
    while s.len() < n {
        s.push_str(WORDS[i % WORDS.len()]);
        s.push(' ');
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    s.truncate(
        s.char_indices()
            .take_while(|(j, _)| *j < n)
            .last()
            .map_or(0, |(j, c)| j + c.len_utf8()),
    );
    s
}

/// An Atom entry whose content is about `body` bytes.
pub fn atom_entry(id: usize, body: usize) -> Vec<u8> {
    let mut w = XmlWriter::with_capacity(body + 400);
    w.open("entry")
        .attr("xmlns", stanza::ns::ATOM)
        .close_start();
    w.open("title")
        .attr("type", "text")
        .close_start()
        .text(&prose(60, id))
        .end("title");
    w.text_element("id", None, &format!("tag:example.org,2026:posts-{id:08x}"));
    w.text_element("published", None, "2026-11-24T10:00:00Z");
    w.text_element("updated", None, "2026-11-24T10:00:00Z");
    w.open("author").close_start();
    w.text_element("name", None, "Jane");
    w.text_element("uri", None, "xmpp:jane@example.org");
    w.end("author");
    w.open("content")
        .attr("type", "text")
        .close_start()
        .text(&prose(body.saturating_sub(300), id + 1))
        .end("content");
    w.end("entry");
    w.as_bytes().to_vec()
}

/// One stanza of `kind`, number `i`.
pub fn stanza(kind: Kind, i: usize) -> Vec<u8> {
    let mut w = XmlWriter::with_capacity(4096);
    match kind {
        Kind::Message => {
            w.open("message")
                .attr("to", &format!("friend{}@example.org", i % 97))
                .attr("type", "chat")
                .attr("id", &format!("m{i}"))
                .close_start();
            w.text_element("body", None, &prose(80, i));
            w.empty_ns("request", "urn:xmpp:receipts");
            w.empty_ns("active", "http://jabber.org/protocol/chatstates");
            w.end("message");
        }
        Kind::Presence => {
            w.open("presence")
                .attr("id", &format!("p{i}"))
                .close_start();
            w.text_element("show", None, "chat");
            w.text_element("status", None, &prose(30, i));
            w.text_element("priority", None, "5");
            w.open("c")
                .attr("xmlns", stanza::ns::CAPS)
                .attr("hash", "sha-1")
                .attr("node", "https://client.example")
                .attr("ver", "QgayPKawpkPSDYmwT/WM94uAlu0=")
                .close_empty();
            w.end("presence");
        }
        Kind::Publish300 | Kind::Publish3k => {
            let body = if kind == Kind::Publish300 { 300 } else { 3000 };
            w.open("iq")
                .attr("type", "set")
                .attr("id", &format!("pub{i}"))
                .close_start();
            w.open("pubsub")
                .attr("xmlns", stanza::ns::PUBSUB)
                .close_start();
            w.open("publish")
                .attr("node", stanza::ns::MICROBLOG)
                .close_start();
            w.open("item").attr("id", &format!("{i:08x}")).close_start();
            w.raw(&atom_entry(i, body));
            w.end("item").end("publish").end("pubsub").end("iq");
        }
    }
    w.as_bytes().to_vec()
}

/// A stream body of about `target` bytes: stanzas of the given kinds in
/// rotation. Returns the bytes (header included) and the stanza count.
pub fn stream(kinds: &[Kind], target: usize) -> (Vec<u8>, usize) {
    let mut out = HEADER.to_vec();
    let mut n = 0;
    while out.len() < target {
        out.extend_from_slice(&stanza(kinds[n % kinds.len()], n));
        n += 1;
    }
    (out, n)
}

/// The corpus size the parse benches use.
pub const STREAM_BYTES: usize = 1 << 20;

/// Frames and parses a whole stream the way the server does, reading it in
/// 4 KiB chunks. Returns the number of stanzas.
pub fn frame_and_parse(stream: &[u8]) -> usize {
    let mut f = stanza::Framer::default();
    let mut n = 0;
    for chunk in stream.chunks(4096) {
        f.feed(chunk);
        while let Some(ev) = f.next().expect("corpus is valid") {
            if let stanza::Event::Stanza(b) = ev {
                let s = stanza::Stanza::from_framed(b).expect("corpus is valid");
                std::hint::black_box(s.to());
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_frames_and_sizes_are_as_labelled() {
        for kind in Kind::ALL {
            let (s, n) = stream(&[kind], 64 * 1024);
            assert_eq!(frame_and_parse(&s), n, "{kind:?}");
        }
        let e300 = atom_entry(1, 300).len();
        let e3k = atom_entry(1, 3000).len();
        assert!((250..=450).contains(&e300), "{e300}");
        assert!((2800..=3300).contains(&e3k), "{e3k}");
    }
}

//! The stanza model: message, presence and iq, with their routing fields.
//!
//! A [`Stanza`] keeps the bytes the framer cut and remembers where the routing
//! attributes (`from`, `to`, `type`, `id`, `xmlns`) are inside them. Reading
//! those fields allocates nothing unless a value contains an escape, and the
//! payload is never parsed: routing a stanza never re-serializes it. Code that
//! needs the payload parses it on demand with [`crate::element::Element`].

use std::borrow::Cow;

use bytes::Bytes;

/// The top-level element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `<message>`.
    Message,
    /// `<presence>`.
    Presence,
    /// `<iq>`.
    Iq,
    /// Anything else (SASL, STARTTLS, stream management, ...).
    Other,
}

/// Why bytes are not a stanza.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StanzaError {
    /// Not UTF-8.
    #[error("stanza is not UTF-8")]
    Utf8,
    /// The XML of the top element is malformed.
    #[error("malformed stanza: {0}")]
    Xml(String),
    /// The top element is too large to index (over 4 GiB).
    #[error("stanza too large")]
    TooLarge,
}

/// Where an attribute value sits in the stanza. `u32::MAX` start: absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AttrRef {
    start: u32,
    /// Length; the top bit says the raw value contains an escape.
    len: u32,
}

const ESCAPED: u32 = 1 << 31;

impl AttrRef {
    const NONE: Self = Self {
        start: u32::MAX,
        len: 0,
    };
    fn is_some(self) -> bool {
        self.start != u32::MAX
    }
}

/// One stanza: its bytes plus the positions of its routing fields.
#[derive(Clone, PartialEq, Eq)]
pub struct Stanza {
    bytes: Bytes,
    kind: Kind,
    name_len: u16,
    from: AttrRef,
    to: AttrRef,
    ty: AttrRef,
    id: AttrRef,
    xmlns: AttrRef,
}

impl std::fmt::Debug for Stanza {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stanza")
            .field("kind", &self.kind)
            .field("xml", &self.as_str())
            .finish()
    }
}

impl Stanza {
    /// Indexes a complete element from anywhere: checks that all of it is
    /// UTF-8.
    pub fn parse(bytes: Bytes) -> Result<Self, StanzaError> {
        std::str::from_utf8(&bytes).map_err(|_| StanzaError::Utf8)?;
        Self::from_framed(bytes)
    }

    /// Indexes an element the [`crate::Framer`] yielded. The framer already
    /// checked the whole stanza (UTF-8 included), so only the start tag is
    /// read again here: the payload is never looked at.
    pub fn from_framed(bytes: Bytes) -> Result<Self, StanzaError> {
        if bytes.len() > (ESCAPED - 1) as usize {
            return Err(StanzaError::TooLarge);
        }
        let head = &bytes[..start_tag_len(&bytes)];
        let text = std::str::from_utf8(head).map_err(|_| StanzaError::Utf8)?;
        let base = text.as_ptr() as usize;
        let mut reader = quick_xml::Reader::from_str(text);
        let start = match reader.read_event() {
            Ok(quick_xml::events::Event::Start(s) | quick_xml::events::Event::Empty(s)) => s,
            Ok(other) => {
                return Err(StanzaError::Xml(format!(
                    "expected an element, got {other:?}"
                )))
            }
            Err(e) => return Err(StanzaError::Xml(e.to_string())),
        };
        let qname = start.name().0;
        let local = qname.rsplit(':').next().unwrap_or(qname);
        let kind = match local {
            "message" => Kind::Message,
            "presence" => Kind::Presence,
            "iq" => Kind::Iq,
            _ => Kind::Other,
        };
        let mut s = Stanza {
            kind,
            name_len: qname.len().min(u16::MAX as usize) as u16,
            from: AttrRef::NONE,
            to: AttrRef::NONE,
            ty: AttrRef::NONE,
            id: AttrRef::NONE,
            xmlns: AttrRef::NONE,
            bytes: Bytes::new(),
        };
        for attr in start.attributes() {
            let attr = attr.map_err(|e| StanzaError::Xml(e.to_string()))?;
            let slot = match attr.key.0 {
                "from" => &mut s.from,
                "to" => &mut s.to,
                "type" => &mut s.ty,
                "id" => &mut s.id,
                "xmlns" => &mut s.xmlns,
                _ => continue,
            };
            let Cow::Borrowed(v) = attr.value else {
                // Values are borrowed from a &str input; anything else would
                // be a quick-xml change we want to hear about in tests.
                return Err(StanzaError::Xml("unexpected owned attribute".into()));
            };
            let escaped = if v.contains('&') { ESCAPED } else { 0 };
            *slot = AttrRef {
                start: (v.as_ptr() as usize - base) as u32,
                len: v.len() as u32 | escaped,
            };
        }
        drop(start);
        s.bytes = bytes;
        Ok(s)
    }

    /// Which stanza this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The qualified name of the top element as written.
    pub fn name(&self) -> &str {
        self.head(1, self.name_len as usize)
    }

    /// Text inside the start tag, which `from_framed` validated.
    fn head(&self, start: usize, len: usize) -> &str {
        std::str::from_utf8(&self.bytes[start..start + len]).unwrap_or_default()
    }
    /// The whole stanza.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// The whole stanza as text. Validates on each call (the hot path
    /// never needs the whole text); bytes that came through the framer or
    /// [`Self::parse`] are always valid.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    fn get(&self, r: AttrRef) -> Option<Cow<'_, str>> {
        if !r.is_some() {
            return None;
        }
        let len = (r.len & !ESCAPED) as usize;
        let raw = self.head(r.start as usize, len);
        if r.len & ESCAPED == 0 {
            Some(Cow::Borrowed(raw))
        } else {
            // The framer validated every reference, so this cannot fail;
            // fall back to the raw text rather than panic.
            Some(crate::escape::unescape(raw).unwrap_or(Cow::Borrowed(raw)))
        }
    }
    /// `from`, unescaped.
    pub fn from(&self) -> Option<Cow<'_, str>> {
        self.get(self.from)
    }
    /// `to`, unescaped.
    pub fn to(&self) -> Option<Cow<'_, str>> {
        self.get(self.to)
    }
    /// `type`, unescaped.
    pub fn type_(&self) -> Option<Cow<'_, str>> {
        self.get(self.ty)
    }
    /// `id`, unescaped.
    pub fn id(&self) -> Option<Cow<'_, str>> {
        self.get(self.id)
    }
    /// `xmlns` of the top element, when declared on it.
    pub fn xmlns(&self) -> Option<Cow<'_, str>> {
        self.get(self.xmlns)
    }

    /// The same stanza with `from` (and, when given, `to`) replaced, as a
    /// server stamps a client's stanza before routing it (RFC 6120 §8.1.2.1).
    /// Copies the stanza once; the payload is not parsed.
    pub fn with_addresses(&self, from: &str, to: Option<&str>) -> Result<Stanza, StanzaError> {
        let src = self.as_str().as_bytes();
        let mut cut: Vec<(usize, usize)> = Vec::with_capacity(2);
        for r in [Some(self.from), to.map(|_| self.to)].into_iter().flatten() {
            if r.is_some() {
                cut.push(attr_span(
                    src,
                    r.start as usize,
                    (r.len & !ESCAPED) as usize,
                ));
            }
        }
        // A prefixed `x:from` (or `x:to`) is another attribute to a
        // namespace-aware reader, but a careless one takes it for the
        // address: strip those too. Rare, so only looked for when the start
        // tag holds `:from` or `:to` at all.
        let tag = &src[..start_tag_len(src)];
        let finder = |pat: &[u8]| memchr::memmem::find(tag, pat).is_some();
        if finder(b":from") || (to.is_some() && finder(b":to")) {
            let text = self.as_str();
            let mut reader = quick_xml::Reader::from_str(text);
            if let Ok(quick_xml::events::Event::Start(st) | quick_xml::events::Event::Empty(st)) =
                reader.read_event()
            {
                for a in st.attributes().flatten() {
                    let key = a.key.0;
                    let local = key.rsplit_once(':');
                    let hit = match local {
                        Some((p, l)) if p != "xmlns" => l == "from" || (to.is_some() && l == "to"),
                        _ => false,
                    };
                    if let (true, Cow::Borrowed(v)) = (hit, &a.value) {
                        let vstart = v.as_ptr() as usize - text.as_ptr() as usize;
                        cut.push(attr_span(src, vstart, v.len()));
                    }
                }
            }
        }
        cut.sort_unstable();
        let mut out = Vec::with_capacity(src.len() + from.len() + 32);
        let head = 1 + self.name_len as usize;
        out.extend_from_slice(&src[..head]);
        out.extend_from_slice(b" from='");
        crate::escape::escape_attr_into(&mut out, from);
        out.push(b'\'');
        if let Some(to) = to {
            out.extend_from_slice(b" to='");
            crate::escape::escape_attr_into(&mut out, to);
            out.push(b'\'');
        }
        let mut last = head;
        for (s, e) in cut {
            out.extend_from_slice(&src[last..s]);
            last = e;
        }
        out.extend_from_slice(&src[last..]);
        Stanza::from_framed(Bytes::from(out))
    }
}

/// The span of ` name='value'` (leading whitespace included) for the
/// attribute whose value starts at `vstart` and is `vlen` bytes long.
fn attr_span(src: &[u8], vstart: usize, vlen: usize) -> (usize, usize) {
    let vend = vstart + vlen + 1; // closing quote
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let mut s = vstart - 1; // opening quote
    while ws(src[s - 1]) {
        s -= 1;
    }
    s -= 1; // '='
    while ws(src[s - 1]) {
        s -= 1;
    }
    while !ws(src[s - 1]) {
        s -= 1;
    }
    (s - 1, vend)
}

/// Length of the start tag at the front of `b`, through its `>` (or all of
/// `b` when there is none). Quotes are honoured: `>` may appear in values.
fn start_tag_len(b: &[u8]) -> usize {
    let mut quote = 0u8;
    for (i, &c) in b.iter().enumerate() {
        match (quote, c) {
            (0, b'"' | b'\'') => quote = c,
            (0, b'>') => return i + 1,
            (q, c) if q == c => quote = 0,
            _ => {}
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Stanza {
        Stanza::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    #[test]
    fn routing_fields() {
        let s = parse(
            "<message from='a@b/c' to=\"d@e\" type='chat' id='x&apos;1'><body>hi</body></message>",
        );
        assert_eq!(s.kind(), Kind::Message);
        assert_eq!(s.name(), "message");
        assert_eq!(s.from().as_deref(), Some("a@b/c"));
        assert_eq!(s.to().as_deref(), Some("d@e"));
        assert_eq!(s.type_().as_deref(), Some("chat"));
        assert_eq!(s.id().as_deref(), Some("x'1"));
        assert!(matches!(s.from(), Some(Cow::Borrowed(_))), "no allocation");
        assert_eq!(s.xmlns(), None);
    }

    #[test]
    fn kinds() {
        assert_eq!(parse("<presence/>").kind(), Kind::Presence);
        assert_eq!(parse("<iq type='get'/>").kind(), Kind::Iq);
        let auth =
            parse("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth>");
        assert_eq!(auth.kind(), Kind::Other);
        assert_eq!(
            auth.xmlns().as_deref(),
            Some("urn:ietf:params:xml:ns:xmpp-sasl")
        );
    }

    #[test]
    fn framed_reads_only_the_start_tag() {
        let s = Stanza::from_framed(Bytes::from_static(
            b"<message to='a>b' id='1'><body>x</body></message>",
        ))
        .unwrap();
        assert_eq!(s.to().as_deref(), Some("a>b"));
        assert_eq!(s.id().as_deref(), Some("1"));
        assert_eq!(s.name(), "message");
        // `parse` checks everything, `from_framed` trusts the framer.
        let bad = Bytes::from_static(b"<message><body>\xff</body></message>");
        assert_eq!(Stanza::parse(bad.clone()), Err(StanzaError::Utf8));
        assert!(Stanza::from_framed(bad).is_ok());
    }

    #[test]
    fn rejects_non_elements() {
        assert!(Stanza::parse(Bytes::from_static(b"hello")).is_err());
        assert!(Stanza::parse(Bytes::from_static(b"\xff<a/>")).is_err());
    }

    #[test]
    fn stamps_addresses() {
        let s = parse("<message to='d@e' from='forged@x' type='chat'><body/></message>");
        let t = s.with_addresses("a@b/c", None).unwrap();
        assert_eq!(
            t.as_str(),
            "<message from='a@b/c' to='d@e' type='chat'><body/></message>"
        );
        let spaced = parse("<message type='chat'  from = \"f@x\" ><body/></message>");
        assert_eq!(
            spaced.with_addresses("a@b", None).unwrap().as_str(),
            "<message from='a@b' type='chat'  ><body/></message>"
        );
        let u = parse("<iq id='1'/>")
            .with_addresses("a'b@c", Some("x@y"))
            .unwrap();
        assert_eq!(u.as_str(), "<iq from='a&apos;b@c' to='x@y' id='1'/>");
        assert_eq!(u.from().as_deref(), Some("a'b@c"));
        // Prefixed look-alikes are stripped too; a declaration is kept.
        let p = parse(
            "<message xmlns:c='jabber:client' xmlns:from='urn:x' c:from='admin@x' to='d@e' \
             c:to='z@z'><body/></message>",
        );
        assert_eq!(
            p.with_addresses("a@b", None).unwrap().as_str(),
            "<message from='a@b' xmlns:c='jabber:client' xmlns:from='urn:x' to='d@e' \
             c:to='z@z'><body/></message>"
        );
        assert_eq!(
            p.with_addresses("a@b", Some("d@e")).unwrap().as_str(),
            "<message from='a@b' to='d@e' xmlns:c='jabber:client' xmlns:from='urn:x'><body/></message>"
        );
    }

    #[test]
    fn hot_type_size() {
        // Queued per routed stanza: keep it from quietly growing.
        assert!(
            std::mem::size_of::<Stanza>() <= 80,
            "{}",
            std::mem::size_of::<Stanza>()
        );
    }
}

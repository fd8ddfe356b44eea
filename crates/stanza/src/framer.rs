//! The incremental stream framer.
//!
//! A client's bytes arrive in arbitrary chunks. The framer scans them once,
//! resumably, and cuts the stream into: the stream header, each complete
//! top-level stanza as one `Bytes`, and the stream close. While scanning it
//! enforces well-formedness (matching tags, quoted attributes, bound prefixes,
//! valid UTF-8 and characters), RFC 6120 §11.1 restricted XML, and the limits
//! in [`Limits`].
//!
//! Why a hand-written scanner rather than quick-xml here: quick-xml needs a
//! complete document or a blocking reader, while a server needs to be fed
//! partial reads and to stop at a limit *before* buffering an attacker's
//! 10 MB attribute. The scanner keeps its position and state between calls,
//! so feeding one byte at a time costs the same total work as feeding all at
//! once. Stanzas it yields are then parsed with quick-xml ([`crate::stanza`],
//! [`crate::element`]).
//!
//! Namespaces: a stanza may use a prefix declared on the stream header. A
//! stanza that does gets that declaration added to its top element, so the
//! bytes yielded are namespace-complete on their own (PROTOCOL §1.7).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::error::StreamErrorCondition;

/// Limits the framer enforces. Each is an operator setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest stanza (or stream header), in bytes, counted from its `<` to
    /// its last `>`. Default 256 KiB. Exceeding it: `policy-violation`.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside one stanza; the stanza element is
    /// depth 1. Default 64. Exceeding it: `policy-violation`.
    pub max_depth: usize,
    /// Most attributes (namespace declarations included) on one element.
    /// Default 64. Exceeding it: `policy-violation`.
    pub max_attributes: usize,
    /// Most namespace declarations in one stanza, all elements together.
    /// Default 64. Exceeding it: `policy-violation`.
    pub max_namespace_decls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stanza_bytes: 256 * 1024,
            max_depth: 64,
            max_attributes: 64,
            max_namespace_decls: 64,
        }
    }
}

/// What was restricted (RFC 6120 §11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restricted {
    /// `<!-- ... -->`.
    Comment,
    /// A processing instruction other than the opening XML declaration.
    ProcessingInstruction,
    /// `<!DOCTYPE` or any other markup declaration.
    Doctype,
    /// An entity reference other than the five predefined ones.
    EntityReference,
}

/// Why the framer stopped. After an error the framer stays failed: the
/// stream must be closed with [`FrameError::condition`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Malformed XML; the text says what.
    #[error("not well-formed: {0}")]
    NotWellFormed(&'static str),
    /// XML that RFC 6120 §11.1 forbids.
    #[error("restricted XML: {0:?}")]
    Restricted(Restricted),
    /// A stanza or header above [`Limits::max_stanza_bytes`].
    #[error("stanza larger than {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// Nesting above [`Limits::max_depth`].
    #[error("elements nested deeper than {limit}")]
    TooDeep {
        /// The limit in force.
        limit: usize,
    },
    /// More attributes on one element than [`Limits::max_attributes`].
    #[error("more than {limit} attributes on one element")]
    TooManyAttributes {
        /// The limit in force.
        limit: usize,
    },
    /// More namespace declarations than [`Limits::max_namespace_decls`].
    #[error("more than {limit} namespace declarations in one stanza")]
    TooManyNamespaces {
        /// The limit in force.
        limit: usize,
    },
    /// Bytes that are not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    /// The stream error that answers this error on the wire.
    pub fn condition(&self) -> StreamErrorCondition {
        match self {
            Self::NotWellFormed(_) | Self::InvalidUtf8 => StreamErrorCondition::NotWellFormed,
            Self::Restricted(_) => StreamErrorCondition::RestrictedXml,
            Self::TooLarge { .. }
            | Self::TooDeep { .. }
            | Self::TooManyAttributes { .. }
            | Self::TooManyNamespaces { .. } => StreamErrorCondition::PolicyViolation,
        }
    }
}

/// The stream header as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// The element's qualified name as written, normally `stream:stream`.
    pub name: String,
    /// Attributes other than namespace declarations, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Namespace declarations: `(prefix, uri)`, prefix `""` for the default.
    pub namespaces: Vec<(String, String)>,
}

impl StreamHeader {
    /// An attribute's value by qualified name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The URI bound to `prefix` (`""` for the default namespace).
    pub fn namespace(&self, prefix: &str) -> Option<&str> {
        self.namespaces
            .iter()
            .find(|(p, _)| p == prefix)
            .map(|(_, v)| v.as_str())
    }
}

/// What a stream's stanzas need of its header: the name its closing tag
/// must match, and the prefixes they may borrow.
#[derive(Debug, PartialEq, Eq)]
pub struct StreamScope {
    name: String,
    /// Namespace declarations: `(prefix, uri)`, prefix `""` for the default.
    namespaces: Vec<(String, String)>,
}

impl StreamScope {
    /// The header's namespace declarations.
    pub fn namespaces(&self) -> &[(String, String)] {
        &self.namespaces
    }

    /// The scope of `header`: one of the shared common scopes when it
    /// declares the same (nearly every client's and server's header), so a
    /// stream keeps no copy of its own (#11: 140 bytes per idle session).
    fn of(header: &StreamHeader) -> Arc<Self> {
        static COMMON: std::sync::LazyLock<[Arc<StreamScope>; 3]> =
            std::sync::LazyLock::new(|| {
                let scope = |default: &str, dialback: bool| {
                    let mut namespaces = vec![
                        (String::new(), default.into()),
                        ("stream".into(), crate::ns::STREAM.into()),
                    ];
                    if dialback {
                        namespaces.push(("db".into(), crate::xep::dialback::NS.into()));
                    }
                    Arc::new(StreamScope {
                        name: "stream:stream".into(),
                        namespaces,
                    })
                };
                [
                    scope(crate::ns::CLIENT, false),
                    scope(crate::ns::SERVER, false),
                    // Server streams declare the dialback prefix.
                    scope(crate::ns::SERVER, true),
                ]
            });
        let same = |c: &StreamScope| {
            c.name == header.name
                && c.namespaces.len() == header.namespaces.len()
                && header.namespaces.iter().all(|d| c.namespaces.contains(d))
        };
        match COMMON.iter().find(|c| same(c)) {
            Some(c) => Arc::clone(c),
            None => Arc::new(StreamScope {
                name: header.name.clone(),
                namespaces: header.namespaces.clone(),
            }),
        }
    }
}

/// One unit cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The stream header (`<stream:stream ...>`).
    StreamOpen(StreamHeader),
    /// One complete top-level element, namespace-complete, valid UTF-8.
    Stanza(Bytes),
    /// `</stream:stream>`.
    StreamClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Before the stream header: whitespace, the XML declaration, `<`.
    Prolog,
    /// Inside the XML declaration, looking for `?>`.
    XmlDecl,
    /// Inside the stream between stanzas: whitespace or `<`.
    Between,
    /// Character data inside a stanza.
    Text,
    /// Just after `<`.
    Lt,
    StartName,
    /// Inside a start tag, after the name or an attribute value.
    InTag,
    AttrName,
    AfterAttrName,
    AfterEq,
    AttrValue(u8),
    /// After `/` in a start tag.
    EmptyEnd,
    EndName,
    AfterEndName,
    Cdata,
    /// After `</stream:stream>`: only whitespace may follow.
    Closed,
}

// Byte classes, looked up once per byte in the hot loops.
const ORD: u8 = 0; // anything not below
const LT: u8 = 1;
const AMP: u8 = 2;
const BAD: u8 = 3; // control characters XML forbids
const WS: u8 = 4;

const fn class_table() -> [u8; 256] {
    let mut t = [ORD; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = BAD;
        i += 1;
    }
    t[b'\t' as usize] = WS;
    t[b'\n' as usize] = WS;
    t[b'\r' as usize] = WS;
    t[b' ' as usize] = WS;
    t[b'<' as usize] = LT;
    t[b'&' as usize] = AMP;
    t
}
static CLASS: [u8; 256] = class_table();

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}
#[inline]
fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}
#[inline]
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':') || b >= 0x80
}

/// A span `(start, len)` into the buffer, kept as `u32` to keep stacks small.
type Span = (u32, u32);

/// The incremental framer. Feed bytes with [`Framer::feed`] (or read straight
/// into [`Framer::buffer_mut`]), then call [`Framer::next`] until it returns
/// `Ok(None)`, meaning "need more bytes".
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    s: Scan,
}

#[derive(Debug)]
struct Scan {
    limits: Limits,
    st: St,
    /// Scan position in `buf`.
    pos: usize,
    /// Where the current top-level element (stanza or header) began.
    start: usize,
    /// Element nesting inside the current stanza.
    depth: usize,
    /// Current tag's name span and current attribute name start.
    name: Span,
    attr_start: usize,
    /// Open elements of the current stanza, for end-tag matching.
    open: Vec<Span>,
    /// Attribute names of the current start tag.
    attrs: Vec<Span>,
    /// In-scope prefix declarations in the current stanza: (depth, prefix).
    ns: Vec<(u32, Span)>,
    /// Declarations seen in this stanza (the limit counts all of them).
    ns_count: usize,
    /// Indexes into `header.namespaces` the current stanza borrows.
    inject: Vec<usize>,
    header: Option<Arc<StreamScope>>,
    xml_decl_allowed: bool,
    /// The header was self-closing: report the close after the open.
    pending_close: bool,
    failed: Option<FrameError>,
    /// Bytes taken out of the buffer: yielded or discarded (whitespace,
    /// declarations). `consumed + buffered == fed` always holds.
    consumed: u64,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Framer {
    /// A framer awaiting a stream header.
    pub fn new(limits: Limits) -> Self {
        Self {
            // Allocated by the first bytes fed: a framer that waits holds
            // no buffer (see `release_if_empty`).
            buf: BytesMut::new(),
            s: Scan {
                limits,
                st: St::Prolog,
                pos: 0,
                start: 0,
                depth: 0,
                name: (0, 0),
                attr_start: 0,
                open: Vec::new(),
                attrs: Vec::new(),
                ns: Vec::new(),
                ns_count: 0,
                inject: Vec::new(),
                header: None,
                xml_decl_allowed: true,
                pending_close: false,
                failed: None,
                consumed: 0,
            },
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.s.limits
    }

    /// Changes the limits, for the next stanza on: a server raises them
    /// once the peer has authenticated (a stanza already being scanned is
    /// held to the limits it started under only as far as it got).
    pub fn set_limits(&mut self, limits: Limits) {
        self.s.limits = limits;
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The receive buffer, for reading from a socket without a copy.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Lets go of the receive buffer when every byte of it has been
    /// yielded or discarded, so that an idle connection holds none; the
    /// next bytes fed allocate what they need. Returns whether it did.
    /// (Stanzas already yielded keep their own share of the old buffer.)
    pub fn release_if_empty(&mut self) -> bool {
        // Replaced even at zero spare capacity: an empty view still holds
        // a reference to the allocation it was split from.
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            // The per-stanza scratch lists too, when no stanza is open:
            // each kept the capacity of the largest stanza so far.
            // (`attrs` holds the last tag's, stale once it was scanned:
            // with nothing buffered no tag is half read.)
            let s = &mut self.s;
            s.attrs = Vec::new();
            if s.open.is_empty() {
                s.open = Vec::new();
            }
            if s.ns.is_empty() {
                s.ns = Vec::new();
            }
            if s.inject.is_empty() {
                s.inject = Vec::new();
            }
            return true;
        }
        false
    }

    /// Heap bytes the framer holds: its buffer and its per-stanza lists'
    /// capacity. Zero for an idle framer after [`Self::release_if_empty`].
    pub fn held_bytes(&self) -> usize {
        use std::mem::size_of_val;
        let s = &self.s;
        self.buf.capacity()
            + s.open.capacity() * size_of_val(&s.name)
            + s.attrs.capacity() * size_of_val(&s.name)
            + s.ns.capacity() * std::mem::size_of::<(u32, Span)>()
            + s.inject.capacity() * std::mem::size_of::<usize>()
    }

    /// Bytes received but not yet yielded. STARTTLS requires this to be zero
    /// before the handshake: anything buffered is an injection attempt.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes consumed so far: cut into events or discarded as whitespace
    /// and declarations. With [`Self::buffered`], accounts for every byte
    /// fed (the fuzz target's invariant).
    pub fn consumed(&self) -> u64 {
        self.s.consumed
    }

    /// What the current stream's stanzas take from its header, once
    /// received.
    pub fn scope(&self) -> Option<&StreamScope> {
        self.s.header.as_deref()
    }

    /// Starts a new stream on the same connection (after SASL success or
    /// STARTTLS). Buffered bytes are kept: a client may pipeline the new
    /// header. The XML declaration is accepted again.
    pub fn reset(&mut self) {
        let s = &mut self.s;
        // Drop what was consumed of the old stream.
        let n = s.pos.min(self.buf.len());
        let _ = self.buf.split_to(n);
        s.consumed += n as u64;
        s.st = St::Prolog;
        s.pos = 0;
        s.start = 0;
        s.depth = 0;
        s.open.clear();
        s.attrs.clear();
        s.ns.clear();
        s.ns_count = 0;
        s.inject.clear();
        s.header = None;
        s.xml_decl_allowed = true;
        s.pending_close = false;
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Event>, FrameError> {
        if let Some(e) = &self.s.failed {
            return Err(e.clone());
        }
        if self.s.pending_close {
            self.s.pending_close = false;
            self.s.st = St::Closed;
            return Ok(Some(Event::StreamClose));
        }
        let r = self.s.run(&mut self.buf);
        if let Err(e) = &r {
            self.s.failed = Some(e.clone());
        }
        r
    }
}

enum Step {
    /// Keep scanning.
    Go,
    /// Return this.
    Out(Option<Event>),
}

impl Scan {
    fn in_element(&self) -> bool {
        !matches!(self.st, St::Prolog | St::Between | St::Closed)
    }

    fn run(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, FrameError> {
        loop {
            // Bound the work on one element: never scan past its size limit.
            let cap = if self.in_element() {
                (self.start + self.limits.max_stanza_bytes).min(buf.len())
            } else {
                buf.len()
            };
            if self.pos >= cap {
                if self.in_element() && buf.len() - self.start > self.limits.max_stanza_bytes {
                    return Err(FrameError::TooLarge {
                        limit: self.limits.max_stanza_bytes,
                    });
                }
                if !self.in_element() {
                    // Whitespace between stanzas is consumed for good, so a
                    // keepalive flood cannot grow the buffer.
                    let _ = buf.split_to(self.pos);
                    self.consumed += self.pos as u64;
                    self.pos = 0;
                    self.start = 0;
                }
                return Ok(None);
            }
            match self.step(buf, cap)? {
                Step::Go => {}
                Step::Out(ev) => return Ok(ev),
            }
        }
    }

    /// Advances through as many bytes as one state allows.
    fn step(&mut self, buf: &mut BytesMut, cap: usize) -> Result<Step, FrameError> {
        let b: &[u8] = &buf[..cap];
        match self.st {
            St::Prolog | St::Between | St::Closed => {
                while self.pos < cap && is_ws(b[self.pos]) {
                    self.pos += 1;
                }
                if self.pos >= cap {
                    return Ok(Step::Go);
                }
                if b[self.pos] != b'<' || self.st == St::Closed {
                    return Err(FrameError::NotWellFormed("text outside a stanza"));
                }
                self.start = self.pos;
                self.pos += 1;
                self.st = St::Lt;
            }
            St::XmlDecl => match memchr::memmem::find(&b[self.pos..], b"?>") {
                Some(i) => {
                    self.pos += i + 2;
                    self.st = St::Prolog;
                    self.xml_decl_allowed = false;
                }
                None => {
                    self.pos = cap.saturating_sub(1).max(self.pos);
                    return self.wait(cap);
                }
            },
            St::Lt => return self.after_lt(b, cap),
            St::Text => {
                let mut p = self.pos;
                while p < cap {
                    match CLASS[b[p] as usize] {
                        ORD | WS => p += 1,
                        LT => {
                            self.pos = p + 1;
                            self.st = St::Lt;
                            return Ok(Step::Go);
                        }
                        AMP => match check_entity(&b[p..cap])? {
                            Some(n) => p += n,
                            None => {
                                self.pos = p;
                                return self.wait(cap);
                            }
                        },
                        _ => return Err(FrameError::NotWellFormed("forbidden character")),
                    }
                }
                self.pos = p;
            }
            St::StartName | St::EndName | St::AttrName => {
                let mut p = self.pos;
                while p < cap && is_name_byte(b[p]) {
                    p += 1;
                }
                self.pos = p;
                if p < cap {
                    match self.st {
                        St::StartName => {
                            self.name.1 = p as u32 - self.name.0;
                            self.st = St::InTag;
                        }
                        St::EndName => {
                            self.name.1 = p as u32 - self.name.0;
                            self.st = St::AfterEndName;
                        }
                        _ => {
                            if self.attrs.len() >= self.limits.max_attributes {
                                return Err(FrameError::TooManyAttributes {
                                    limit: self.limits.max_attributes,
                                });
                            }
                            let span = (self.attr_start as u32, (p - self.attr_start) as u32);
                            self.attrs.push(span);
                            self.st = St::AfterAttrName;
                        }
                    }
                }
            }
            St::InTag => {
                let mut p = self.pos;
                let mut saw_ws = false;
                while p < cap && is_ws(b[p]) {
                    p += 1;
                    saw_ws = true;
                }
                self.pos = p;
                if p >= cap {
                    return Ok(Step::Go);
                }
                match b[p] {
                    b'>' => {
                        self.pos = p + 1;
                        return self.finish_start(buf, false);
                    }
                    b'/' => {
                        self.pos = p + 1;
                        self.st = St::EmptyEnd;
                    }
                    c if is_name_start(c) => {
                        // Attributes must be separated from what precedes
                        // them by whitespace.
                        let prev = b[p - 1];
                        if !saw_ws && !is_ws(prev) {
                            return Err(FrameError::NotWellFormed("attribute without separator"));
                        }
                        self.attr_start = p;
                        self.pos = p + 1;
                        self.st = St::AttrName;
                    }
                    _ => return Err(FrameError::NotWellFormed("bad character in tag")),
                }
            }
            St::AfterAttrName | St::AfterEq => {
                let mut p = self.pos;
                while p < cap && is_ws(b[p]) {
                    p += 1;
                }
                self.pos = p;
                if p >= cap {
                    return Ok(Step::Go);
                }
                match (self.st, b[p]) {
                    (St::AfterAttrName, b'=') => self.st = St::AfterEq,
                    (St::AfterEq, q @ (b'"' | b'\'')) => self.st = St::AttrValue(q),
                    _ => return Err(FrameError::NotWellFormed("malformed attribute")),
                }
                self.pos = p + 1;
            }
            St::AttrValue(q) => {
                let mut p = self.pos;
                while p < cap {
                    let c = b[p];
                    if c == q {
                        self.pos = p + 1;
                        self.st = St::InTag;
                        return Ok(Step::Go);
                    }
                    match CLASS[c as usize] {
                        ORD | WS => p += 1,
                        LT => return Err(FrameError::NotWellFormed("'<' in attribute value")),
                        AMP => match check_entity(&b[p..cap])? {
                            Some(n) => p += n,
                            None => {
                                self.pos = p;
                                return self.wait(cap);
                            }
                        },
                        _ => return Err(FrameError::NotWellFormed("forbidden character")),
                    }
                }
                self.pos = p;
            }
            St::EmptyEnd => {
                if b[self.pos] != b'>' {
                    return Err(FrameError::NotWellFormed("'/' not followed by '>'"));
                }
                self.pos += 1;
                return self.finish_start(buf, true);
            }
            St::AfterEndName => {
                let mut p = self.pos;
                while p < cap && is_ws(b[p]) {
                    p += 1;
                }
                self.pos = p;
                if p >= cap {
                    return Ok(Step::Go);
                }
                if b[p] != b'>' {
                    return Err(FrameError::NotWellFormed("malformed end tag"));
                }
                self.pos = p + 1;
                return self.finish_end(buf);
            }
            St::Cdata => {
                let found = memchr::memmem::find(&b[self.pos..cap], b"]]>");
                // Keep the last two bytes when no end was found: they may
                // start a `]]>`.
                let end = found.map_or(cap.saturating_sub(2).max(self.pos), |i| self.pos + i);
                // CDATA is character data too: XML's `Char` rule holds.
                if b[self.pos..end].iter().any(|&c| CLASS[c as usize] == BAD) {
                    return Err(FrameError::NotWellFormed("forbidden character"));
                }
                match found {
                    Some(_) => {
                        self.pos = end + 3;
                        self.st = St::Text;
                    }
                    None => {
                        self.pos = end;
                        return self.wait(cap);
                    }
                }
            }
        }
        Ok(Step::Go)
    }

    /// Called when a bounded look-ahead (entity, `<!`, `<?`) needs more bytes
    /// than are buffered. At the size cap it can never complete.
    fn wait(&mut self, cap: usize) -> Result<Step, FrameError> {
        if cap == self.start + self.limits.max_stanza_bytes {
            return Err(FrameError::TooLarge {
                limit: self.limits.max_stanza_bytes,
            });
        }
        Ok(Step::Out(None))
    }

    fn after_lt(&mut self, b: &[u8], cap: usize) -> Result<Step, FrameError> {
        let p = self.pos;
        let rest = &b[p..cap];
        let Some(&c) = rest.first() else {
            return self.wait(cap);
        };
        match c {
            b'/' => {
                self.name = (p as u32 + 1, 0);
                self.pos = p + 1;
                self.st = St::EndName;
                if self.header.is_none() {
                    return Err(FrameError::NotWellFormed("end tag before stream header"));
                }
            }
            b'?' => {
                if self.header.is_some() || !self.xml_decl_allowed {
                    return Err(FrameError::Restricted(Restricted::ProcessingInstruction));
                }
                // `<?xml` followed by whitespace is the declaration; any
                // other target is a processing instruction.
                const DECL: &[u8] = b"?xml";
                let n = rest.len().min(DECL.len() + 1);
                if rest[..n.min(DECL.len())] != DECL[..n.min(DECL.len())] {
                    return Err(FrameError::Restricted(Restricted::ProcessingInstruction));
                }
                if rest.len() <= DECL.len() {
                    return self.wait(cap);
                }
                if !is_ws(rest[DECL.len()]) {
                    return Err(FrameError::Restricted(Restricted::ProcessingInstruction));
                }
                self.pos = p + DECL.len() + 1;
                self.st = St::XmlDecl;
            }
            b'!' => {
                let Some(&d) = rest.get(1) else {
                    return self.wait(cap);
                };
                match d {
                    b'-' => return Err(FrameError::Restricted(Restricted::Comment)),
                    b'[' => {
                        const CDATA: &[u8] = b"![CDATA[";
                        let n = rest.len().min(CDATA.len());
                        if rest[..n] != CDATA[..n] {
                            return Err(FrameError::NotWellFormed("bad markup after '<!'"));
                        }
                        if n < CDATA.len() {
                            return self.wait(cap);
                        }
                        if self.depth == 0 {
                            return Err(FrameError::NotWellFormed("CDATA outside a stanza"));
                        }
                        self.pos = p + CDATA.len();
                        self.st = St::Cdata;
                    }
                    c if c.is_ascii_uppercase() => {
                        return Err(FrameError::Restricted(Restricted::Doctype))
                    }
                    _ => return Err(FrameError::NotWellFormed("bad markup after '<!'")),
                }
            }
            c if is_name_start(c) => {
                self.name = (p as u32, 0);
                self.attrs.clear();
                self.pos = p + 1;
                self.st = St::StartName;
            }
            _ => return Err(FrameError::NotWellFormed("bad character after '<'")),
        }
        Ok(Step::Go)
    }

    fn finish_start(&mut self, buf: &mut BytesMut, empty: bool) -> Result<Step, FrameError> {
        if self.header.is_none() {
            return self.finish_header(buf, empty);
        }
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(FrameError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        let b: &[u8] = &buf[..];
        // Duplicates and namespace declarations. Elements have few
        // attributes, so the quadratic duplicate check is cheaper than a set.
        for (i, &a) in self.attrs.iter().enumerate() {
            let an = slice(b, a);
            if self.attrs[..i].iter().any(|&o| slice(b, o) == an) {
                return Err(FrameError::NotWellFormed("duplicate attribute"));
            }
            if an == b"xmlns" || an.starts_with(b"xmlns:") {
                self.ns_count += 1;
                if self.ns_count > self.limits.max_namespace_decls {
                    return Err(FrameError::TooManyNamespaces {
                        limit: self.limits.max_namespace_decls,
                    });
                }
                // Namespaces in XML §3: `xml` stays bound to its own
                // namespace, `xmlns` is never declared, and no other prefix
                // takes the XML namespace.
                let value = attr_value(b, a);
                let is_xml_ns = value == XML_NS.as_bytes();
                if an == b"xmlns:xmlns" || (an == b"xmlns:xml") != is_xml_ns {
                    return Err(FrameError::NotWellFormed(
                        "reserved namespace prefix re-bound",
                    ));
                }
                if an.len() > 6 {
                    self.ns.push((self.depth as u32, (a.0 + 6, a.1 - 6)));
                }
            }
        }
        // Every prefix used must be bound, here or on an ancestor; one bound
        // only on the stream header is copied onto the stanza.
        let name = self.name;
        self.check_prefix(b, prefix_of(b, name))?;
        for i in 0..self.attrs.len() {
            let a = self.attrs[i];
            let an = slice(b, a);
            if an.starts_with(b"xmlns") {
                continue;
            }
            self.check_prefix(b, prefix_of(b, a))?;
        }
        if empty {
            self.close_level();
            if self.depth == 0 {
                return self.finish_stanza(buf);
            }
        } else {
            self.open.push(name);
        }
        self.st = St::Text;
        Ok(Step::Go)
    }

    fn check_prefix(&mut self, b: &[u8], prefix: Option<Span>) -> Result<(), FrameError> {
        let Some(p) = prefix else { return Ok(()) };
        let pb = slice(b, p);
        if pb == b"xml" || self.ns.iter().any(|&(_, d)| slice(b, d) == pb) {
            return Ok(());
        }
        let header = self.header.as_ref().expect("header parsed");
        match header
            .namespaces
            .iter()
            .position(|(hp, _)| hp.as_bytes() == pb)
        {
            Some(i) => {
                if !self.inject.contains(&i) {
                    self.inject.push(i);
                }
                Ok(())
            }
            None => Err(FrameError::NotWellFormed("unbound namespace prefix")),
        }
    }

    /// Leaves the element at the current depth.
    fn close_level(&mut self) {
        let d = self.depth as u32;
        while self.ns.last().is_some_and(|&(nd, _)| nd >= d) {
            self.ns.pop();
        }
        self.depth -= 1;
    }

    fn finish_end(&mut self, buf: &mut BytesMut) -> Result<Step, FrameError> {
        let b: &[u8] = &buf[..];
        let name = slice(b, self.name);
        if self.depth == 0 {
            let header = self.header.as_ref().expect("header parsed");
            if name != header.name.as_bytes() {
                return Err(FrameError::NotWellFormed("end tag does not match"));
            }
            let _ = buf.split_to(self.pos);
            self.consumed += self.pos as u64;
            self.pos = 0;
            self.start = 0;
            self.st = St::Closed;
            return Ok(Step::Out(Some(Event::StreamClose)));
        }
        let open = self.open.pop().expect("depth > 0");
        if slice(b, open) != name {
            return Err(FrameError::NotWellFormed("end tag does not match"));
        }
        self.close_level();
        if self.depth == 0 {
            return self.finish_stanza(buf);
        }
        self.st = St::Text;
        Ok(Step::Go)
    }

    fn finish_stanza(&mut self, buf: &mut BytesMut) -> Result<Step, FrameError> {
        let _ = buf.split_to(self.start);
        let len = self.pos - self.start;
        let raw = buf.split_to(len);
        self.consumed += self.pos as u64;
        self.pos = 0;
        self.start = 0;
        self.st = St::Between;
        self.ns_count = 0;
        check_text(&raw)?;
        let bytes = if self.inject.is_empty() {
            raw.freeze()
        } else {
            let header = self.header.as_ref().expect("header parsed");
            let out = inject_decls(&raw, self.inject.iter().map(|&i| &header.namespaces[i]));
            self.inject.clear();
            out
        };
        Ok(Step::Out(Some(Event::Stanza(bytes))))
    }

    fn finish_header(&mut self, buf: &mut BytesMut, empty: bool) -> Result<Step, FrameError> {
        let _ = buf.split_to(self.start);
        let raw = buf.split_to(self.pos - self.start);
        self.consumed += self.pos as u64;
        self.pos = 0;
        self.start = 0;
        check_text(&raw)?;
        let text = std::str::from_utf8(&raw).map_err(|_| FrameError::InvalidUtf8)?;
        let header = parse_header(text)?;
        self.header = Some(StreamScope::of(&header));
        self.st = St::Between;
        self.pending_close = empty;
        Ok(Step::Out(Some(Event::StreamOpen(header))))
    }
}

/// The namespace `xml` is bound to.
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The raw value of the attribute whose name is `name`: the scanner has
/// checked the syntax (`name`, optional spaces, `=`, spaces, a quote).
fn attr_value(b: &[u8], name: Span) -> &[u8] {
    let mut p = (name.0 + name.1) as usize;
    while p < b.len() && b[p] != b'\'' && b[p] != b'"' {
        p += 1;
    }
    let Some(&q) = b.get(p) else { return &[] };
    let rest = &b[p + 1..];
    let end = memchr::memchr(q, rest).unwrap_or(rest.len());
    &rest[..end]
}

#[inline]
fn slice(b: &[u8], s: Span) -> &[u8] {
    &b[s.0 as usize..(s.0 + s.1) as usize]
}

fn prefix_of(b: &[u8], name: Span) -> Option<Span> {
    memchr::memchr(b':', slice(b, name)).map(|i| (name.0, i as u32))
}

/// Checks an entity or character reference at the start of `s` (which begins
/// with `&`). `Ok(Some(len))` when valid, `Ok(None)` when more bytes are needed.
fn check_entity(s: &[u8]) -> Result<Option<usize>, FrameError> {
    // The longest valid reference is `&#x10FFFF;` or `&#1114111;`, ten bytes.
    // The verdict depends only on the bytes up to the first one that cannot
    // be part of a reference name, or on the first MAX bytes: never on how
    // the input happened to be chunked.
    const MAX: usize = 12;
    let window = &s[..s.len().min(MAX)];
    let Some(end) = window[1..]
        .iter()
        .position(|&c| !(is_name_byte(c) || c == b'#'))
        .map(|i| i + 1)
    else {
        if s.len() < MAX {
            return Ok(None);
        }
        return Err(FrameError::NotWellFormed("bad reference"));
    };
    if s[end] != b';' {
        return Err(FrameError::NotWellFormed("bad reference"));
    }
    let semi = end;
    let body = &s[1..semi];
    match body {
        b"amp" | b"lt" | b"gt" | b"apos" | b"quot" => return Ok(Some(semi + 1)),
        [] => return Err(FrameError::NotWellFormed("empty reference")),
        _ => {}
    }
    if body[0] == b'#' {
        let (digits, radix) = match body.get(1) {
            Some(b'x') => (&body[2..], 16),
            _ => (&body[1..], 10),
        };
        let ok = !digits.is_empty()
            && std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u32::from_str_radix(d, radix).ok())
                .and_then(char::from_u32)
                .is_some_and(is_xml_char);
        return if ok {
            Ok(Some(semi + 1))
        } else {
            Err(FrameError::NotWellFormed("bad character reference"))
        };
    }
    if is_name_start(body[0]) && !body.contains(&b'#') {
        Err(FrameError::Restricted(Restricted::EntityReference))
    } else {
        Err(FrameError::NotWellFormed("bad reference"))
    }
}

/// Checks what the byte scan cannot: that `raw` is UTF-8 and holds neither
/// U+FFFE nor U+FFFF, the two non-characters valid UTF-8 can encode that
/// XML 1.0's `Char` excludes (control bytes and surrogates are caught by the
/// scan and by the UTF-8 check). Both are `EF BF BE`/`EF BF BF`.
fn check_text(raw: &[u8]) -> Result<(), FrameError> {
    if std::str::from_utf8(raw).is_err() {
        return Err(FrameError::InvalidUtf8);
    }
    for i in memchr::memchr_iter(0xEF, raw) {
        if raw.get(i + 1) == Some(&0xBF) && matches!(raw.get(i + 2), Some(0xBE | 0xBF)) {
            return Err(FrameError::NotWellFormed("forbidden character"));
        }
    }
    Ok(())
}

/// XML 1.0 `Char`.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn parse_header(text: &str) -> Result<StreamHeader, FrameError> {
    // The scanner already checked the syntax; quick-xml reads the values.
    let mut reader = quick_xml::Reader::from_str(text);
    let start = match reader.read_event() {
        Ok(quick_xml::events::Event::Start(s) | quick_xml::events::Event::Empty(s)) => s,
        _ => return Err(FrameError::NotWellFormed("bad stream header")),
    };
    let mut header = StreamHeader {
        name: start.name().0.to_owned(),
        attrs: Vec::new(),
        namespaces: Vec::new(),
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|_| FrameError::NotWellFormed("bad attribute"))?;
        let key = attr.key.0;
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|_| FrameError::NotWellFormed("bad attribute value"))?
            .into_owned();
        if key == "xmlns" {
            header.namespaces.push((String::new(), value));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            header.namespaces.push((p.to_owned(), value));
        } else {
            header.attrs.push((key.to_owned(), value));
        }
    }
    Ok(header)
}

/// Copies `raw`, adding `xmlns:prefix='uri'` declarations to its top element.
fn inject_decls<'a>(raw: &[u8], decls: impl Iterator<Item = &'a (String, String)>) -> Bytes {
    let name_end = raw[1..]
        .iter()
        .position(|&c| is_ws(c) || c == b'>' || c == b'/')
        .map_or(raw.len(), |i| i + 1);
    let mut out = Vec::with_capacity(raw.len() + 64);
    out.extend_from_slice(&raw[..name_end]);
    for (prefix, uri) in decls {
        out.extend_from_slice(b" xmlns:");
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(b"='");
        crate::escape::escape_attr_into(&mut out, uri);
        out.push(b'\'');
    }
    out.extend_from_slice(&raw[name_end..]);
    Bytes::from(out)
}

#[cfg(test)]
#[path = "framer_tests.rs"]
mod tests;

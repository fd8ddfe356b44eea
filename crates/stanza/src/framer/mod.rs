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
//!
//! This module holds the limits, errors and events and the [`Framer`]
//! API; `scan` the scanner they drive.

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

mod scan;

#[cfg(test)]
mod tests;

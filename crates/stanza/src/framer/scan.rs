//! The scanner itself: one resumable pass over the buffer, a state per
//! lexical position, each top-level element cut out whole once its end tag
//! (or the header's `>`) is reached. Checks happen as bytes are first seen,
//! so nothing is scanned twice and a limit stops the scan at once.

use super::*;

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

    pub(super) fn run(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, FrameError> {
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
fn is_xml_char(c: char) -> bool {
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

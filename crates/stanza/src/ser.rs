//! Serializers for every stanza Starling sends.
//!
//! These write bytes directly with [`XmlWriter`] instead of building an
//! [`crate::element::Element`] tree: they run per login and per routed
//! stanza, and their shapes are fixed. Values are always escaped; names are
//! literals in this file.

use bytes::Bytes;

use crate::error::{StanzaErrorCondition, StanzaErrorType, StreamErrorCondition};
use crate::escape::{escape_attr_into, escape_text_into};
use crate::ns;

/// A minimal append-only XML writer over a `Vec<u8>`.
#[derive(Debug, Default)]
pub struct XmlWriter {
    out: Vec<u8>,
}

impl XmlWriter {
    /// A writer with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            out: Vec::with_capacity(cap),
        }
    }
    /// Writes `<name`. Follow with attributes, then `close_start` or `close_empty`.
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        self
    }
    /// Writes ` name='value'` with the value escaped.
    pub fn attr(&mut self, name: &str, value: &str) -> &mut Self {
        self.out.push(b' ');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"='");
        escape_attr_into(&mut self.out, value);
        self.out.push(b'\'');
        self
    }
    /// Writes the attribute only when `value` is `Some`.
    pub fn attr_opt(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.attr(name, v);
        }
        self
    }
    /// Writes `>`.
    pub fn close_start(&mut self) -> &mut Self {
        self.out.push(b'>');
        self
    }
    /// Writes `/>`.
    pub fn close_empty(&mut self) -> &mut Self {
        self.out.extend_from_slice(b"/>");
        self
    }
    /// Writes `</name>`.
    pub fn end(&mut self, name: &str) -> &mut Self {
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'>');
        self
    }
    /// Writes escaped character data.
    pub fn text(&mut self, text: &str) -> &mut Self {
        escape_text_into(&mut self.out, text);
        self
    }
    /// Writes `<name xmlns='ns'/>`.
    pub fn empty_ns(&mut self, name: &str, xmlns: &str) -> &mut Self {
        self.open(name).attr("xmlns", xmlns).close_empty()
    }
    /// Writes `<name xmlns='ns'>text</name>`.
    pub fn text_element(&mut self, name: &str, xmlns: Option<&str>, text: &str) -> &mut Self {
        self.open(name).attr_opt("xmlns", xmlns).close_start();
        self.text(text).end(name)
    }
    /// Appends bytes that are already well-formed, namespace-complete XML.
    pub fn raw(&mut self, xml: &[u8]) -> &mut Self {
        self.out.extend_from_slice(xml);
        self
    }
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.out
    }
    /// Finishes.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.out)
    }
}

/// The server's stream header (RFC 6120 §4.7). `content_ns` is
/// `jabber:client` or `jabber:server`.
pub fn stream_header(content_ns: &str, from: &str, to: Option<&str>, id: &str) -> Bytes {
    let mut w = XmlWriter::with_capacity(256);
    w.raw(b"<?xml version='1.0'?>")
        .open("stream:stream")
        .attr("xmlns", content_ns)
        .attr("xmlns:stream", ns::STREAM)
        .attr("from", from)
        .attr_opt("to", to)
        .attr("id", id)
        .attr("version", "1.0")
        .attr("xml:lang", "en")
        .close_start();
    w.into_bytes()
}

/// A server-to-server stream header (RFC 6120 §4.7 with `jabber:server`),
/// declaring the `db` prefix for dialback (XEP-0220 §2.1), as both the
/// initiating and the receiving server send it. `id` is the receiving
/// side's; an initiating server sends none.
pub fn server_stream_header(from: &str, to: Option<&str>, id: Option<&str>) -> Bytes {
    let mut w = XmlWriter::with_capacity(256);
    w.raw(b"<?xml version='1.0'?>")
        .open("stream:stream")
        .attr("xmlns", ns::SERVER)
        .attr("xmlns:stream", ns::STREAM)
        .attr("xmlns:db", "jabber:server:dialback")
        .attr("from", from)
        .attr_opt("to", to)
        .attr_opt("id", id)
        .attr("version", "1.0")
        .close_start();
    w.into_bytes()
}

/// What a `<stream:features/>` offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features<'a> {
    /// STARTTLS, and whether it is required.
    pub starttls: Option<bool>,
    /// SASL mechanisms, in order of preference.
    pub mechanisms: &'a [&'a str],
    /// XEP-0077 in-band registration.
    pub register: bool,
    /// Resource binding (after authentication).
    pub bind: bool,
    /// The optional legacy session feature.
    pub session: bool,
    /// XEP-0220 dialback (server streams).
    pub dialback: bool,
    /// XEP-0198 stream management.
    pub sm: bool,
}

/// `<stream:features>`.
pub fn features(f: &Features<'_>) -> Bytes {
    let mut w = XmlWriter::with_capacity(512);
    w.raw(b"<stream:features>");
    if let Some(required) = f.starttls {
        w.open("starttls").attr("xmlns", ns::TLS);
        if required {
            w.close_start().raw(b"<required/>").end("starttls");
        } else {
            w.close_empty();
        }
    }
    if !f.mechanisms.is_empty() {
        w.open("mechanisms").attr("xmlns", ns::SASL).close_start();
        for m in f.mechanisms {
            w.text_element("mechanism", None, m);
        }
        w.end("mechanisms");
    }
    if f.register {
        w.empty_ns("register", ns::REGISTER_FEATURE);
    }
    if f.bind {
        w.empty_ns("bind", ns::BIND);
    }
    if f.session {
        w.open("session")
            .attr("xmlns", ns::SESSION)
            .close_start()
            .raw(b"<optional/>")
            .end("session");
    }
    if f.sm {
        w.empty_ns("sm", "urn:xmpp:sm:3");
    }
    if f.dialback {
        w.empty_ns("dialback", "urn:xmpp:features:dialback");
    }
    w.raw(b"</stream:features>");
    w.into_bytes()
}

/// `<proceed/>` for STARTTLS.
pub fn tls_proceed() -> Bytes {
    Bytes::from_static(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
}

fn b64_element(name: &str, data: Option<&[u8]>) -> Bytes {
    let mut w = XmlWriter::with_capacity(128);
    w.open(name).attr("xmlns", ns::SASL);
    match data {
        None => w.close_empty(),
        // RFC 6120 §6.4.2: an empty payload is sent as `=`.
        Some([]) => w.close_start().raw(b"=").end(name),
        Some(d) => {
            use base64::Engine as _;
            let enc = base64::engine::general_purpose::STANDARD.encode(d);
            w.close_start().text(&enc).end(name)
        }
    };
    w.into_bytes()
}

/// SASL `<challenge>`.
pub fn sasl_challenge(data: &[u8]) -> Bytes {
    b64_element("challenge", Some(data))
}

/// SASL `<success>`, with additional data (SCRAM's server-final message).
pub fn sasl_success(data: Option<&[u8]>) -> Bytes {
    b64_element("success", data)
}

/// A SASL failure condition (RFC 6120 §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslFailure {
    /// The client aborted.
    Aborted,
    /// The account is disabled.
    AccountDisabled,
    /// The credentials expired.
    CredentialsExpired,
    /// The mechanism needs encryption first.
    EncryptionRequired,
    /// Bad base64.
    IncorrectEncoding,
    /// Bad authzid.
    InvalidAuthzid,
    /// Unknown mechanism.
    InvalidMechanism,
    /// Malformed request.
    MalformedRequest,
    /// The mechanism is too weak.
    MechanismTooWeak,
    /// Wrong credentials.
    NotAuthorized,
    /// A temporary server failure.
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// The condition's element name.
    pub fn as_str(self) -> &'static str {
        use SaslFailure::*;
        match self {
            Aborted => "aborted",
            AccountDisabled => "account-disabled",
            CredentialsExpired => "credentials-expired",
            EncryptionRequired => "encryption-required",
            IncorrectEncoding => "incorrect-encoding",
            InvalidAuthzid => "invalid-authzid",
            InvalidMechanism => "invalid-mechanism",
            MalformedRequest => "malformed-request",
            MechanismTooWeak => "mechanism-too-weak",
            NotAuthorized => "not-authorized",
            TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// SASL `<failure>`.
pub fn sasl_failure(cond: SaslFailure, text: Option<&str>) -> Bytes {
    let mut w = XmlWriter::with_capacity(128);
    w.open("failure").attr("xmlns", ns::SASL).close_start();
    w.open(cond.as_str()).close_empty();
    if let Some(t) = text {
        w.text_element("text", None, t);
    }
    w.end("failure");
    w.into_bytes()
}

/// The result of a bind request.
pub fn bind_result(id: &str, jid: &str) -> Bytes {
    let mut w = XmlWriter::with_capacity(160);
    w.open("iq")
        .attr("type", "result")
        .attr("id", id)
        .close_start();
    w.open("bind").attr("xmlns", ns::BIND).close_start();
    w.text_element("jid", None, jid).end("bind").end("iq");
    w.into_bytes()
}

/// An iq result; `payload` is namespace-complete XML or nothing.
pub fn iq_result(id: &str, from: Option<&str>, to: Option<&str>, payload: Option<&[u8]>) -> Bytes {
    let mut w = XmlWriter::with_capacity(128 + payload.map_or(0, <[u8]>::len));
    w.open("iq")
        .attr("type", "result")
        .attr("id", id)
        .attr_opt("from", from)
        .attr_opt("to", to);
    match payload {
        Some(p) => w.close_start().raw(p).end("iq"),
        None => w.close_empty(),
    };
    w.into_bytes()
}

/// An iq `get`/`set` request the server sends (roster push, disco, ping).
pub fn iq_request(
    ty: &str,
    id: &str,
    from: Option<&str>,
    to: Option<&str>,
    payload: &[u8],
) -> Bytes {
    let mut w = XmlWriter::with_capacity(128 + payload.len());
    w.open("iq")
        .attr("type", ty)
        .attr("id", id)
        .attr_opt("from", from)
        .attr_opt("to", to)
        .close_start()
        .raw(payload)
        .end("iq");
    w.into_bytes()
}

/// A stanza error: the details of one `<error/>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StanzaError<'a> {
    /// The defined condition.
    pub condition: StanzaErrorCondition,
    /// The error type; `None` takes the condition's default.
    pub ty: Option<StanzaErrorType>,
    /// An application-specific condition: (element name, namespace).
    pub app: Option<(&'a str, &'a str)>,
    /// Human-readable text.
    pub text: Option<&'a str>,
}

impl<'a> StanzaError<'a> {
    /// An error with just a condition.
    pub fn new(condition: StanzaErrorCondition) -> Self {
        Self {
            condition,
            ty: None,
            app: None,
            text: None,
        }
    }
    /// Adds an application-specific condition (e.g. pubsub#errors).
    pub fn with_app(mut self, name: &'a str, ns: &'a str) -> Self {
        self.app = Some((name, ns));
        self
    }
    /// Adds text.
    pub fn with_text(mut self, text: &'a str) -> Self {
        self.text = Some(text);
        self
    }
}

/// An error reply (RFC 6120 §8.3.1): same element and id, `type='error'`,
/// addresses swapped.
pub fn stanza_error(
    element: &str,
    id: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    err: &StanzaError<'_>,
) -> Bytes {
    let mut w = XmlWriter::with_capacity(256);
    w.open(element)
        .attr("type", "error")
        .attr_opt("id", id)
        .attr_opt("from", from)
        .attr_opt("to", to)
        .close_start();
    let ty = err.ty.unwrap_or_else(|| err.condition.default_type());
    w.open("error").attr("type", ty.as_str()).close_start();
    w.empty_ns(err.condition.as_str(), ns::STANZA_ERRORS);
    if let Some(t) = err.text {
        w.text_element("text", Some(ns::STANZA_ERRORS), t);
    }
    if let Some((name, app_ns)) = err.app {
        w.empty_ns(name, app_ns);
    }
    w.end("error").end(element);
    w.into_bytes()
}

/// A stream error followed by the stream close (RFC 6120 §4.9).
pub fn stream_error(cond: StreamErrorCondition, text: Option<&str>) -> Bytes {
    let mut w = XmlWriter::with_capacity(192);
    w.raw(b"<stream:error>")
        .empty_ns(cond.as_str(), ns::STREAM_ERRORS);
    if let Some(t) = text {
        w.text_element("text", Some(ns::STREAM_ERRORS), t);
    }
    w.raw(b"</stream:error></stream:stream>");
    w.into_bytes()
}

/// The stream close.
pub fn stream_close() -> Bytes {
    Bytes::from_static(b"</stream:stream>")
}

/// One roster item (RFC 6121 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem<'a> {
    /// The contact.
    pub jid: &'a str,
    /// The display name.
    pub name: Option<&'a str>,
    /// `none`, `to`, `from`, `both` or `remove`.
    pub subscription: &'a str,
    /// `Some("subscribe")` while a request is pending out.
    pub ask: Option<&'a str>,
    /// Group names.
    pub groups: &'a [&'a str],
}

/// Writes `<query xmlns='jabber:iq:roster' ver?>` with items.
pub fn roster_query(items: &[RosterItem<'_>], ver: Option<&str>) -> Bytes {
    let mut w = XmlWriter::with_capacity(64 + items.len() * 96);
    w.open("query")
        .attr("xmlns", ns::ROSTER)
        .attr_opt("ver", ver)
        .close_start();
    for it in items {
        w.open("item")
            .attr("jid", it.jid)
            .attr_opt("name", it.name)
            .attr("subscription", it.subscription)
            .attr_opt("ask", it.ask);
        if it.groups.is_empty() {
            w.close_empty();
        } else {
            w.close_start();
            for g in it.groups {
                w.text_element("group", None, g);
            }
            w.end("item");
        }
    }
    w.end("query");
    w.into_bytes()
}

/// A roster push (RFC 6121 §2.1.6) to one resource.
pub fn roster_push(to: &str, id: &str, item: &RosterItem<'_>) -> Bytes {
    iq_request(
        "set",
        id,
        None,
        Some(to),
        &roster_query(std::slice::from_ref(item), None),
    )
}

/// A presence stanza; `children` is namespace-complete XML (show, status,
/// priority, caps) or empty.
pub fn presence(
    from: Option<&str>,
    to: Option<&str>,
    ty: Option<&str>,
    id: Option<&str>,
    children: &[u8],
) -> Bytes {
    let mut w = XmlWriter::with_capacity(96 + children.len());
    w.open("presence")
        .attr_opt("from", from)
        .attr_opt("to", to)
        .attr_opt("type", ty)
        .attr_opt("id", id);
    if children.is_empty() {
        w.close_empty();
    } else {
        w.close_start().raw(children).end("presence");
    }
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::{Element, NsContext};

    fn parse(b: &Bytes) -> Element {
        Element::parse_in(std::str::from_utf8(b).unwrap(), &NsContext::client()).unwrap()
    }

    /// A server stream's header opens a stream the framer accepts, and
    /// the dialback prefix it declares reaches a `<db:result/>`.
    #[test]
    fn a_server_header_declares_dialback() {
        let h = server_stream_header("a.example", Some("b.example"), None);
        let mut f = crate::framer::Framer::default();
        f.feed(&h);
        f.feed(b"<db:result from='a.example' to='b.example'>k</db:result>");
        let Ok(Some(crate::framer::Event::StreamOpen(open))) = f.next() else {
            panic!("no header")
        };
        assert_eq!(open.namespace(""), Some(ns::SERVER));
        assert_eq!(open.attr("id"), None);
        let Ok(Some(crate::framer::Event::Stanza(b))) = f.next() else {
            panic!("no element")
        };
        let el = Element::from_stanza(&b).unwrap();
        assert!(el.is("result", crate::xep::dialback::NS));
        let with_id = server_stream_header("b.example", Some("a.example"), Some("s1"));
        assert!(std::str::from_utf8(&with_id).unwrap().contains("id='s1'"));
    }

    #[test]
    fn header_and_features() {
        let h = stream_header(ns::CLIENT, "example.org", Some("a@example.org"), "abc");
        let s = std::str::from_utf8(&h).unwrap();
        assert!(s.starts_with("<?xml version='1.0'?><stream:stream xmlns='jabber:client'"));
        assert!(s.contains("id='abc'") && s.contains("version='1.0'"));
        let f = features(&Features {
            starttls: Some(true),
            mechanisms: &["SCRAM-SHA-256", "SCRAM-SHA-1"],
            register: true,
            ..Default::default()
        });
        // The stream prefix comes from the header: parse inside a context.
        let ctx = NsContext {
            bindings: vec![(Some("stream".into()), ns::STREAM.into())],
        };
        let el = Element::parse_in(std::str::from_utf8(&f).unwrap(), &ctx).unwrap();
        assert!(el.is("features", ns::STREAM));
        assert!(el
            .child("starttls", ns::TLS)
            .unwrap()
            .child("required", ns::TLS)
            .is_some());
        let mechs: Vec<_> = el
            .child("mechanisms", ns::SASL)
            .unwrap()
            .elements()
            .map(|m| m.text().into_owned())
            .collect();
        assert_eq!(mechs, ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
        assert!(el.child("register", ns::REGISTER_FEATURE).is_some());
    }

    #[test]
    fn sasl() {
        assert_eq!(
            &sasl_success(Some(b"v=abc"))[..],
            b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1hYmM=</success>"
        );
        assert_eq!(
            &sasl_success(None)[..],
            b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
        );
        let f = parse(&sasl_failure(SaslFailure::NotAuthorized, Some("nope")));
        assert!(f.child("not-authorized", ns::SASL).is_some());
    }

    #[test]
    fn bind_and_errors() {
        let b = parse(&bind_result("b1", "jane@example.org/phone"));
        assert_eq!(b.attr("id"), Some("b1"));
        assert_eq!(
            b.child("bind", ns::BIND)
                .unwrap()
                .child("jid", ns::BIND)
                .unwrap()
                .text(),
            "jane@example.org/phone"
        );
        let e = stanza_error(
            "iq",
            Some("s1"),
            Some("jane@example.org"),
            Some("joe@other.org/x"),
            &StanzaError::new(StanzaErrorCondition::BadRequest)
                .with_app("invalid-jid", ns::PUBSUB_ERRORS),
        );
        let e = parse(&e);
        let err = e.child("error", ns::CLIENT).unwrap();
        assert_eq!(err.attr("type"), Some("modify"));
        assert!(err.child("bad-request", ns::STANZA_ERRORS).is_some());
        assert!(err.child("invalid-jid", ns::PUBSUB_ERRORS).is_some());
        assert_eq!(
            &stream_error(StreamErrorCondition::NotWellFormed, None)[..],
            &b"<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"[..]
        );
    }

    #[test]
    fn roster_and_presence() {
        let p = roster_push(
            "joe@other.org/phone",
            "push1",
            &RosterItem {
                jid: "jane@example.org",
                name: Some("Jane & co"),
                subscription: "none",
                ask: Some("subscribe"),
                groups: &["Friends"],
            },
        );
        let p = parse(&p);
        let item = p
            .child("query", ns::ROSTER)
            .unwrap()
            .child("item", ns::ROSTER)
            .unwrap();
        assert_eq!(item.attr("name"), Some("Jane & co"));
        assert_eq!(item.attr("ask"), Some("subscribe"));
        assert_eq!(item.child("group", ns::ROSTER).unwrap().text(), "Friends");
        let pr = presence(Some("a@b/c"), Some("d@e"), Some("subscribe"), None, b"");
        assert_eq!(
            &pr[..],
            b"<presence from='a@b/c' to='d@e' type='subscribe'/>"
        );
    }
}

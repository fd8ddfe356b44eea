//! Stream management (XEP-0198): the nonzas a client sends, and the ones
//! the server answers with.
//!
//! Counts are unsigned 32-bit and wrap (§4: "h" is "the sequence number
//! of the last handled stanza", modulo 2^32).

use bytes::Bytes;

use crate::element::Element;
use crate::error::StreamErrorCondition;
use crate::escape::escape_attr;
use crate::ser::XmlWriter;

/// The namespace (version 3).
pub const NS: &str = "urn:xmpp:sm:3";

/// A stream management nonza from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nonza {
    /// `<enable/>` (§3), after binding.
    Enable {
        /// Whether the client wants the session resumable.
        resume: bool,
        /// The resumption timeout it prefers, in seconds.
        max: Option<u32>,
    },
    /// `<r/>`: the client asks how much we handled.
    Request,
    /// `<a h/>`: the client handled `h` of our stanzas.
    Ack {
        /// Stanzas handled, modulo 2^32.
        h: u32,
    },
    /// `<resume/>` (§5), after authentication, instead of a bind.
    Resume {
        /// The id `<enabled/>` gave.
        previd: String,
        /// Stanzas of ours the client handled.
        h: u32,
    },
}

/// Why a nonza is refused: the stream ends with this error.
pub type Malformed = StreamErrorCondition;

fn count(el: &Element) -> Result<u32, Malformed> {
    el.attr("h")
        .and_then(|h| h.parse().ok())
        .ok_or(StreamErrorCondition::BadFormat)
}

impl Nonza {
    /// Reads an element in [`NS`].
    pub fn parse(el: &Element) -> Result<Self, Malformed> {
        if el.ns != NS {
            return Err(StreamErrorCondition::InvalidNamespace);
        }
        match el.name.as_str() {
            "enable" => Ok(Self::Enable {
                resume: matches!(el.attr("resume"), Some("true" | "1")),
                max: el.attr("max").and_then(|m| m.parse().ok()),
            }),
            "r" => Ok(Self::Request),
            "a" => Ok(Self::Ack { h: count(el)? }),
            "resume" => Ok(Self::Resume {
                previd: el
                    .attr("previd")
                    .filter(|p| !p.is_empty())
                    .ok_or(StreamErrorCondition::BadFormat)?
                    .to_owned(),
                h: count(el)?,
            }),
            _ => Err(StreamErrorCondition::UnsupportedStanzaType),
        }
    }

    /// The element, as a client sends it.
    pub fn to_element(&self) -> Element {
        match self {
            Self::Enable { resume, max } => {
                let mut e = Element::new("enable", NS);
                if *resume {
                    e.set_attr("resume", "true");
                }
                if let Some(m) = max {
                    e.set_attr("max", m.to_string());
                }
                e
            }
            Self::Request => Element::new("r", NS),
            Self::Ack { h } => Element::new("a", NS).with_attr("h", h.to_string()),
            Self::Resume { previd, h } => Element::new("resume", NS)
                .with_attr("previd", previd.clone())
                .with_attr("h", h.to_string()),
        }
    }
}

/// `<enabled/>`: with an id and `resume='true'` when resumable.
pub fn enabled(resumable: Option<(&str, u32)>) -> Bytes {
    let mut w = XmlWriter::with_capacity(128);
    w.open("enabled").attr("xmlns", NS);
    if let Some((id, max)) = resumable {
        w.attr("id", id)
            .attr("resume", "true")
            .attr("max", &max.to_string());
    }
    w.close_empty();
    w.into_bytes()
}

/// `<a h/>`.
pub fn ack(h: u32) -> Bytes {
    Bytes::from(format!("<a xmlns='{NS}' h='{h}'/>"))
}

/// `<r/>`.
pub fn request() -> Bytes {
    Bytes::from(format!("<r xmlns='{NS}'/>"))
}

/// `<resumed/>`: the session is back; we handled `h` of the client's.
pub fn resumed(previd: &str, h: u32) -> Bytes {
    Bytes::from(format!(
        "<resumed xmlns='{NS}' h='{h}' previd='{}'/>",
        escape_attr(previd)
    ))
}

/// `<failed/>` with a stanza error condition (`item-not-found` for a
/// session that cannot be resumed, `unexpected-request` for an enable at
/// the wrong time), and `h` when a session's count is known.
pub fn failed(condition: &str, h: Option<u32>) -> Bytes {
    let mut w = XmlWriter::with_capacity(128);
    w.open("failed").attr("xmlns", NS);
    if let Some(h) = h {
        w.attr("h", &h.to_string());
    }
    w.close_start()
        .empty_ns(condition, crate::ns::STANZA_ERRORS)
        .end("failed");
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<Nonza, Malformed> {
        Nonza::parse(&Element::parse(xml).unwrap())
    }

    #[test]
    fn parses_rejects_round_trips() {
        assert_eq!(
            parse("<enable xmlns='urn:xmpp:sm:3' resume='true' max='600'/>"),
            Ok(Nonza::Enable {
                resume: true,
                max: Some(600)
            })
        );
        assert_eq!(
            parse("<a xmlns='urn:xmpp:sm:3' h='4294967295'/>"),
            Ok(Nonza::Ack { h: u32::MAX })
        );
        for n in [
            Nonza::Enable {
                resume: false,
                max: None,
            },
            Nonza::Request,
            Nonza::Ack { h: 7 },
            Nonza::Resume {
                previd: "abc".into(),
                h: 3,
            },
        ] {
            assert_eq!(Nonza::parse(&n.to_element()), Ok(n));
        }
        for (xml, want) in [
            (
                "<a xmlns='urn:xmpp:sm:3'/>",
                StreamErrorCondition::BadFormat,
            ),
            (
                "<a xmlns='urn:xmpp:sm:3' h='-1'/>",
                StreamErrorCondition::BadFormat,
            ),
            (
                "<a xmlns='urn:xmpp:sm:3' h='4294967296'/>",
                StreamErrorCondition::BadFormat,
            ),
            (
                "<resume xmlns='urn:xmpp:sm:3' h='1'/>",
                StreamErrorCondition::BadFormat,
            ),
            (
                "<x xmlns='urn:xmpp:sm:3'/>",
                StreamErrorCondition::UnsupportedStanzaType,
            ),
            (
                "<a xmlns='urn:xmpp:sm:2' h='1'/>",
                StreamErrorCondition::InvalidNamespace,
            ),
        ] {
            assert_eq!(parse(xml), Err(want), "{xml}");
        }
    }

    #[test]
    fn answers_are_well_formed() {
        let e =
            Element::parse(std::str::from_utf8(&enabled(Some(("id'1", 300)))).unwrap()).unwrap();
        assert_eq!(
            (e.attr("id"), e.attr("resume"), e.attr("max")),
            (Some("id'1"), Some("true"), Some("300"))
        );
        let f = Element::parse(std::str::from_utf8(&failed("item-not-found", Some(2))).unwrap())
            .unwrap();
        assert_eq!(f.attr("h"), Some("2"));
        assert!(f
            .first_element()
            .unwrap()
            .is("item-not-found", crate::ns::STANZA_ERRORS));
        let r = Element::parse(std::str::from_utf8(&resumed("x", 9)).unwrap()).unwrap();
        assert_eq!((r.attr("h"), r.attr("previd")), (Some("9"), Some("x")));
        assert_eq!(
            Nonza::parse(&Element::parse(std::str::from_utf8(&ack(5)).unwrap()).unwrap()),
            Ok(Nonza::Ack { h: 5 })
        );
    }
}

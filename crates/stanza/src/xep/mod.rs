//! Typed requests: what a client asks its server for, parsed once from the
//! stanza's element tree, one module per specification.
//!
//! Each module has a `Request` enum with `parse` (refusing unknown or
//! malformed input with the stanza error the server answers) and
//! `to_element` (the payload a client sends, so test clients and loadgen
//! build requests from the same types). Tests beside each parse from a
//! string, reject, and round-trip.
//!
//! - [`pubsub`] for XEP-0060 (with `#owner`), and [`rsm`] for XEP-0059;
//! - [`roster`] for RFC 6121 §2 roster get and set;
//! - [`blocking`] for XEP-0191;
//! - [`disco`] for XEP-0030 info and items;
//! - [`register`] for XEP-0077;
//! - [`ping`] for XEP-0199, and the legacy session iq (RFC 3921);
//! - [`presence`] for what a client's own presence says (RFC 6121);
//! - [`sm`] for stream management's nonzas (XEP-0198);
//! - [`microblog`] for XEP-0277 entries (Atom), which the web side reads
//!   and writes;
//! - [`dialback`] for server dialback (XEP-0220) and its keys (XEP-0185),
//!   whose malformed forms are stream errors, not stanza errors.

use crate::element::Element;
use crate::error::StanzaErrorCondition as C;
use crate::ns;
use crate::ser::StanzaError;

pub mod blocking;
pub mod dialback;
pub mod disco;
pub mod microblog;
pub mod ping;
pub mod presence;
pub mod pubsub;
pub mod register;
pub mod roster;
pub mod rsm;
pub mod sm;

/// A refusal, as the server answers it.
pub type Refusal = StanzaError<'static>;

/// An iq's type, for requests (results and errors are answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqType {
    /// Reads.
    Get,
    /// Changes.
    Set,
}

impl IqType {
    /// `get` or `set`; `None` for anything else.
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s {
            Some("get") => Some(Self::Get),
            Some("set") => Some(Self::Set),
            _ => None,
        }
    }

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Set => "set",
        }
    }
}

/// A request carried by an iq get or set.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// XEP-0060 (and `#owner`); boxed, being the largest by far.
    Pubsub(Box<pubsub::Request>),
    /// RFC 6121 roster.
    Roster(roster::Request),
    /// XEP-0191.
    Blocking(blocking::Request),
    /// XEP-0030.
    Disco(disco::Request),
    /// XEP-0077.
    Register(register::Request),
    /// XEP-0199.
    Ping,
    /// The legacy session establishment (RFC 3921 §3), a no-op.
    Session,
}

impl Payload {
    /// Reads an iq's payload. `None` when its namespace is none of these
    /// (the caller routes or refuses it); `Some(Err)` when it is one of
    /// them and malformed.
    pub fn parse(ty: IqType, payload: &Element) -> Option<Result<Self, Refusal>> {
        Some(match payload.ns.as_str() {
            ns::PUBSUB | ns::PUBSUB_OWNER => {
                pubsub::Request::parse(ty, payload).map(|r| Self::Pubsub(Box::new(r)))
            }
            ns::ROSTER => roster::Request::parse(ty, payload).map(Self::Roster),
            ns::BLOCKING => blocking::Request::parse(ty, payload).map(Self::Blocking),
            ns::DISCO_INFO | ns::DISCO_ITEMS => disco::Request::parse(ty, payload).map(Self::Disco),
            ns::REGISTER => register::Request::parse(ty, payload).map(Self::Register),
            ns::PING => ping::parse_ping(ty, payload).map(|()| Self::Ping),
            ns::SESSION => ping::parse_session(ty, payload).map(|()| Self::Session),
            _ => return None,
        })
    }

    /// The iq type this request goes in.
    pub fn iq_type(&self) -> IqType {
        match self {
            Self::Pubsub(r) => r.iq_type(),
            Self::Roster(r) => r.iq_type(),
            Self::Blocking(r) => r.iq_type(),
            Self::Disco(_) | Self::Ping => IqType::Get,
            Self::Register(r) => r.iq_type(),
            Self::Session => IqType::Set,
        }
    }

    /// The payload element.
    pub fn to_element(&self) -> Element {
        match self {
            Self::Pubsub(r) => r.to_element(),
            Self::Roster(r) => r.to_element(),
            Self::Blocking(r) => r.to_element(),
            Self::Disco(r) => r.to_element(),
            Self::Register(r) => r.to_element(),
            Self::Ping => Element::new("ping", ns::PING),
            Self::Session => Element::new("session", ns::SESSION),
        }
    }

    /// The whole iq, as a client sends it.
    pub fn to_iq(&self, id: &str, to: Option<&str>) -> Element {
        let mut iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", self.iq_type().as_str())
            .with_attr("id", id);
        if let Some(to) = to {
            iq.set_attr("to", to);
        }
        iq.with_child(self.to_element())
    }
}

/// `bad-request` with a text.
pub(crate) fn bad(text: &'static str) -> Refusal {
    StanzaError::new(C::BadRequest).with_text(text)
}

/// The text of child `name` in `ns`, trimmed.
pub(crate) fn child_text(el: &Element, name: &str, ns: &str) -> Option<String> {
    el.child(name, ns).map(|c| c.text().trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_dispatch_by_namespace_and_round_trip() {
        let ping = Element::parse("<ping xmlns='urn:xmpp:ping'/>").unwrap();
        assert_eq!(Payload::parse(IqType::Get, &ping), Some(Ok(Payload::Ping)));
        let other = Element::parse("<query xmlns='jabber:iq:version'/>").unwrap();
        assert_eq!(Payload::parse(IqType::Get, &other), None);
        // A ping is a get.
        let refused = Payload::parse(IqType::Set, &ping).unwrap().unwrap_err();
        assert_eq!(refused.condition, C::BadRequest);
        let iq = Payload::Ping.to_iq("p1", Some("example.org"));
        let back = Element::from_stanza(&iq.to_bytes_in(&crate::NsContext::client())).unwrap();
        assert_eq!(back.attr("type"), Some("get"));
        assert_eq!(back.attr("to"), Some("example.org"));
        let p = back.first_element().unwrap();
        assert_eq!(Payload::parse(IqType::Get, p), Some(Ok(Payload::Ping)));
    }
}

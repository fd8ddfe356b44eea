//! XEP-0199 ping, and the legacy session iq (RFC 3921 §3, optional since
//! RFC 6121): both are answered with an empty result.

use super::{IqType, Refusal};
use crate::element::Element;
use crate::error::StanzaErrorCondition as C;
use crate::ns;
use crate::ser::StanzaError;

/// A `<ping/>`, which is a get.
pub fn parse_ping(ty: IqType, el: &Element) -> Result<(), Refusal> {
    if ty == IqType::Get && el.is("ping", ns::PING) {
        Ok(())
    } else {
        Err(StanzaError::new(C::BadRequest))
    }
}

/// A `<session/>`, which is a set.
pub fn parse_session(ty: IqType, el: &Element) -> Result<(), Refusal> {
    if ty == IqType::Set && el.is("session", ns::SESSION) {
        Ok(())
    } else {
        Err(StanzaError::new(C::BadRequest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_matter() {
        let p = Element::parse("<ping xmlns='urn:xmpp:ping'/>").unwrap();
        assert!(parse_ping(IqType::Get, &p).is_ok());
        assert!(parse_ping(IqType::Set, &p).is_err());
        let s = Element::parse("<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>").unwrap();
        assert!(parse_session(IqType::Set, &s).is_ok());
        assert!(parse_session(IqType::Get, &s).is_err());
    }
}

//! In-band registration (XEP-0077): the form, creating an account or
//! changing its password, and removing it.

use super::{child_text, IqType, Refusal};
use crate::element::Element;
use crate::error::StanzaErrorCondition as C;
use crate::ns;
use crate::ser::StanzaError;

/// A registration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The registration form (§3.1).
    Get,
    /// Register, or change the password once authenticated (§3.3).
    Set {
        /// The username (trimmed).
        username: String,
        /// The password, never empty.
        password: String,
    },
    /// Remove the authenticated account (§3.2).
    Remove,
}

impl Request {
    /// Reads a `<query xmlns='jabber:iq:register'/>`.
    pub fn parse(ty: IqType, query: &Element) -> Result<Self, Refusal> {
        if !query.is("query", ns::REGISTER) {
            return Err(StanzaError::new(C::BadRequest));
        }
        if ty == IqType::Get {
            return Ok(Self::Get);
        }
        if query.child("remove", ns::REGISTER).is_some() {
            return Ok(Self::Remove);
        }
        let (Some(username), Some(password)) = (
            child_text(query, "username", ns::REGISTER),
            query
                .child("password", ns::REGISTER)
                .map(|p| p.text().into_owned()),
        ) else {
            return Err(
                StanzaError::new(C::NotAcceptable).with_text("username and password are required")
            );
        };
        if password.is_empty() {
            return Err(StanzaError::new(C::NotAcceptable).with_text("empty password"));
        }
        Ok(Self::Set { username, password })
    }

    /// The iq type it goes in.
    pub fn iq_type(&self) -> IqType {
        match self {
            Self::Get => IqType::Get,
            _ => IqType::Set,
        }
    }

    /// The `<query/>` element.
    pub fn to_element(&self) -> Element {
        let q = Element::new("query", ns::REGISTER);
        match self {
            Self::Get => q,
            Self::Remove => q.with_child(Element::new("remove", ns::REGISTER)),
            Self::Set { username, password } => q
                .with_child(Element::new("username", ns::REGISTER).with_text(username.clone()))
                .with_child(Element::new("password", ns::REGISTER).with_text(password.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xml: &str) -> Result<Request, Refusal> {
        Request::parse(IqType::Set, &Element::parse(xml).unwrap())
    }

    #[test]
    fn parses_rejects_round_trips() {
        let r = set("<query xmlns='jabber:iq:register'><username> kim </username><password>p w</password></query>")
            .unwrap();
        assert_eq!(
            r,
            Request::Set {
                username: "kim".into(),
                password: "p w".into()
            }
        );
        for req in [r, Request::Get, Request::Remove] {
            assert_eq!(
                Request::parse(req.iq_type(), &req.to_element()).unwrap(),
                req
            );
        }
        for xml in [
            "<query xmlns='jabber:iq:register'><username>kim</username></query>",
            "<query xmlns='jabber:iq:register'><username>kim</username><password/></query>",
        ] {
            assert_eq!(set(xml).unwrap_err().condition, C::NotAcceptable, "{xml}");
        }
    }
}

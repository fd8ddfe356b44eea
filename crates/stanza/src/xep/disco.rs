//! Service discovery (XEP-0030): info and items queries.

use super::{IqType, Refusal};
use crate::element::Element;
use crate::error::StanzaErrorCondition as C;
use crate::ns;
use crate::ser::StanzaError;

/// A disco query; both are gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `disco#info`, optionally on a node.
    Info {
        /// The node.
        node: Option<String>,
    },
    /// `disco#items`, optionally on a node.
    Items {
        /// The node.
        node: Option<String>,
    },
}

impl Request {
    /// Reads a `<query/>` in either disco namespace.
    pub fn parse(ty: IqType, query: &Element) -> Result<Self, Refusal> {
        if ty != IqType::Get || query.name != "query" {
            return Err(StanzaError::new(C::BadRequest));
        }
        let node = query.attr("node").map(str::to_owned);
        match query.ns.as_str() {
            ns::DISCO_INFO => Ok(Self::Info { node }),
            ns::DISCO_ITEMS => Ok(Self::Items { node }),
            _ => Err(StanzaError::new(C::BadRequest)),
        }
    }

    /// The node asked about.
    pub fn node(&self) -> Option<&str> {
        match self {
            Self::Info { node } | Self::Items { node } => node.as_deref(),
        }
    }

    /// The `<query/>` element.
    pub fn to_element(&self) -> Element {
        let mut q = match self {
            Self::Info { .. } => Element::new("query", ns::DISCO_INFO),
            Self::Items { .. } => Element::new("query", ns::DISCO_ITEMS),
        };
        if let Some(n) = self.node() {
            q.set_attr("node", n);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rejects_round_trips() {
        let q = Element::parse(
            "<query xmlns='http://jabber.org/protocol/disco#items' node='urn:xmpp:microblog:0'/>",
        )
        .unwrap();
        let r = Request::parse(IqType::Get, &q).unwrap();
        assert_eq!(
            r,
            Request::Items {
                node: Some("urn:xmpp:microblog:0".into())
            }
        );
        for req in [r, Request::Info { node: None }] {
            assert_eq!(Request::parse(IqType::Get, &req.to_element()).unwrap(), req);
        }
        let set = Request::parse(IqType::Set, &q).unwrap_err();
        assert_eq!(set.condition, C::BadRequest);
    }
}

//! Blocking command (XEP-0191).

use super::{IqType, Refusal};
use crate::element::Element;
use crate::error::StanzaErrorCondition as C;
use crate::jid::Jid;
use crate::ns;
use crate::ser::StanzaError;

/// Most JIDs one block or unblock may name.
pub const MAX_ITEMS: usize = 1000;

/// A blocking request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The block list (§3.2).
    Get,
    /// Block these JIDs (§3.3); never empty.
    Block(Vec<Jid>),
    /// Unblock these JIDs (§3.4); empty unblocks everyone.
    Unblock(Vec<Jid>),
}

impl Request {
    /// Reads a `<blocklist/>`, `<block/>` or `<unblock/>`.
    pub fn parse(ty: IqType, el: &Element) -> Result<Self, Refusal> {
        let bad = || StanzaError::new(C::BadRequest);
        match (ty, el.name.as_str()) {
            (IqType::Get, "blocklist") => Ok(Self::Get),
            (IqType::Set, verb @ ("block" | "unblock")) => {
                let mut jids = Vec::new();
                for item in el.elements().filter(|e| e.is("item", ns::BLOCKING)) {
                    match item.attr("jid").map(Jid::new) {
                        Some(Ok(j)) => jids.push(j),
                        _ => return Err(StanzaError::new(C::JidMalformed)),
                    }
                }
                // An empty <block/> is an error; an empty <unblock/> clears.
                if jids.len() > MAX_ITEMS || (verb == "block" && jids.is_empty()) {
                    return Err(bad());
                }
                Ok(if verb == "block" {
                    Self::Block(jids)
                } else {
                    Self::Unblock(jids)
                })
            }
            _ => Err(bad()),
        }
    }

    /// The iq type it goes in.
    pub fn iq_type(&self) -> IqType {
        match self {
            Self::Get => IqType::Get,
            _ => IqType::Set,
        }
    }

    /// The payload element.
    pub fn to_element(&self) -> Element {
        let (name, jids) = match self {
            Self::Get => ("blocklist", &[][..]),
            Self::Block(j) => ("block", &j[..]),
            Self::Unblock(j) => ("unblock", &j[..]),
        };
        jids.iter().fold(Element::new(name, ns::BLOCKING), |el, j| {
            el.with_child(Element::new("item", ns::BLOCKING).with_attr("jid", j.as_str()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(ty: IqType, xml: &str) -> Result<Request, Refusal> {
        Request::parse(ty, &Element::parse(xml).unwrap())
    }

    #[test]
    fn parses_and_round_trips() {
        let r = parse(
            IqType::Set,
            "<block xmlns='urn:xmpp:blocking'><item jid='a@x'/><item jid='x/r'/></block>",
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Block(vec![Jid::new("a@x").unwrap(), Jid::new("x/r").unwrap()])
        );
        for req in [r, Request::Unblock(Vec::new()), Request::Get] {
            assert_eq!(
                Request::parse(req.iq_type(), &req.to_element()).unwrap(),
                req
            );
        }
    }

    #[test]
    fn refusals() {
        let empty = parse(IqType::Set, "<block xmlns='urn:xmpp:blocking'/>");
        assert_eq!(empty.unwrap_err().condition, C::BadRequest);
        let bad = parse(
            IqType::Set,
            "<unblock xmlns='urn:xmpp:blocking'><item jid='@@'/></unblock>",
        );
        assert_eq!(bad.unwrap_err().condition, C::JidMalformed);
        let get_block = parse(
            IqType::Get,
            "<block xmlns='urn:xmpp:blocking'><item jid='a@x'/></block>",
        );
        assert_eq!(get_block.unwrap_err().condition, C::BadRequest);
        let many = format!(
            "<block xmlns='urn:xmpp:blocking'>{}</block>",
            "<item jid='a@x'/>".repeat(MAX_ITEMS + 1)
        );
        assert_eq!(
            parse(IqType::Set, &many).unwrap_err().condition,
            C::BadRequest
        );
    }
}

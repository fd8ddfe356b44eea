//! Roster get and set (RFC 6121 §2).

use super::{IqType, Refusal};
use crate::element::Element;
use crate::error::StanzaErrorCondition as C;
use crate::jid::{BareJid, Jid};
use crate::ns;
use crate::ser::StanzaError;

/// Longest name or group accepted.
pub const MAX_LABEL: usize = 1024;

/// A roster request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The whole roster (§2.1.3).
    Get,
    /// Add or update an item's name and groups (§2.3).
    Update {
        /// The contact.
        jid: BareJid,
        /// Its handle.
        name: Option<String>,
        /// Its groups.
        groups: Vec<String>,
    },
    /// Remove the item, cancelling subscriptions both ways (§2.5).
    Remove(BareJid),
}

fn refuse(cond: C) -> Refusal {
    StanzaError::new(cond)
}

impl Request {
    /// Reads a `<query xmlns='jabber:iq:roster'/>`. A set carries exactly
    /// one item with a bare JID (§2.3.3): `bad-request` otherwise,
    /// `jid-malformed` for a JID that does not parse or has a resource,
    /// `not-acceptable` for an empty, duplicate or over-long group or an
    /// over-long name.
    pub fn parse(ty: IqType, query: &Element) -> Result<Self, Refusal> {
        if !query.is("query", ns::ROSTER) {
            return Err(refuse(C::BadRequest));
        }
        if ty == IqType::Get {
            return Ok(Self::Get);
        }
        let mut items = query.elements().filter(|e| e.is("item", ns::ROSTER));
        let (Some(item), None) = (items.next(), items.next()) else {
            return Err(refuse(C::BadRequest));
        };
        let jid = item.attr("jid").ok_or_else(|| refuse(C::BadRequest))?;
        let jid = Jid::new(jid).map_err(|_| refuse(C::JidMalformed))?;
        if jid.is_full() {
            return Err(refuse(C::JidMalformed));
        }
        let jid = jid.to_bare();
        if item.attr("subscription") == Some("remove") {
            return Ok(Self::Remove(jid));
        }
        let name = item
            .attr("name")
            .map(str::to_owned)
            .filter(|n| !n.is_empty());
        let mut groups: Vec<String> = Vec::new();
        for g in item.elements().filter(|e| e.is("group", ns::ROSTER)) {
            let g = g.text().into_owned();
            if g.is_empty() || g.len() > MAX_LABEL || groups.contains(&g) {
                return Err(refuse(C::NotAcceptable));
            }
            groups.push(g);
        }
        if name.as_ref().is_some_and(|n| n.len() > MAX_LABEL) {
            return Err(refuse(C::NotAcceptable));
        }
        Ok(Self::Update { jid, name, groups })
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
        let q = Element::new("query", ns::ROSTER);
        match self {
            Self::Get => q,
            Self::Remove(jid) => q.with_child(
                Element::new("item", ns::ROSTER)
                    .with_attr("jid", jid.as_str())
                    .with_attr("subscription", "remove"),
            ),
            Self::Update { jid, name, groups } => {
                let mut item = Element::new("item", ns::ROSTER).with_attr("jid", jid.as_str());
                if let Some(n) = name {
                    item.set_attr("name", n.clone());
                }
                for g in groups {
                    item = item.with_child(Element::new("group", ns::ROSTER).with_text(g.clone()));
                }
                q.with_child(item)
            }
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
    fn parses_and_round_trips() {
        let r = set(
            "<query xmlns='jabber:iq:roster'><item jid='jane@example.org' name='Jane &lt;3'>\
                     <group>friends</group><group>x&amp;y</group></item></query>",
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Update {
                jid: BareJid::new("jane@example.org").unwrap(),
                name: Some("Jane <3".into()),
                groups: vec!["friends".into(), "x&y".into()],
            }
        );
        for req in [
            r,
            Request::Remove(BareJid::new("joe@example.org").unwrap()),
            Request::Get,
        ] {
            assert_eq!(
                Request::parse(req.iq_type(), &req.to_element()).unwrap(),
                req
            );
        }
    }

    #[test]
    fn bad_sets_get_their_errors() {
        let cases = [
            ("<query xmlns='jabber:iq:roster'><item jid='a@x'/><item jid='b@x'/></query>", C::BadRequest),
            ("<query xmlns='jabber:iq:roster'/>", C::BadRequest),
            ("<query xmlns='jabber:iq:roster'><item/></query>", C::BadRequest),
            ("<query xmlns='jabber:iq:roster'><item jid='a@x'><group>g</group><group>g</group></item></query>", C::NotAcceptable),
            ("<query xmlns='jabber:iq:roster'><item jid='a@x'><group></group></item></query>", C::NotAcceptable),
            ("<query xmlns='jabber:iq:roster'><item jid='a@@x'/></query>", C::JidMalformed),
            ("<query xmlns='jabber:iq:roster'><item jid='a@x/r'/></query>", C::JidMalformed),
        ];
        for (xml, want) in cases {
            assert_eq!(set(xml).unwrap_err().condition, want, "{xml}");
        }
        let long = format!(
            "<query xmlns='jabber:iq:roster'><item jid='a@x' name='{}'/></query>",
            "n".repeat(MAX_LABEL + 1)
        );
        assert_eq!(set(&long).unwrap_err().condition, C::NotAcceptable);
    }
}

//! Result Set Management (XEP-0059): a page request.

use super::{bad, Refusal};
use crate::element::Element;
use crate::ns;

/// Where a page starts (XEP-0059 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// From the oldest item (no `<before/>` or `<after/>`).
    First,
    /// The newest page (an empty `<before/>`).
    Last,
    /// At this position (`<index/>`).
    Index(u64),
    /// Just after this item id.
    After(String),
    /// Just before this item id.
    Before(String),
}

/// A `<set xmlns='http://jabber.org/protocol/rsm'/>` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// `<max/>`, as asked (the server caps it).
    pub max: Option<usize>,
    /// Where the page starts.
    pub anchor: Anchor,
}

impl Set {
    /// Reads a `<set/>`.
    pub fn parse(set: &Element) -> Result<Self, Refusal> {
        let max = match set.child("max", ns::RSM) {
            None => None,
            Some(m) => Some(
                m.text()
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| bad("<max/> must be a number"))?,
            ),
        };
        let anchor = if let Some(b) = set.child("before", ns::RSM) {
            let id = b.text().trim().to_owned();
            if id.is_empty() {
                Anchor::Last
            } else {
                Anchor::Before(id)
            }
        } else if let Some(a) = set.child("after", ns::RSM) {
            Anchor::After(a.text().trim().to_owned())
        } else if let Some(i) = set.child("index", ns::RSM) {
            Anchor::Index(
                i.text()
                    .trim()
                    .parse()
                    .map_err(|_| bad("<index/> must be a number"))?,
            )
        } else {
            Anchor::First
        };
        Ok(Self { max, anchor })
    }

    /// The `<set/>` element.
    pub fn to_element(&self) -> Element {
        let mut set = Element::new("set", ns::RSM);
        if let Some(m) = self.max {
            set = set.with_child(Element::new("max", ns::RSM).with_text(m.to_string()));
        }
        let anchor = match &self.anchor {
            Anchor::First => None,
            Anchor::Last => Some(Element::new("before", ns::RSM)),
            Anchor::Index(i) => Some(Element::new("index", ns::RSM).with_text(i.to_string())),
            Anchor::After(id) => Some(Element::new("after", ns::RSM).with_text(id.clone())),
            Anchor::Before(id) => Some(Element::new("before", ns::RSM).with_text(id.clone())),
        };
        match anchor {
            Some(a) => set.with_child(a),
            None => set,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<Set, Refusal> {
        Set::parse(&Element::parse(xml).unwrap())
    }

    #[test]
    fn parses_each_anchor() {
        let s = parse("<set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>")
            .unwrap();
        assert_eq!((s.max, s.anchor), (Some(10), Anchor::Last));
        let s =
            parse("<set xmlns='http://jabber.org/protocol/rsm'><after> b </after></set>").unwrap();
        assert_eq!((s.max, s.anchor), (None, Anchor::After("b".into())));
        let s =
            parse("<set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set>").unwrap();
        assert_eq!(s.anchor, Anchor::Index(3));
        let s = parse("<set xmlns='http://jabber.org/protocol/rsm'/>").unwrap();
        assert_eq!(s.anchor, Anchor::First);
    }

    #[test]
    fn rejects_non_numbers() {
        for xml in [
            "<set xmlns='http://jabber.org/protocol/rsm'><max>ten</max></set>",
            "<set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set>",
            "<set xmlns='http://jabber.org/protocol/rsm'><index>x</index></set>",
        ] {
            let e = parse(xml).unwrap_err();
            assert_eq!(
                e.condition,
                crate::StanzaErrorCondition::BadRequest,
                "{xml}"
            );
        }
    }

    #[test]
    fn round_trips() {
        for anchor in [
            Anchor::First,
            Anchor::Last,
            Anchor::Index(7),
            Anchor::After("a".into()),
            Anchor::Before("z".into()),
        ] {
            let s = Set {
                max: Some(5),
                anchor,
            };
            assert_eq!(Set::parse(&s.to_element()).unwrap(), s);
        }
    }
}

//! PEP nodes (XEP-0163 on XEP-0060): node configuration, publish-options,
//! and stored items. Every PEP node behaves the same way; the microblog
//! node `urn:xmpp:microblog:0` is one of them.

use serde::{Deserialize, Serialize};
use stanza::{ns, Element};

/// Who may subscribe to and retrieve a node (XEP-0060 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessModel {
    /// Anyone.
    Open,
    /// Contacts with a presence subscription to the owner (PEP default).
    Presence,
    /// Contacts in allowed roster groups.
    Roster,
    /// Only affiliated entities.
    Whitelist,
}

impl AccessModel {
    /// The form value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Presence => "presence",
            Self::Roster => "roster",
            Self::Whitelist => "whitelist",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "presence" => Self::Presence,
            "roster" => Self::Roster,
            "whitelist" => Self::Whitelist,
            _ => return None,
        })
    }
}

/// A node's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// `pubsub#access_model`.
    pub access_model: AccessModel,
    /// `pubsub#max_items`: `None` is `max` (no limit but the server's).
    pub max_items: Option<u32>,
    /// `pubsub#persist_items`: when false only the last item is kept.
    pub persist_items: bool,
    /// `pubsub#notify_retract`.
    pub notify_retract: bool,
    /// `pubsub#roster_groups_allowed`, for the `roster` access model.
    #[serde(default)]
    pub roster_groups_allowed: Vec<String>,
    /// `pubsub#send_last_published_item`.
    #[serde(default)]
    pub send_last: SendLast,
}

/// `pubsub#send_last_published_item` (XEP-0060 §12.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SendLast {
    /// Never.
    Never,
    /// To a new subscriber.
    OnSub,
    /// To a new subscriber, and to a resource that comes online with
    /// `+notify` (the PEP default, XEP-0163 §5.1).
    #[default]
    OnSubAndPresence,
}

impl SendLast {
    /// The form value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::OnSub => "on_sub",
            Self::OnSubAndPresence => "on_sub_and_presence",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "never" => Self::Never,
            "on_sub" => Self::OnSub,
            "on_sub_and_presence" => Self::OnSubAndPresence,
            _ => return None,
        })
    }
}

/// The server-wide ceiling for `max_items = max`, and the default.
pub const MAX_ITEMS_CEILING: u32 = 10_000;
/// `max_items` of an auto-created node (Prosody's `pep_max_items` default
/// is 256; a microblog wants its history, so Starling keeps more).
pub const DEFAULT_MAX_ITEMS: u32 = 1_000;

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            access_model: AccessModel::Presence,
            max_items: Some(DEFAULT_MAX_ITEMS),
            persist_items: true,
            notify_retract: true,
            roster_groups_allowed: Vec::new(),
            send_last: SendLast::default(),
        }
    }
}

impl NodeConfig {
    /// Items kept at most.
    pub fn item_limit(&self) -> u64 {
        if !self.persist_items {
            return 1;
        }
        u64::from(
            self.max_items
                .unwrap_or(MAX_ITEMS_CEILING)
                .min(MAX_ITEMS_CEILING),
        )
    }
}

/// Options from `<publish-options/>` or a configure form: each field that
/// was present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `pubsub#access_model`.
    pub access_model: Option<AccessModel>,
    /// `pubsub#max_items` (`Some(None)` is `max`).
    pub max_items: Option<Option<u32>>,
    /// `pubsub#persist_items`.
    pub persist_items: Option<bool>,
    /// `pubsub#notify_retract`.
    pub notify_retract: Option<bool>,
    /// `pubsub#roster_groups_allowed`.
    pub roster_groups_allowed: Option<Vec<String>>,
    /// `pubsub#send_last_published_item`.
    pub send_last: Option<SendLast>,
}

/// A form value that does not parse, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad value for {field}: {value:?}")]
pub struct BadOption {
    /// The field's `var`.
    pub field: String,
    /// The value sent.
    pub value: String,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

impl Options {
    /// Reads a `jabber:x:data` form. Fields Starling does not know are
    /// ignored, as XEP-0060 §7.1.5 allows for publish-options.
    pub fn from_form(x: &Element) -> Result<Self, BadOption> {
        let mut o = Options::default();
        for field in x.elements().filter(|f| f.is("field", ns::DATA_FORMS)) {
            let var = field.attr("var").unwrap_or("");
            let value = field
                .child("value", ns::DATA_FORMS)
                .map(|v| v.text().trim().to_owned())
                .unwrap_or_default();
            let bad = || BadOption {
                field: var.to_owned(),
                value: value.clone(),
            };
            match var {
                "pubsub#access_model" => {
                    o.access_model = Some(AccessModel::parse(&value).ok_or_else(bad)?)
                }
                "pubsub#max_items" => {
                    o.max_items = Some(if value == "max" {
                        None
                    } else {
                        Some(
                            value
                                .parse::<u32>()
                                .ok()
                                .filter(|&n| n > 0)
                                .ok_or_else(bad)?,
                        )
                    })
                }
                "pubsub#persist_items" => {
                    o.persist_items = Some(parse_bool(&value).ok_or_else(bad)?)
                }
                "pubsub#notify_retract" => {
                    o.notify_retract = Some(parse_bool(&value).ok_or_else(bad)?)
                }
                "pubsub#roster_groups_allowed" => {
                    o.roster_groups_allowed = Some(
                        field
                            .elements()
                            .filter(|v| v.is("value", ns::DATA_FORMS))
                            .map(|v| v.text().trim().to_owned())
                            .filter(|g| !g.is_empty())
                            .collect(),
                    )
                }
                "pubsub#send_last_published_item" => {
                    o.send_last = Some(SendLast::parse(&value).ok_or_else(bad)?)
                }
                _ => {}
            }
        }
        Ok(o)
    }

    /// A new node's configuration: the defaults with these options.
    pub fn apply(&self, mut c: NodeConfig) -> NodeConfig {
        if let Some(a) = self.access_model {
            c.access_model = a;
        }
        if let Some(m) = self.max_items {
            c.max_items = m;
        }
        if let Some(p) = self.persist_items {
            c.persist_items = p;
        }
        if let Some(n) = self.notify_retract {
            c.notify_retract = n;
        }
        if let Some(g) = &self.roster_groups_allowed {
            c.roster_groups_allowed = g.clone();
        }
        if let Some(s) = self.send_last {
            c.send_last = s;
        }
        c
    }

    /// Whether an existing node satisfies these publish-options
    /// (XEP-0060 §7.1.5: otherwise `precondition-not-met`).
    pub fn met_by(&self, c: &NodeConfig) -> bool {
        self.access_model.is_none_or(|a| a == c.access_model)
            && self.max_items.is_none_or(|m| m == c.max_items)
            && self.persist_items.is_none_or(|p| p == c.persist_items)
            && self.notify_retract.is_none_or(|n| n == c.notify_retract)
            && self
                .roster_groups_allowed
                .as_ref()
                .is_none_or(|g| *g == c.roster_groups_allowed)
            && self.send_last.is_none_or(|s| s == c.send_last)
    }
}

impl NodeConfig {
    /// The configuration as a `jabber:x:data` form (XEP-0060 §8.2.1), as
    /// the owner reads it.
    pub fn to_form(&self, w: &mut stanza::ser::XmlWriter) {
        fn field(w: &mut stanza::ser::XmlWriter, var: &str, ty: &str, values: &[&str]) {
            w.open("field")
                .attr("var", var)
                .attr("type", ty)
                .close_start();
            for v in values {
                w.text_element("value", None, v);
            }
            w.end("field");
        }
        fn list(w: &mut stanza::ser::XmlWriter, var: &str, value: &str, options: &[&str]) {
            w.open("field")
                .attr("var", var)
                .attr("type", "list-single")
                .close_start();
            w.text_element("value", None, value);
            for o in options {
                w.open("option").close_start();
                w.text_element("value", None, o);
                w.end("option");
            }
            w.end("field");
        }
        let b = |v: bool| if v { "1" } else { "0" };
        w.open("x")
            .attr("xmlns", ns::DATA_FORMS)
            .attr("type", "form")
            .close_start();
        field(
            w,
            "FORM_TYPE",
            "hidden",
            &["http://jabber.org/protocol/pubsub#node_config"],
        );
        list(
            w,
            "pubsub#access_model",
            self.access_model.as_str(),
            &["open", "presence", "roster", "whitelist"],
        );
        let max = self
            .max_items
            .map_or_else(|| "max".to_owned(), |n| n.to_string());
        field(w, "pubsub#max_items", "text-single", &[&max]);
        field(
            w,
            "pubsub#persist_items",
            "boolean",
            &[b(self.persist_items)],
        );
        field(
            w,
            "pubsub#notify_retract",
            "boolean",
            &[b(self.notify_retract)],
        );
        let groups: Vec<&str> = self
            .roster_groups_allowed
            .iter()
            .map(String::as_str)
            .collect();
        field(w, "pubsub#roster_groups_allowed", "list-multi", &groups);
        list(
            w,
            "pubsub#send_last_published_item",
            self.send_last.as_str(),
            &["never", "on_sub", "on_sub_and_presence"],
        );
        w.end("x");
    }
}

/// One stored item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredItem {
    /// The item id.
    pub id: String,
    /// The publisher's bare JID.
    pub publisher: String,
    /// The payload, namespace-complete XML.
    pub payload: String,
    /// When it was published, as milliseconds since the Unix epoch.
    pub published_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> Element {
        let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
        for (var, value) in fields {
            x = x.with_child(
                Element::new("field", ns::DATA_FORMS)
                    .with_attr("var", *var)
                    .with_child(Element::new("value", ns::DATA_FORMS).with_text(*value)),
            );
        }
        x
    }

    #[test]
    fn options_parse_apply_and_compare() {
        let o = Options::from_form(&form(&[
            (
                "FORM_TYPE",
                "http://jabber.org/protocol/pubsub#publish-options",
            ),
            ("pubsub#access_model", "open"),
            ("pubsub#max_items", "max"),
            ("pubsub#persist_items", "1"),
        ]))
        .unwrap();
        let c = o.apply(NodeConfig::default());
        assert_eq!(c.access_model, AccessModel::Open);
        assert_eq!(c.max_items, None);
        assert!(o.met_by(&c));
        assert!(!o.met_by(&NodeConfig::default()));
        assert_eq!(c.item_limit(), u64::from(MAX_ITEMS_CEILING));
    }

    #[test]
    fn bad_values_name_the_field() {
        let e = Options::from_form(&form(&[("pubsub#max_items", "-3")])).unwrap_err();
        assert_eq!(e.field, "pubsub#max_items");
        assert!(Options::from_form(&form(&[("pubsub#access_model", "friends")])).is_err());
    }

    #[test]
    fn the_configure_form_reads_back_as_the_same_config() {
        let c = NodeConfig {
            access_model: AccessModel::Roster,
            max_items: None,
            roster_groups_allowed: vec!["friends".into(), "family".into()],
            send_last: SendLast::OnSub,
            notify_retract: false,
            ..NodeConfig::default()
        };
        let mut w = stanza::ser::XmlWriter::with_capacity(512);
        c.to_form(&mut w);
        let x = Element::parse(std::str::from_utf8(w.as_bytes()).unwrap()).unwrap();
        let o = Options::from_form(&x).unwrap();
        assert_eq!(o.apply(NodeConfig::default()), c);
        assert!(o.met_by(&c));
    }

    #[test]
    fn persist_false_keeps_one() {
        let c = NodeConfig {
            persist_items: false,
            ..NodeConfig::default()
        };
        assert_eq!(c.item_limit(), 1);
    }
}

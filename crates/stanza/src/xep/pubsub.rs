//! Publish-subscribe (XEP-0060) as PEP uses it: the entity use cases
//! (publish, retract, items, subscribe, unsubscribe, own subscriptions)
//! and the owner use cases of `#owner` (configure, subscribers, purge,
//! delete).

use super::rsm;
use super::{bad, IqType, Refusal};
use crate::element::Element;
use crate::error::StanzaErrorCondition as C;
use crate::jid::Jid;
use crate::ns;
use crate::ser::StanzaError;

/// A pubsub request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// §7.1: one item, with optional publish-options (a data form).
    Publish {
        /// The node.
        node: String,
        /// The item id; `None` lets the service choose one.
        id: Option<String>,
        /// The payload, namespace-complete.
        payload: Element,
        /// The `<x xmlns='jabber:x:data'/>` of `<publish-options/>`.
        options: Option<Element>,
    },
    /// §7.2: remove one item.
    Retract {
        /// The node.
        node: String,
        /// The item id.
        id: String,
        /// `notify`, when given.
        notify: Option<bool>,
    },
    /// §6.5: items, by id or the newest, or one RSM page.
    Items {
        /// The node.
        node: String,
        /// Ids asked for, each once, in request order.
        ids: Vec<String>,
        /// `max_items`.
        max_items: Option<usize>,
        /// An RSM page request (a sibling of `<items/>`).
        rsm: Option<rsm::Set>,
    },
    /// §6.1: subscribe `jid` (the requester's bare or full JID).
    Subscribe {
        /// The node.
        node: String,
        /// Who.
        jid: Jid,
    },
    /// §6.2.
    Unsubscribe {
        /// The node.
        node: String,
        /// Who.
        jid: Jid,
    },
    /// §5.6: the requester's subscriptions, optionally on one node.
    Subscriptions {
        /// The node, if one.
        node: Option<String>,
    },
    /// An owner use case (`#owner`).
    Owner(Owner),
}

/// The owner use cases (XEP-0060 §8).
#[derive(Debug, Clone, PartialEq)]
pub enum Owner {
    /// §8.2: the configuration form.
    GetConfiguration {
        /// The node.
        node: String,
    },
    /// §8.2.4: a submitted configuration form.
    Configure {
        /// The node.
        node: String,
        /// The `<x xmlns='jabber:x:data' type='submit'/>`.
        form: Element,
    },
    /// §8.8.1: the subscribers.
    GetSubscribers {
        /// The node.
        node: String,
    },
    /// §8.8.2: subscription changes; PEP keeps only `none` (removal).
    RemoveSubscribers {
        /// The node.
        node: String,
        /// Who to remove.
        jids: Vec<Jid>,
    },
    /// §8.5.
    Purge {
        /// The node.
        node: String,
    },
    /// §8.4.
    Delete {
        /// The node.
        node: String,
    },
}

fn app(cond: C, name: &'static str) -> Refusal {
    StanzaError::new(cond).with_app(name, ns::PUBSUB_ERRORS)
}

fn unsupported() -> Refusal {
    app(C::FeatureNotImplemented, "unsupported")
}

fn node_of(el: &Element) -> Result<String, Refusal> {
    el.attr("node")
        .map(str::to_owned)
        .ok_or_else(|| app(C::BadRequest, "nodeid-required"))
}

fn jid_of(el: &Element) -> Result<Jid, Refusal> {
    let jid = el
        .attr("jid")
        .ok_or_else(|| app(C::BadRequest, "jid-required"))?;
    Jid::new(jid).map_err(|_| app(C::BadRequest, "invalid-jid"))
}

impl Request {
    /// Reads a `<pubsub/>` (either namespace).
    pub fn parse(ty: IqType, pubsub: &Element) -> Result<Self, Refusal> {
        if !pubsub.is("pubsub", ns::PUBSUB) && !pubsub.is("pubsub", ns::PUBSUB_OWNER) {
            return Err(StanzaError::new(C::BadRequest));
        }
        let Some(op) = pubsub.first_element() else {
            return Err(StanzaError::new(C::BadRequest));
        };
        if pubsub.ns == ns::PUBSUB_OWNER {
            return Owner::parse(ty, op).map(Self::Owner);
        }
        match (ty, op.name.as_str()) {
            _ if op.ns != ns::PUBSUB => Err(unsupported()),
            (IqType::Set, "publish") => {
                let node = node_of(op)?;
                let item = op
                    .child("item", ns::PUBSUB)
                    .ok_or_else(|| app(C::BadRequest, "item-required"))?;
                let payload = item
                    .first_element()
                    .ok_or_else(|| app(C::BadRequest, "payload-required"))?
                    .clone();
                let options = pubsub
                    .child("publish-options", ns::PUBSUB)
                    .and_then(|po| po.child("x", ns::DATA_FORMS))
                    .cloned();
                Ok(Self::Publish {
                    node,
                    id: item.attr("id").filter(|s| !s.is_empty()).map(str::to_owned),
                    payload,
                    options,
                })
            }
            (IqType::Set, "retract") => Ok(Self::Retract {
                node: node_of(op)?,
                id: op
                    .child("item", ns::PUBSUB)
                    .and_then(|i| i.attr("id"))
                    .map(str::to_owned)
                    .ok_or_else(|| app(C::BadRequest, "item-required"))?,
                notify: op.attr("notify").map(|v| v == "true" || v == "1"),
            }),
            (IqType::Get, "items") => {
                let node = node_of(op)?;
                // Each id once, in request order: a request repeating one
                // id thousands of times must not get thousands of copies
                // (reply amplification), nor cost a quadratic scan.
                let mut seen = std::collections::HashSet::new();
                let ids = op
                    .elements()
                    .filter(|i| i.is("item", ns::PUBSUB))
                    .filter_map(|i| i.attr("id"))
                    .filter(|id| seen.insert(*id))
                    .map(str::to_owned)
                    .collect();
                let max_items = match op.attr("max_items").map(str::parse::<usize>) {
                    None => None,
                    Some(Ok(n)) => Some(n),
                    Some(Err(_)) => return Err(bad("max_items must be a number")),
                };
                let rsm = pubsub
                    .child("set", ns::RSM)
                    .map(rsm::Set::parse)
                    .transpose()?;
                Ok(Self::Items {
                    node,
                    ids,
                    max_items,
                    rsm,
                })
            }
            (IqType::Set, "subscribe") => Ok(Self::Subscribe {
                node: node_of(op)?,
                jid: jid_of(op)?,
            }),
            (IqType::Set, "unsubscribe") => Ok(Self::Unsubscribe {
                node: node_of(op)?,
                jid: jid_of(op)?,
            }),
            (IqType::Get, "subscriptions") => Ok(Self::Subscriptions {
                node: op.attr("node").map(str::to_owned),
            }),
            _ => Err(unsupported()),
        }
    }

    /// The iq type it goes in.
    pub fn iq_type(&self) -> IqType {
        match self {
            Self::Items { .. } | Self::Subscriptions { .. } => IqType::Get,
            Self::Owner(o) => o.iq_type(),
            _ => IqType::Set,
        }
    }

    /// The `<pubsub/>` element.
    pub fn to_element(&self) -> Element {
        let pubsub = Element::new("pubsub", ns::PUBSUB);
        let on = |name: &str, node: &str| Element::new(name, ns::PUBSUB).with_attr("node", node);
        match self {
            Self::Publish {
                node,
                id,
                payload,
                options,
            } => {
                let mut item = Element::new("item", ns::PUBSUB).with_child(payload.clone());
                if let Some(id) = id {
                    item.set_attr("id", id.clone());
                }
                let p = pubsub.with_child(on("publish", node).with_child(item));
                match options {
                    Some(x) => p.with_child(
                        Element::new("publish-options", ns::PUBSUB).with_child(x.clone()),
                    ),
                    None => p,
                }
            }
            Self::Retract { node, id, notify } => {
                let mut r = on("retract", node)
                    .with_child(Element::new("item", ns::PUBSUB).with_attr("id", id.clone()));
                if let Some(n) = notify {
                    r.set_attr("notify", if *n { "true" } else { "false" });
                }
                pubsub.with_child(r)
            }
            Self::Items {
                node,
                ids,
                max_items,
                rsm,
            } => {
                let mut items = on("items", node);
                if let Some(m) = max_items {
                    items.set_attr("max_items", m.to_string());
                }
                for id in ids {
                    items = items
                        .with_child(Element::new("item", ns::PUBSUB).with_attr("id", id.clone()));
                }
                let p = pubsub.with_child(items);
                match rsm {
                    Some(s) => p.with_child(s.to_element()),
                    None => p,
                }
            }
            Self::Subscribe { node, jid } => {
                pubsub.with_child(on("subscribe", node).with_attr("jid", jid.as_str()))
            }
            Self::Unsubscribe { node, jid } => {
                pubsub.with_child(on("unsubscribe", node).with_attr("jid", jid.as_str()))
            }
            Self::Subscriptions { node } => {
                let mut s = Element::new("subscriptions", ns::PUBSUB);
                if let Some(n) = node {
                    s.set_attr("node", n.clone());
                }
                pubsub.with_child(s)
            }
            Self::Owner(o) => o.to_element(),
        }
    }
}

impl Owner {
    fn parse(ty: IqType, op: &Element) -> Result<Self, Refusal> {
        if op.ns != ns::PUBSUB_OWNER {
            return Err(unsupported());
        }
        let node = node_of(op)?;
        match (ty, op.name.as_str()) {
            (IqType::Get, "configure") => Ok(Self::GetConfiguration { node }),
            (IqType::Set, "configure") => {
                let form = op
                    .child("x", ns::DATA_FORMS)
                    .cloned()
                    .ok_or_else(|| bad("a configuration form is required"))?;
                Ok(Self::Configure { node, form })
            }
            (IqType::Get, "subscriptions") => Ok(Self::GetSubscribers { node }),
            (IqType::Set, "subscriptions") => {
                let mut jids = Vec::new();
                for s in op
                    .elements()
                    .filter(|e| e.is("subscription", ns::PUBSUB_OWNER))
                {
                    let jid = s
                        .attr("jid")
                        .and_then(|j| Jid::new(j).ok())
                        .ok_or_else(|| bad("a subscription needs a jid"))?;
                    if s.attr("subscription") != Some("none") {
                        return Err(StanzaError::new(C::NotAcceptable)
                            .with_text("only subscription='none' can be set"));
                    }
                    jids.push(jid);
                }
                Ok(Self::RemoveSubscribers { node, jids })
            }
            (IqType::Set, "purge") => Ok(Self::Purge { node }),
            (IqType::Set, "delete") => Ok(Self::Delete { node }),
            _ => Err(unsupported()),
        }
    }

    fn iq_type(&self) -> IqType {
        match self {
            Self::GetConfiguration { .. } | Self::GetSubscribers { .. } => IqType::Get,
            _ => IqType::Set,
        }
    }

    /// The node the request is about.
    pub fn node(&self) -> &str {
        match self {
            Self::GetConfiguration { node }
            | Self::Configure { node, .. }
            | Self::GetSubscribers { node }
            | Self::RemoveSubscribers { node, .. }
            | Self::Purge { node }
            | Self::Delete { node } => node,
        }
    }

    fn to_element(&self) -> Element {
        let on = |name: &str| Element::new(name, ns::PUBSUB_OWNER).with_attr("node", self.node());
        let op = match self {
            Self::GetConfiguration { .. } => on("configure"),
            Self::Configure { form, .. } => on("configure").with_child(form.clone()),
            Self::GetSubscribers { .. } => on("subscriptions"),
            Self::RemoveSubscribers { jids, .. } => {
                jids.iter().fold(on("subscriptions"), |op, j| {
                    op.with_child(
                        Element::new("subscription", ns::PUBSUB_OWNER)
                            .with_attr("jid", j.as_str())
                            .with_attr("subscription", "none"),
                    )
                })
            }
            Self::Purge { .. } => on("purge"),
            Self::Delete { .. } => on("delete"),
        };
        Element::new("pubsub", ns::PUBSUB_OWNER).with_child(op)
    }
}

#[cfg(test)]
#[path = "pubsub_tests.rs"]
mod tests;

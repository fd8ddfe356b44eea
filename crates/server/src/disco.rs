//! Service discovery (XEP-0030): the server's identity and features, and
//! each account's PEP service (XEP-0163 §5) with its nodes. Only features
//! that work are advertised.

use std::sync::Arc;

use stanza::ser::{StanzaError, XmlWriter};
use stanza::{ns, BareJid, Jid, StanzaErrorCondition as C};

use crate::pubsub::NodeConfig;
use crate::Shared;
use stanza::xep::disco::Request;

/// What the server itself supports (PROTOCOL §8).
const SERVER_FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    ns::REGISTER,
    ns::PING,
    ns::BLOCKING,
    ns::ROSTER,
];

/// The `http://jabber.org/protocol/pubsub#` features of an account's PEP
/// service: each one is implemented and tested.
const PEP_FEATURES: &[&str] = &[
    "access-open",
    "access-presence",
    "access-roster",
    "access-whitelist",
    "auto-create",
    "auto-subscribe",
    "config-node",
    "delete-items",
    "delete-nodes",
    "filtered-notifications",
    "last-published",
    "manage-subscriptions",
    "multi-items",
    "persistent-items",
    "publish",
    "publish-options",
    "purge-nodes",
    "retract",
    "retrieve-items",
    "retrieve-subscriptions",
    "rsm",
    "subscribe",
];

/// Answers a disco#info or disco#items get addressed to the server
/// (`target == None`) or to a local account's bare JID.
pub(crate) async fn iq(
    shared: &Arc<Shared>,
    me: &Jid,
    target: Option<&BareJid>,
    req: &Request,
) -> Result<Vec<u8>, StanzaError<'static>> {
    let node = req.node();
    let info = matches!(req, Request::Info { .. });
    let mut w = XmlWriter::with_capacity(1024);
    w.open("query")
        .attr(
            "xmlns",
            if info {
                ns::DISCO_INFO
            } else {
                ns::DISCO_ITEMS
            },
        )
        .attr_opt("node", node);
    match target {
        None => {
            if node.is_some() {
                return Err(StanzaError::new(C::ItemNotFound));
            }
            w.close_start();
            if info {
                w.open("identity")
                    .attr("category", "server")
                    .attr("type", "im")
                    .attr("name", "Starling")
                    .close_empty();
                for f in SERVER_FEATURES {
                    w.open("feature").attr("var", f).close_empty();
                }
                if shared.config.s2s.multicast {
                    // XEP-0033, for other servers' fan-out to our users.
                    w.open("feature").attr("var", ns::ADDRESS).close_empty();
                }
            }
        }
        Some(account) => {
            let visible = readable_nodes(shared, me, account).await?;
            w.close_start();
            account_answer(&mut w, account, info, node, &visible)?;
        }
    }
    w.end("query");
    Ok(w.as_bytes().to_vec())
}

/// `account`'s nodes the requester may read. Strangers learn nothing
/// (PROTOCOL §8): a missing account, and an account that blocked the
/// requester, answer exactly as an existing one with no readable node.
async fn readable_nodes(
    shared: &Arc<Shared>,
    me: &Jid,
    account: &BareJid,
) -> Result<Vec<(String, NodeConfig)>, StanzaError<'static>> {
    let registry = shared.fanout.registry();
    let blocked = registry.is_blocked(account, &me.to_bare(), me.to_full().as_ref())
        || registry.is_blocked(&me.to_bare(), account, None);
    let (a, requester) = (account.clone(), me.to_bare());
    let read = shared
        .db(move |store| {
            if blocked || store.account(&a)?.is_none() {
                return Ok((Vec::new(), None));
            }
            let nodes = store.nodes_of(&a)?;
            let item = if requester == a {
                None
            } else {
                store.roster_item(&a, &requester)?
            };
            Ok::<_, crate::StoreError>((nodes, item))
        })
        .await;
    let Ok((nodes, item)) = read else {
        return Err(StanzaError::new(C::InternalServerError));
    };
    let is_owner = me.to_bare() == *account;
    Ok(nodes
        .into_iter()
        .filter(|(_, c)| is_owner || crate::pep::check_access(c, item.as_ref()).is_ok())
        .collect())
}

/// An account's info or items (XEP-0163 §5), or one node's info with its
/// metadata (XEP-0060 §5.4), from the nodes the requester may read.
fn account_answer(
    w: &mut XmlWriter,
    account: &BareJid,
    info: bool,
    node: Option<&str>,
    visible: &[(String, NodeConfig)],
) -> Result<(), StanzaError<'static>> {
    match (info, node) {
        (true, None) => {
            w.open("identity")
                .attr("category", "account")
                .attr("type", "registered")
                .close_empty();
            w.open("identity")
                .attr("category", "pubsub")
                .attr("type", "pep")
                .close_empty();
            w.open("feature").attr("var", ns::DISCO_INFO).close_empty();
            w.open("feature").attr("var", ns::DISCO_ITEMS).close_empty();
            for f in PEP_FEATURES {
                w.open("feature")
                    .attr("var", &format!("{}#{f}", ns::PUBSUB))
                    .close_empty();
            }
        }
        (true, Some(n)) => {
            let Some((_, config)) = visible.iter().find(|(name, _)| name == n) else {
                return Err(StanzaError::new(C::ItemNotFound));
            };
            w.open("identity")
                .attr("category", "pubsub")
                .attr("type", "leaf")
                .close_empty();
            w.open("feature").attr("var", ns::PUBSUB).close_empty();
            w.open("x")
                .attr("xmlns", ns::DATA_FORMS)
                .attr("type", "result")
                .close_start();
            for (var, value) in [
                ("FORM_TYPE", "http://jabber.org/protocol/pubsub#meta-data"),
                ("pubsub#access_model", config.access_model.as_str()),
                ("pubsub#owner", account.as_str()),
            ] {
                w.open("field").attr("var", var).close_start();
                w.text_element("value", None, value);
                w.end("field");
            }
            w.end("x");
        }
        (false, None) => {
            for (name, _) in visible {
                w.open("item")
                    .attr("jid", account.as_str())
                    .attr("node", name)
                    .close_empty();
            }
        }
        (false, Some(_)) => {}
    }
    Ok(())
}

//! Publish (XEP-0060 §7.1), retract (§7.2), and the item-less events
//! (retract, purge, delete) sent through the fan-out like a publish.

use std::sync::Arc;

use fanout::Publish;
use stanza::ser::{StanzaError, XmlWriter};
use stanza::{
    ns, BareJid, Element, EventItem, EventKind, FullJid, PubsubEvent, StanzaErrorCondition as C,
};
use tracing::debug;

use crate::pubsub::{AccessModel, Options, StoredItem};
use crate::store::{PublishError, PublishRequest};
use crate::Shared;

use super::access::{allowed_for, refresh_access};
use super::{app, new_item_id, now_ms, Reply};

pub(super) async fn publish(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    node: String,
    item_id: Option<String>,
    payload: &Element,
    options: Option<&Element>,
) -> Reply {
    if *owner != me.to_bare() {
        return Err(StanzaError::new(C::Forbidden));
    }
    if !shared.limiters.publish(owner) {
        shared.metrics.limited("publish");
        return Err(StanzaError::new(C::ResourceConstraint).with_text("publishing too fast"));
    }
    let item_id = item_id.unwrap_or_else(new_item_id);
    let options = match options.map(Options::from_form).transpose() {
        Ok(o) => o,
        Err(_) => return Err(app(C::Conflict, "precondition-not-met")),
    };
    // Stored and delivered as published, but standing on its own: prefixes
    // declared on <pubsub> or <iq> are re-declared (PROTOCOL §1.7).
    let payload = String::from_utf8(payload.to_bytes().to_vec()).unwrap_or_default();
    let limits = &shared.config.limits;
    if payload.len() > limits.max_item_bytes {
        // XEP-0060 §7.1.3.4.
        return Err(app(C::NotAcceptable, "payload-too-big"));
    }
    let req = PublishRequest {
        owner: owner.clone(),
        node: node.clone(),
        item: StoredItem {
            id: item_id.clone(),
            publisher: owner.to_string(),
            payload,
            published_ms: now_ms(),
        },
        options,
        max_nodes: limits.max_nodes_per_account,
    };
    let config = match shared.committer.publish(req.clone()).await {
        Ok(c) => c,
        Err(PublishError::TooManyNodes) => {
            return Err(app(C::PolicyViolation, "max-nodes-exceeded")
                .with_text("the account has reached its node limit"))
        }
        Err(PublishError::PreconditionNotMet) => {
            return Err(app(C::Conflict, "precondition-not-met"))
        }
        Err(PublishError::Store(e)) => {
            tracing::error!(error = %e, "publish failed in the store");
            return Err(StanzaError::new(C::InternalServerError));
        }
    };
    // Durable now: deliver. The access model limits who may receive.
    if config.access_model == AccessModel::Roster {
        refresh_access(shared, owner).await?;
    } else {
        shared
            .fanout
            .registry()
            .set_node_access(owner, &node, allowed_for(&config, &[]));
    }
    let fanout = shared.fanout.clone();
    let report = tokio::task::spawn_blocking(move || {
        let it = &req.item;
        let items = [EventItem {
            id: &it.id,
            publisher: Some(&it.publisher),
            payload: it.payload.as_bytes(),
        }];
        let notif_id = format!("n-{}", it.id);
        fanout.publish(
            &req.owner,
            &Publish {
                id: &notif_id,
                event: PubsubEvent {
                    node: &req.node,
                    kind: EventKind::Items(&items),
                    delay: None,
                },
            },
        )
    })
    .await;
    shared.metrics.publishes.inc();
    if let Ok(r) = &report {
        shared.metrics.delivery(r);
    }
    debug!(%owner, %node, item = %item_id, ?report, "published");
    let mut w = XmlWriter::with_capacity(160);
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("publish").attr("node", &node).close_start();
    w.open("item").attr("id", &item_id).close_empty();
    w.end("publish").end("pubsub");
    Ok(w.as_bytes().to_vec())
}

/// Retracts one item (XEP-0060 §7.2) and, when notification is on, tells
/// the same recipients a publish would reach.
pub(super) async fn retract(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    node: String,
    id: String,
    notify: Option<bool>,
) -> Reply {
    if *owner != me.to_bare() {
        return Err(StanzaError::new(C::Forbidden));
    }
    let (o, n, i) = (owner.clone(), node.clone(), id.clone());
    let config = match shared.db(move |s| s.retract(&o, &n, &i)).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(StanzaError::new(C::ItemNotFound)),
        Err(_) => return Err(StanzaError::new(C::InternalServerError)),
    };
    let notify = notify.unwrap_or(config.notify_retract);
    if notify {
        notify_event(shared, owner, &node, Notice::Retract(id)).await;
    }
    Ok(Vec::new())
}

/// A node event without items, for [`notify_event`].
pub(crate) enum Notice {
    /// An item was retracted.
    Retract(String),
    /// Every item was purged.
    Purge,
    /// The node was deleted.
    Delete,
}

/// Sends a retract, purge or delete event to the node's recipients, through
/// the fan-out strategy like a publish.
pub(crate) async fn notify_event(
    shared: &Arc<Shared>,
    owner: &BareJid,
    node: &str,
    notice: Notice,
) {
    let fanout = shared.fanout.clone();
    let (owner, node) = (owner.clone(), node.to_owned());
    let report = tokio::task::spawn_blocking(move || {
        let ids: Vec<&str> = match &notice {
            Notice::Retract(id) => vec![id.as_str()],
            Notice::Purge | Notice::Delete => Vec::new(),
        };
        let (kind, notif_id) = match &notice {
            Notice::Retract(id) => (EventKind::Retract(&ids), format!("r-{id}")),
            Notice::Purge => (EventKind::Purge, format!("purge-{}", now_ms())),
            Notice::Delete => (EventKind::Delete, format!("delete-{}", now_ms())),
        };
        fanout.publish(
            &owner,
            &Publish {
                id: &notif_id,
                event: PubsubEvent {
                    node: &node,
                    kind,
                    delay: None,
                },
            },
        )
    })
    .await;
    if let Ok(r) = &report {
        shared.metrics.delivery(r);
    }
}

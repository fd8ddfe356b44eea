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

/// A publish that passed its checks, ready to be stored.
pub(crate) type Prepared = PublishRequest;

/// The checks a publish passes before it is stored (XEP-0060 §7.1.3).
pub(crate) fn prepare(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    node: String,
    item_id: Option<String>,
    payload: &Element,
    options: Option<&Element>,
) -> Result<Prepared, StanzaError<'static>> {
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
    Ok(PublishRequest {
        owner: owner.clone(),
        node,
        item: StoredItem {
            id: item_id,
            publisher: owner.to_string(),
            payload,
            published_ms: now_ms(),
        },
        options,
        max_nodes: limits.max_nodes_per_account,
    })
}

/// Publishes one item (XEP-0060 §7.1): stored durably, then delivered.
pub(super) async fn publish(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    node: String,
    item_id: Option<String>,
    payload: &Element,
    options: Option<&Element>,
) -> Reply {
    let req = prepare(shared, me, owner, node, item_id, payload, options)?;
    publish_prepared(shared, vec![req])
        .await
        .pop()
        .unwrap_or_else(|| Err(StanzaError::new(C::InternalServerError)))
}

/// Stores prepared publishes (one publisher's, in the order sent) in one
/// transaction, then delivers them in that order in one pass, so that a
/// follower's writer finds them queued together. One reply each.
pub(crate) async fn publish_prepared(shared: &Arc<Shared>, reqs: Vec<Prepared>) -> Vec<Reply> {
    let results = shared.committer.publish_all(reqs.clone()).await;
    let mut replies: Vec<Reply> = Vec::with_capacity(reqs.len());
    let mut durable = Vec::with_capacity(reqs.len());
    for (req, result) in reqs.into_iter().zip(results) {
        let reply = match result {
            Ok(config) => access_for(shared, &req, &config).await.map(|()| {
                let reply = result_payload(&req.node, &req.item.id);
                let streams = &shared.api_streams;
                if req.node == ns::MICROBLOG
                    && config.access_model == AccessModel::Open
                    && streams.public.receiver_count() > 0
                {
                    let ev = crate::web::api::streaming::PublicEvent::Update(
                        req.owner.clone(),
                        Arc::new(req.item.clone()),
                    );
                    let _ = streams.public.send(ev);
                }
                durable.push(req);
                reply
            }),
            Err(PublishError::TooManyNodes) => Err(app(C::PolicyViolation, "max-nodes-exceeded")
                .with_text("the account has reached its node limit")),
            Err(PublishError::PreconditionNotMet) => Err(app(C::Conflict, "precondition-not-met")),
            Err(PublishError::Store(e)) => {
                tracing::error!(error = %e, "publish failed in the store");
                Err(StanzaError::new(C::InternalServerError))
            }
        };
        replies.push(reply);
    }
    if durable.is_empty() {
        return replies;
    }
    let fanout = shared.fanout.clone();
    let reports = tokio::task::spawn_blocking(move || {
        durable
            .iter()
            .map(|req| {
                let it = &req.item;
                let items = [EventItem {
                    id: &it.id,
                    publisher: Some(&it.publisher),
                    payload: it.payload.as_bytes(),
                }];
                let notif_id = format!("n-{}", it.id);
                let report = fanout.publish(
                    &req.owner,
                    &Publish {
                        id: &notif_id,
                        event: PubsubEvent {
                            node: &req.node,
                            kind: EventKind::Items(&items),
                            delay: None,
                        },
                    },
                );
                debug!(owner = %req.owner, node = %req.node, item = %it.id, ?report, "published");
                report
            })
            .collect::<Vec<_>>()
    })
    .await;
    if let Ok(reports) = &reports {
        for r in reports {
            shared.metrics.publishes.inc();
            shared.metrics.delivery(r);
        }
    }
    replies
}

/// Durable now: the access model limits who may receive.
async fn access_for(
    shared: &Arc<Shared>,
    req: &PublishRequest,
    config: &crate::pubsub::NodeConfig,
) -> Result<(), StanzaError<'static>> {
    if config.access_model == AccessModel::Roster {
        refresh_access(shared, &req.owner).await
    } else {
        shared
            .fanout
            .registry()
            .set_node_access(&req.owner, &req.node, allowed_for(config, &[]));
        Ok(())
    }
}

/// The payload of a publish's result: the item id it was stored under.
fn result_payload(node: &str, item_id: &str) -> Vec<u8> {
    let mut w = XmlWriter::with_capacity(160);
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("publish").attr("node", node).close_start();
    w.open("item").attr("id", item_id).close_empty();
    w.end("publish").end("pubsub");
    w.as_bytes().to_vec()
}

/// Retracts one item (XEP-0060 §7.2) and, when notification is on, tells
/// the same recipients a publish would reach.
pub(crate) async fn retract(
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
    // The API's streams name a retracted post by its status id, which
    // leaves the store with the item.
    let status = if node == ns::MICROBLOG {
        let (o, i) = (owner.clone(), id.clone());
        shared.db(move |s| s.status_id(&o, &i)).await.ok().flatten()
    } else {
        None
    };
    let (o, n, i) = (owner.clone(), node.clone(), id.clone());
    let config = match shared.db(move |s| s.retract(&o, &n, &i)).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(StanzaError::new(C::ItemNotFound)),
        Err(_) => return Err(StanzaError::new(C::InternalServerError)),
    };
    shared.feeds.touch(owner);
    if let Some(status) = status {
        shared.api_streams.retracting(owner, &id, status);
    }
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

//! PEP requests from a bound session: publish and items retrieval
//! (XEP-0163, XEP-0060 §6.5 and §7.1). Subscriptions, retract, RSM and the
//! owner use cases arrive in later steps.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fanout::Publish;
use stanza::ser::{self, StanzaError, XmlWriter};
use stanza::{
    ns, BareJid, Element, EventItem, EventKind, FullJid, PubsubEvent, StanzaErrorCondition as C,
};
use tracing::debug;

use crate::pubsub::{AccessModel, Options, StoredItem};
use crate::store::{PublishError, PublishRequest};
use crate::Shared;

/// Answers one pubsub iq.
pub(crate) async fn iq(shared: &Arc<Shared>, me: &FullJid, iq: &Element) -> Bytes {
    let id = iq.attr("id").unwrap_or("");
    let to = iq.attr("to");
    let reply_err =
        |e: StanzaError<'_>| ser::stanza_error("iq", Some(id), to, Some(me.as_str()), &e);
    let owner = match to {
        None => me.to_bare(),
        Some(t) => match stanza::Jid::new(t) {
            Err(_) => return reply_err(StanzaError::new(C::JidMalformed)),
            // A resource's pubsub service is the client's business; routing
            // iqs to other clients arrives with message routing.
            Ok(j) if j.is_full() => return reply_err(StanzaError::new(C::ServiceUnavailable)),
            Ok(j) => j.to_bare(),
        },
    };
    if !shared.config.domains.iter().any(|d| d == owner.domain()) {
        // Federation is a later issue.
        return reply_err(StanzaError::new(C::RemoteServerNotFound));
    }
    let Some(pubsub) = iq.child("pubsub", ns::PUBSUB) else {
        return reply_err(StanzaError::new(C::BadRequest));
    };
    let result = match (iq.attr("type"), pubsub.first_element()) {
        (Some("set"), Some(p)) if p.is("publish", ns::PUBSUB) => {
            publish(shared, me, &owner, pubsub, p).await
        }
        (Some("get"), Some(i)) if i.is("items", ns::PUBSUB) => items(shared, me, &owner, i).await,
        _ => {
            Err(StanzaError::new(C::FeatureNotImplemented)
                .with_app("unsupported", ns::PUBSUB_ERRORS))
        }
    };
    match result {
        Ok(payload) => ser::iq_result(id, to, Some(me.as_str()), Some(&payload)),
        Err(e) => reply_err(e),
    }
}

type Reply = Result<Vec<u8>, StanzaError<'static>>;

fn app(cond: C, name: &'static str) -> StanzaError<'static> {
    StanzaError::new(cond).with_app(name, ns::PUBSUB_ERRORS)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_item_id() -> String {
    let r: [u8; 8] = rand::random();
    format!(
        "{:x}-{}",
        now_ms(),
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

async fn publish(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    pubsub: &Element,
    p: &Element,
) -> Reply {
    if *owner != me.to_bare() {
        return Err(StanzaError::new(C::Forbidden));
    }
    let Some(node) = p.attr("node").map(str::to_owned) else {
        return Err(app(C::BadRequest, "nodeid-required"));
    };
    let Some(item) = p.child("item", ns::PUBSUB) else {
        return Err(app(C::BadRequest, "item-required"));
    };
    let Some(payload) = item.first_element() else {
        return Err(app(C::BadRequest, "payload-required"));
    };
    let item_id = item
        .attr("id")
        .filter(|s| !s.is_empty())
        .map_or_else(new_item_id, str::to_owned);
    let options = match pubsub
        .child("publish-options", ns::PUBSUB)
        .and_then(|po| po.child("x", ns::DATA_FORMS))
        .map(Options::from_form)
        .transpose()
    {
        Ok(o) => o,
        Err(_) => return Err(app(C::Conflict, "precondition-not-met")),
    };
    // Stored and delivered as published, but standing on its own: prefixes
    // declared on <pubsub> or <iq> are re-declared (PROTOCOL §1.7).
    let payload = String::from_utf8(payload.to_bytes().to_vec()).unwrap_or_default();
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
    };
    let config = match shared.committer.publish(req.clone()).await {
        Ok(c) => c,
        Err(PublishError::PreconditionNotMet) => {
            return Err(app(C::Conflict, "precondition-not-met"))
        }
        Err(PublishError::Store(e)) => {
            tracing::error!(error = %e, "publish failed in the store");
            return Err(StanzaError::new(C::InternalServerError));
        }
    };
    // Durable now: deliver. The access model limits who may receive.
    let registry = shared.fanout.registry();
    let allowed = match config.access_model {
        AccessModel::Open | AccessModel::Presence => None,
        // Until rosters and affiliations exist, only the owner qualifies.
        AccessModel::Roster | AccessModel::Whitelist => Some(Default::default()),
    };
    registry.set_node_access(owner, &node, allowed);
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
    debug!(%owner, %node, item = %item_id, ?report, "published");
    let mut w = XmlWriter::with_capacity(160);
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("publish").attr("node", &node).close_start();
    w.open("item").attr("id", &item_id).close_empty();
    w.end("publish").end("pubsub");
    Ok(w.as_bytes().to_vec())
}

async fn items(shared: &Arc<Shared>, me: &FullJid, owner: &BareJid, items: &Element) -> Reply {
    let Some(node) = items.attr("node").map(str::to_owned) else {
        return Err(app(C::BadRequest, "nodeid-required"));
    };
    let wanted: Vec<String> = items
        .elements()
        .filter(|i| i.is("item", ns::PUBSUB))
        .filter_map(|i| i.attr("id").map(str::to_owned))
        .collect();
    let max = match items.attr("max_items").map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return Err(StanzaError::new(C::BadRequest).with_text("max_items must be a number"))
        }
    };
    let store = shared.store.clone();
    let (o, n) = (owner.clone(), node.clone());
    let read = tokio::task::spawn_blocking(move || {
        let rec = store.node(&o, &n)?;
        let Some(rec) = rec else { return Ok(None) };
        let list = if wanted.is_empty() {
            store.items(&o, &n, max)?
        } else {
            let mut v = Vec::new();
            for id in &wanted {
                v.extend(store.item(&o, &n, id)?);
            }
            v
        };
        Ok::<_, crate::StoreError>(Some((rec.config, list)))
    })
    .await;
    let (config, list) = match read {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => return Err(StanzaError::new(C::ItemNotFound)),
        _ => return Err(StanzaError::new(C::InternalServerError)),
    };
    if *owner != me.to_bare() {
        match config.access_model {
            AccessModel::Open => {}
            // Presence and roster access need the roster (a later step);
            // until then only the owner passes.
            AccessModel::Presence => {
                return Err(app(C::NotAuthorized, "presence-subscription-required"))
            }
            AccessModel::Roster => return Err(app(C::NotAuthorized, "not-in-roster-group")),
            AccessModel::Whitelist => return Err(app(C::NotAllowed, "closed-node")),
        }
    }
    let mut w =
        XmlWriter::with_capacity(256 + list.iter().map(|i| i.payload.len() + 64).sum::<usize>());
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("items").attr("node", &node).close_start();
    for it in &list {
        w.open("item")
            .attr("id", &it.id)
            .attr("publisher", &it.publisher)
            .close_start()
            .raw(it.payload.as_bytes())
            .end("item");
    }
    w.end("items").end("pubsub");
    Ok(w.as_bytes().to_vec())
}

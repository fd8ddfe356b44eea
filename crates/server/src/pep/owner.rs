//! The owner use cases of a PEP node, in `pubsub#owner` (XEP-0060 §8),
//! which Movim uses: read and change the configuration, list the
//! subscribers ("my followers") and remove one, purge the items, delete
//! the node. Also the requester's own subscriptions to one account's nodes
//! (§5.6, "what I follow there").
//!
//! Every change is durable and reflected in the fan-out registry before it
//! is acknowledged.

use std::sync::Arc;

use stanza::ser::{StanzaError, XmlWriter};
use stanza::{ns, BareJid, Element, FullJid, StanzaErrorCondition as C};

use super::{notify_event, refresh_access, Notice, Reply};
use crate::pubsub::Options;
use crate::store::prelude::*;
use crate::Shared;
use stanza::xep::pubsub::Owner;

/// An owner use case (`pubsub#owner`); only the owner may.
pub(crate) async fn iq(shared: &Arc<Shared>, me: &FullJid, owner: &BareJid, op: Owner) -> Reply {
    if *owner != me.to_bare() {
        return Err(StanzaError::new(C::Forbidden));
    }
    match op {
        Owner::GetConfiguration { node } => configure_get(shared, owner, &node).await,
        Owner::Configure { node, form } => configure_set(shared, owner, &node, &form).await,
        Owner::GetSubscribers { node } => subscribers(shared, owner, &node).await,
        Owner::RemoveSubscribers { node, jids } => {
            remove_subscribers(shared, owner, &node, jids).await
        }
        Owner::Purge { node } => purge(shared, owner, &node).await,
        Owner::Delete { node } => delete(shared, owner, &node).await,
    }
}

async fn blocking<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&dyn Store) -> Result<T, crate::StoreError> + Send + 'static,
) -> Result<T, StanzaError<'static>> {
    shared.db(f).await.map_err(|e| {
        tracing::error!(error = %e, "store");
        StanzaError::new(C::InternalServerError)
    })
}

fn owner_wrap(body: impl FnOnce(&mut XmlWriter)) -> Vec<u8> {
    let mut w = XmlWriter::with_capacity(512);
    w.open("pubsub")
        .attr("xmlns", ns::PUBSUB_OWNER)
        .close_start();
    body(&mut w);
    w.end("pubsub");
    w.as_bytes().to_vec()
}

async fn configure_get(shared: &Arc<Shared>, owner: &BareJid, node: &str) -> Reply {
    let (o, n) = (owner.clone(), node.to_owned());
    let Some(rec) = blocking(shared, move |s| s.node(&o, &n)).await? else {
        return Err(StanzaError::new(C::ItemNotFound));
    };
    Ok(owner_wrap(|w| {
        w.open("configure").attr("node", node).close_start();
        rec.config.to_form(w);
        w.end("configure");
    }))
}

async fn configure_set(shared: &Arc<Shared>, owner: &BareJid, node: &str, x: &Element) -> Reply {
    if x.attr("type") == Some("cancel") {
        return Ok(Vec::new());
    }
    let options = Options::from_form(x).map_err(|_| StanzaError::new(C::NotAcceptable))?;
    let (o, n) = (owner.clone(), node.to_owned());
    if blocking(shared, move |s| s.configure(&o, &n, &options))
        .await?
        .is_none()
    {
        return Err(StanzaError::new(C::ItemNotFound));
    }
    shared.feeds.touch(owner);
    // Who may receive, and which subscriptions stand, follow the new model.
    refresh_access(shared, owner).await?;
    Ok(Vec::new())
}

async fn subscribers(shared: &Arc<Shared>, owner: &BareJid, node: &str) -> Reply {
    let (o, n) = (owner.clone(), node.to_owned());
    let subs = blocking(shared, move |store| {
        Ok(match store.node(&o, &n)? {
            Some(_) => Some(store.node_subscriptions(&o, &n)?),
            None => None,
        })
    })
    .await?;
    let Some(subs) = subs else {
        return Err(StanzaError::new(C::ItemNotFound));
    };
    Ok(owner_wrap(|w| {
        w.open("subscriptions").attr("node", node).close_start();
        for j in &subs {
            w.open("subscription")
                .attr("jid", j.as_str())
                .attr("subscription", "subscribed")
                .close_empty();
        }
        w.end("subscriptions");
    }))
}

/// `<subscription jid=… subscription='none'/>` removes a subscriber
/// (XEP-0060 §8.8.2); other states are not kept by a PEP service.
pub(crate) async fn remove_subscribers(
    shared: &Arc<Shared>,
    owner: &BareJid,
    node: &str,
    jids: Vec<stanza::Jid>,
) -> Reply {
    let (o, n) = (owner.clone(), node.to_owned());
    let j = jids.clone();
    let found = blocking(shared, move |store| {
        if store.node(&o, &n)?.is_none() {
            return Ok(false);
        }
        for jid in &j {
            store.unsubscribe(&o, &n, jid)?;
        }
        Ok(true)
    })
    .await?;
    if !found {
        return Err(StanzaError::new(C::ItemNotFound));
    }
    let registry = shared.fanout.registry();
    for jid in &jids {
        registry.unsubscribe(owner, node, jid);
    }
    Ok(Vec::new())
}

async fn purge(shared: &Arc<Shared>, owner: &BareJid, node: &str) -> Reply {
    let (o, n) = (owner.clone(), node.to_owned());
    let Some(config) = blocking(shared, move |s| s.purge(&o, &n)).await? else {
        return Err(StanzaError::new(C::ItemNotFound));
    };
    shared.feeds.touch(owner);
    if config.notify_retract {
        notify_event(shared, owner, node, Notice::Purge).await;
    }
    Ok(Vec::new())
}

async fn delete(shared: &Arc<Shared>, owner: &BareJid, node: &str) -> Reply {
    let (o, n) = (owner.clone(), node.to_owned());
    if blocking(shared, move |s| s.delete_node(&o, &n))
        .await?
        .is_none()
    {
        return Err(StanzaError::new(C::ItemNotFound));
    }
    shared.feeds.touch(owner);
    // Subscribers hear of it before their subscriptions go.
    notify_event(shared, owner, node, Notice::Delete).await;
    let registry = shared.fanout.registry();
    registry.clear_node(owner, node);
    registry.set_node_access(owner, node, None);
    Ok(Vec::new())
}

/// The requester's subscriptions to `owner`'s nodes (XEP-0060 §5.6),
/// optionally for one node.
pub(crate) async fn own_subscriptions(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    node: Option<&str>,
) -> Reply {
    let b = me.to_bare();
    let mut subs = blocking(shared, move |s| s.subscriptions_of(&b)).await?;
    subs.retain(|s| s.owner == *owner && node.is_none_or(|n| n == s.node));
    let mut w = XmlWriter::with_capacity(256);
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("subscriptions").attr_opt("node", node).close_start();
    for s in &subs {
        w.open("subscription")
            .attr("node", &s.node)
            .attr("jid", s.jid.as_str())
            .attr("subscription", "subscribed")
            .close_empty();
    }
    w.end("subscriptions").end("pubsub");
    Ok(w.as_bytes().to_vec())
}

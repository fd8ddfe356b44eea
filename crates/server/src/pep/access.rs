//! Who may read and receive a node (XEP-0060 §4.5), from the owner's
//! roster: `presence` admits contacts with a `from`/`both` subscription,
//! `roster` the members of the allowed groups, `whitelist` nobody but the
//! owner (Starling keeps no other affiliations). When a roster or a
//! configuration changes, [`refresh_access`] re-derives who may receive and
//! drops subscriptions that are no longer allowed, before the change is
//! acknowledged.

use std::sync::Arc;

use stanza::ser::StanzaError;
use stanza::{BareJid, StanzaErrorCondition as C};
use tracing::debug;

use std::collections::HashSet;

use crate::pubsub::{AccessModel, NodeConfig};
use crate::roster::RosterItem;
use crate::Shared;

use super::app;
use crate::store::Store;

/// Who may receive a node's events, for the fan-out registry: `None` for
/// open and presence (every route that exists qualifies: explicit
/// subscriptions are checked when made and when the roster changes, and
/// presence followers are the presence audience); the allowed roster
/// members for roster; nobody but the owner for whitelist.
pub(crate) fn allowed_for(
    config: &NodeConfig,
    roster: &[(BareJid, RosterItem)],
) -> Option<HashSet<BareJid>> {
    match config.access_model {
        AccessModel::Open | AccessModel::Presence => None,
        AccessModel::Roster => Some(
            roster
                .iter()
                .filter(|(_, i)| in_groups(config, i))
                .map(|(j, _)| j.clone())
                .collect(),
        ),
        AccessModel::Whitelist => Some(HashSet::new()),
    }
}

fn in_groups(config: &NodeConfig, item: &RosterItem) -> bool {
    item.listed
        && item
            .groups
            .iter()
            .any(|g| config.roster_groups_allowed.contains(g))
}

/// The access check for someone other than the owner (XEP-0060 §6.1.3),
/// given the owner's roster item for them.
pub(crate) fn check_access(
    config: &NodeConfig,
    item: Option<&RosterItem>,
) -> Result<(), StanzaError<'static>> {
    match config.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence if item.is_some_and(|i| i.sub.from()) => Ok(()),
        AccessModel::Presence => Err(app(C::NotAuthorized, "presence-subscription-required")),
        AccessModel::Roster if item.is_some_and(|i| in_groups(config, i)) => Ok(()),
        AccessModel::Roster => Err(app(C::NotAuthorized, "not-in-roster-group")),
        AccessModel::Whitelist => Err(app(C::NotAllowed, "closed-node")),
    }
}

/// `owner`'s node if `requester` may read it: `item-not-found`, or the
/// access model's error, otherwise. Blocking (store reads).
pub(super) fn readable_node(
    store: &dyn Store,
    owner: &BareJid,
    node: &str,
    requester: &BareJid,
) -> Result<Result<crate::store::NodeRecord, StanzaError<'static>>, crate::StoreError> {
    let Some(rec) = store.node(owner, node)? else {
        return Ok(Err(StanzaError::new(C::ItemNotFound)));
    };
    if requester != owner {
        let item = store.roster_item(owner, requester)?;
        if let Err(e) = check_access(&rec.config, item.as_ref()) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(rec))
}

/// Re-derives who may receive each of `owner`'s nodes after the owner's
/// roster or a node's configuration changed, and drops the explicit
/// subscriptions the access model no longer allows (XEP-0060 §4.5). Done
/// before the change is acknowledged, so later publishes see it.
///
/// Refreshes of one owner run one at a time (a striped lock): each reads
/// the store after the change it follows committed, so the last one to
/// apply holds the latest state, and the registry cannot keep a follower
/// the store already removed. A refresh that fails is an error for the
/// request that caused it: the change must not be acknowledged while the
/// registry still delivers by the old rules.
pub(crate) async fn refresh_access(
    shared: &Arc<Shared>,
    owner: &BareJid,
) -> Result<(), StanzaError<'static>> {
    let _one_at_a_time = shared.access_locks.lock(owner).await;
    let o = owner.clone();
    let work = shared
        .db(move |store| {
            let nodes = store.nodes_of(&o)?;
            let restricted = nodes
                .iter()
                .any(|(_, c)| c.access_model != AccessModel::Open);
            if !restricted {
                return Ok((nodes, Vec::new(), Vec::new()));
            }
            // The whole roster only for `roster` nodes (their allowed set);
            // otherwise one item per explicit subscriber, so a big account's
            // follow changes stay cheap.
            let roster = if nodes
                .iter()
                .any(|(_, c)| c.access_model == AccessModel::Roster)
            {
                store.roster(&o)?
            } else {
                Vec::new()
            };
            let mut dropped = Vec::new();
            for (node, config) in nodes
                .iter()
                .filter(|(_, c)| c.access_model != AccessModel::Open)
            {
                for jid in store.node_subscriptions(&o, node)? {
                    let bare = jid.to_bare();
                    if bare == o {
                        continue;
                    }
                    let item = store.roster_item(&o, &bare)?;
                    if check_access(config, item.as_ref()).is_err() {
                        store.unsubscribe(&o, node, &jid)?;
                        dropped.push((node.clone(), jid));
                    }
                }
            }
            Ok::<_, crate::StoreError>((nodes, roster, dropped))
        })
        .await;
    let (nodes, roster, dropped) = work.map_err(|e| {
        tracing::error!(%owner, error = %e, "could not refresh node access");
        StanzaError::new(C::InternalServerError)
    })?;
    let registry = shared.fanout.registry();
    for (node, config) in &nodes {
        registry.set_node_access(owner, node, allowed_for(config, &roster));
    }
    for (node, jid) in dropped {
        debug!(%owner, %node, %jid, "subscription no longer allowed; removed");
        registry.unsubscribe(owner, &node, &jid);
    }
    Ok(())
}

/// Striped locks, one stripe per hash of an owner: refreshes of one owner
/// are serialized without a lock per account.
#[derive(Debug)]
pub(crate) struct AccessLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
    hasher: std::hash::RandomState,
}

impl Default for AccessLocks {
    fn default() -> Self {
        Self {
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl AccessLocks {
    async fn lock(&self, owner: &BareJid) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        let i = self.hasher.hash_one(owner.as_str()) as usize % self.stripes.len();
        self.stripes[i].lock().await
    }
}

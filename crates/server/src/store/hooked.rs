//! A store that runs a hook before every call: the seam for tests of what
//! the server does when the store fails, or when another change commits
//! between a handler's decision and its write.
//!
//! The hook gets the call's name and the store underneath. Returning an
//! error fails the call without running it; writing through the store it
//! is given commits a change first, as a concurrent request would.

use std::sync::{Arc, RwLock};

use stanza::{BareJid, Jid};

use super::{
    AccountRecord, AccountStore, Anchor, BlockStore, Budget, Deleted, Exchange, MaintenanceStore,
    NodeRecord, Page, PublishError, PublishRequest, PubsubStore, RosterPair, RosterQuota,
    RosterRemoval, RosterStore, Seed, Store, StoreError, Subscription,
};
use super::{AppRecord, Status, StatusRange, StatusStore, TokenRecord, TokenStore};
use crate::pubsub::{NodeConfig, Options, StoredItem};
use crate::roster::{Outcome, RosterItem, SubKind};

/// What runs before each call: `(call name, the store underneath)`.
pub type Hook = dyn Fn(&'static str, &dyn Store) -> Result<(), StoreError> + Send + Sync;

/// Wraps a store; every call runs the current hook first.
pub struct Hooked {
    inner: Arc<dyn Store>,
    hook: RwLock<Option<Arc<Hook>>>,
}

impl std::fmt::Debug for Hooked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooked").finish_non_exhaustive()
    }
}

impl Hooked {
    /// `inner` with no hook: every call goes straight through.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            hook: RwLock::new(None),
        }
    }

    /// Runs `hook` before every call from now on.
    pub fn set(
        &self,
        hook: impl Fn(&'static str, &dyn Store) -> Result<(), StoreError> + Send + Sync + 'static,
    ) {
        *self.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    /// Removes the hook.
    pub fn clear(&self) {
        *self.hook.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The error a hook returns to fail a call.
    pub fn injected() -> StoreError {
        StoreError::Backend(Box::new(std::io::Error::other("injected fault")))
    }

    fn before(&self, call: &'static str) -> Result<(), StoreError> {
        // Cloned out of the lock, so a hook may replace itself.
        let hook = self.hook.read().unwrap_or_else(|e| e.into_inner()).clone();
        match hook {
            Some(h) => h(call, &*self.inner),
            None => Ok(()),
        }
    }
}

/// Each method: the hook, then the same call on the inner store.
macro_rules! hooked {
    ($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* }) => {
        impl $trait for Hooked {
            $(fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.before(stringify!($name))?;
                self.inner.$name($($arg),*)
            })*
        }
    };
}

hooked!(AccountStore {
    fn account(&self, jid: &BareJid) -> Result<Option<AccountRecord>, StoreError>;
    fn create_account(&self, jid: &BareJid, record: &AccountRecord) -> Result<(), StoreError>;
    fn set_account(&self, jid: &BareJid, record: &AccountRecord) -> Result<(), StoreError>;
});

hooked!(PubsubStore {
    fn publish_batch(&self, reqs: &[PublishRequest])
        -> Result<Vec<Result<NodeConfig, PublishError>>, StoreError>;
    fn create_node(&self, owner: &BareJid, node: &str, options: &Options, max_nodes: usize)
        -> Result<Result<NodeConfig, PublishError>, StoreError>;
    fn retract(&self, owner: &BareJid, node: &str, id: &str)
        -> Result<Option<NodeConfig>, StoreError>;
    fn node(&self, owner: &BareJid, node: &str) -> Result<Option<NodeRecord>, StoreError>;
    fn items(&self, owner: &BareJid, node: &str, budget: Budget)
        -> Result<Vec<StoredItem>, StoreError>;
    fn item(&self, owner: &BareJid, node: &str, id: &str)
        -> Result<Option<StoredItem>, StoreError>;
    fn subscribe(&self, owner: &BareJid, node: &str, jid: &Jid) -> Result<(), StoreError>;
    fn unsubscribe(&self, owner: &BareJid, node: &str, jid: &Jid) -> Result<bool, StoreError>;
    fn node_subscriptions(&self, owner: &BareJid, node: &str) -> Result<Vec<Jid>, StoreError>;
    fn subscriptions_of(&self, subscriber: &BareJid) -> Result<Vec<Subscription>, StoreError>;
    fn nodes_of(&self, owner: &BareJid) -> Result<Vec<(String, NodeConfig)>, StoreError>;
    fn configure(&self, owner: &BareJid, node: &str, options: &Options)
        -> Result<Option<NodeConfig>, StoreError>;
    fn purge(&self, owner: &BareJid, node: &str) -> Result<Option<NodeConfig>, StoreError>;
    fn delete_node(&self, owner: &BareJid, node: &str) -> Result<Option<Vec<Jid>>, StoreError>;
    fn items_page(&self, owner: &BareJid, node: &str, anchor: &Anchor, budget: Budget)
        -> Result<Option<Page>, StoreError>;
    fn all_subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;
    fn all_nodes(&self) -> Result<Vec<(BareJid, String, NodeConfig)>, StoreError>;
});

hooked!(RosterStore {
    fn roster(&self, owner: &BareJid) -> Result<Vec<(BareJid, RosterItem)>, StoreError>;
    fn roster_item(&self, owner: &BareJid, contact: &BareJid)
        -> Result<Option<RosterItem>, StoreError>;
    fn all_presence_follows(&self) -> Result<Vec<(BareJid, BareJid)>, StoreError>;
    fn roster_update(&self, owner: &BareJid, contact: &BareJid, name: Option<String>,
        groups: Vec<String>, max_items: usize) -> Result<RosterItem, StoreError>;
    fn subscription(&self, user: &BareJid, contact: &BareJid, kind: SubKind,
        contact_local: bool, quota: RosterQuota) -> Result<(RosterPair, Exchange), StoreError>;
    fn inbound_subscription(&self, contact: &BareJid, user: &BareJid, kind: SubKind,
        quota: RosterQuota) -> Result<Option<(Option<RosterItem>, Outcome)>, StoreError>;
    fn roster_remove(&self, owner: &BareJid, contact: &BareJid, contact_local: bool)
        -> Result<Option<RosterRemoval>, StoreError>;
});

hooked!(BlockStore {
    fn blocklist(&self, owner: &BareJid) -> Result<Vec<Jid>, StoreError>;
    fn all_blocks(&self) -> Result<Vec<(BareJid, Vec<Jid>)>, StoreError>;
    fn set_blocked(&self, owner: &BareJid, jids: &[Jid], block: bool, max_items: usize)
        -> Result<Vec<Jid>, StoreError>;
});

hooked!(MaintenanceStore {
    fn schema_version(&self) -> Result<u64, StoreError>;
    fn seed(&self, seed: &Seed) -> Result<(), StoreError>;
    fn delete_account(&self, jid: &BareJid) -> Result<Deleted, StoreError>;
});

hooked!(StatusStore {
    fn status(&self, id: u64) -> Result<Option<Status>, StoreError>;
    fn status_id(&self, owner: &BareJid, item_id: &str) -> Result<Option<u64>, StoreError>;
    fn statuses_by(&self, authors: &[BareJid], range: StatusRange, limit: usize)
        -> Result<Vec<Status>, StoreError>;
    fn all_statuses(&self, range: StatusRange, limit: usize, scan: usize,
        keep: &mut dyn FnMut(&BareJid) -> bool) -> Result<Vec<Status>, StoreError>;
});

hooked!(TokenStore {
    fn create_app(&self, app: &AppRecord) -> Result<(), StoreError>;
    fn app(&self, client_id: &str) -> Result<Option<AppRecord>, StoreError>;
    fn create_token(&self, hash: &[u8; 32], token: &TokenRecord, max: usize)
        -> Result<(), StoreError>;
    fn token(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError>;
    fn revoke_token(&self, hash: &[u8; 32]) -> Result<bool, StoreError>;
    fn token_count(&self, jid: &BareJid) -> Result<usize, StoreError>;
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Redb;

    #[test]
    fn a_hook_fails_calls_or_commits_first() {
        let dir = tempfile::tempdir().unwrap();
        let h = Hooked::new(Arc::new(Redb::open(dir.path()).unwrap()));
        let jane = BareJid::new("jane@example.org").unwrap();
        let joe = BareJid::new("joe@example.org").unwrap();
        h.set(|call, _| match call {
            "roster" => Err(Hooked::injected()),
            _ => Ok(()),
        });
        assert!(matches!(h.roster(&jane), Err(StoreError::Backend(_))));
        assert!(h.roster_item(&jane, &joe).unwrap().is_none());
        // A write committed by the hook is seen by the call it precedes.
        h.set(move |call, inner| {
            if call == "roster_item" {
                let j = BareJid::new("jane@example.org").unwrap();
                let o = BareJid::new("joe@example.org").unwrap();
                inner.roster_update(&j, &o, None, Vec::new(), 10)?;
            }
            Ok(())
        });
        assert!(h.roster_item(&jane, &joe).unwrap().is_some());
        h.clear();
        assert_eq!(h.roster(&jane).unwrap().len(), 1);
    }
}

//! The store on redb.
//!
//! Why redb: an embedded, pure-Rust, ACID key-value store with
//! copy-on-write B-trees and an fsync on every `Immediate` commit, so an
//! acknowledged write survives `kill -9` and power loss, with no C
//! dependency and no server to run. (SQLite would do too; redb keeps the
//! build pure Rust and its typed tables fit the few record kinds here.)
//!
//! The store carries a schema version in its `meta` table and migrates
//! older files at open. Accounts keep SCRAM keys per hash (salt, iteration
//! count, StoredKey, ServerKey), never a password.
//!
//! One module per concern implements that concern's trait; this one
//! opens the file, migrates it, and holds the tables and key helpers they
//! share.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use stanza::BareJid;

use super::StoreError;

mod accounts;
mod blocks;
mod delete;
mod maintenance;
mod pubsub;
mod rosters;
mod statuses;
mod tokens;

pub(super) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
pub(super) const ACCOUNTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("accounts");
/// `owner NUL node` -> [`NodeRecord`] (JSON).
pub(super) const NODES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("nodes");
/// (`owner NUL node`, sequence) -> [`StoredItem`] (JSON); the sequence
/// orders items oldest to newest.
pub(super) const ITEMS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("items");
/// (`owner NUL node`, item id) -> sequence.
pub(super) const ITEM_IDS: TableDefinition<'_, (&str, &str), u64> =
    TableDefinition::new("item_ids");

/// (`owner NUL node`, subscriber JID, bare or full) -> subscription state.
pub(super) const SUBS: TableDefinition<'_, (&str, &str), &str> =
    TableDefinition::new("subscriptions");

/// (owner, contact bare JID) -> [`RosterItem`] (JSON).
pub(super) const ROSTER: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("roster");

/// (subscriber bare JID, `owner NUL node`, subscribed JID) -> (): the
/// subscriptions index by subscriber, for "what do I follow".
pub(super) const SUBS_BY: TableDefinition<'_, (&str, &str, &str), ()> =
    TableDefinition::new("subs_by");

/// (owner, blocked JID) -> () (XEP-0191).
pub(super) const BLOCKS: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("blocks");

/// redb's page cache unless configured (`store_cache_mib`). redb's own
/// default (1 GiB) lets a busy server's RSS grow with every page it ever
/// wrote. redb reads its file with `pread`, so the OS page cache holds the
/// file anyway and a page missed here costs a copy, not a disk read: at
/// 19,000 idle sessions 64 MiB held about 1 KiB per session, and 8 MiB
/// cost logins a few per cent of CPU (#11, `results/`).
pub const DEFAULT_CACHE_BYTES: usize = 8 << 20;

/// The schema this build writes. 1: accounts. 2: PEP nodes and items.
/// 3: explicit subscriptions. 4: rosters, block lists, and the
/// subscriptions index by subscriber. 5: status ids, API applications and
/// tokens.
pub const SCHEMA_VERSION: u64 = 5;
pub(super) fn node_key(owner: &BareJid, node: &str) -> String {
    // NUL cannot occur in a JID or in XML text, so the key is unambiguous.
    format!("{owner}\u{0}{node}")
}

/// The (owner, node) a [`node_key`] was made from.
pub(super) fn split_node_key(key: &str) -> Result<(BareJid, &str), StoreError> {
    let corrupt = || StoreError::Corrupt(key.to_owned(), "bad node key".into());
    let (owner, node) = key.split_once('\u{0}').ok_or_else(corrupt)?;
    Ok((BareJid::new(owner).map_err(|_| corrupt())?, node))
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(what.to_owned(), e.to_string()))
}

pub(super) fn parse_jid(s: &str) -> Result<BareJid, StoreError> {
    BareJid::new(s).map_err(|_| StoreError::Corrupt(s.to_owned(), "bad JID".into()))
}

macro_rules! backend_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Backend(Box::new(e))
            }
        }
    )*};
}
backend_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The store. Cheap to share behind an `Arc`; redb serializes writers.
#[derive(Debug)]
pub struct Redb {
    db: Database,
    path: PathBuf,
}

impl Redb {
    /// Opens (or creates) `dir/starling.redb`, migrating older schemas,
    /// with the default page cache.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`Self::open`] with a page cache of at most `cache_bytes`. Each
    /// login reads its account through it, so it fills with about 1 KB per
    /// account that logged in (#11), up to this bound.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("starling.redb");
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(&path)?;
        // Password-equivalent SCRAM keys and private posts: owner only.
        crate::files::restrict(&path).map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
        let store = Self { db, path };
        store.migrate()?;
        Ok(store)
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        // Done after the meta table is closed: it allocates ids there.
        let mut backfill = false;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::TooNew {
                        found: v,
                        supported: SCHEMA_VERSION,
                    })
                }
                Some(v) if v == SCHEMA_VERSION => {}
                // Each step upgrades from the version before it; a fresh
                // file (no version) runs them all.
                found => {
                    let from = found.unwrap_or(0);
                    if from < 1 {
                        tx.open_table(ACCOUNTS)?;
                    }
                    if from < 2 {
                        tx.open_table(NODES)?;
                        tx.open_table(ITEMS)?;
                        tx.open_table(ITEM_IDS)?;
                    }
                    if from < 3 {
                        tx.open_table(SUBS)?;
                    }
                    if from < 4 {
                        tx.open_table(ROSTER)?;
                        tx.open_table(BLOCKS)?;
                        let subs = tx.open_table(SUBS)?;
                        let mut by = tx.open_table(SUBS_BY)?;
                        for entry in subs.iter()? {
                            let (k, _) = entry?;
                            let (nk, jid) = k.value();
                            let bare = jid.split('/').next().unwrap_or(jid);
                            by.insert((bare, nk, jid), ())?;
                        }
                    }
                    if from < 5 {
                        tx.open_table(tokens::APPS)?;
                        tx.open_table(tokens::TOKENS)?;
                        tx.open_table(tokens::TOKENS_BY)?;
                        tx.open_table(statuses::STATUSES)?;
                        tx.open_table(statuses::AUTHOR_STATUSES)?;
                        tx.open_table(statuses::STATUS_IDS)?;
                        backfill = true;
                    }
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
        }
        if backfill {
            statuses::backfill(&tx)?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::{NodeConfig, Options, StoredItem};
    use crate::sasl::Hash;
    use crate::store::prelude::*;
    use crate::store::{AccountRecord, Budget, PublishError, PublishRequest};

    #[test]
    fn accounts_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let jane = BareJid::new("jane@example.org").unwrap();
        {
            let s = Redb::open(dir.path()).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            s.create_account(&jane, &AccountRecord::new("secret", 4096))
                .unwrap();
            assert!(matches!(
                s.create_account(&jane, &AccountRecord::new("x", 4096)),
                Err(StoreError::Exists(_))
            ));
        }
        let s = Redb::open(dir.path()).unwrap();
        let rec = s.account(&jane).unwrap().unwrap();
        assert!(rec.keys(Hash::Sha1).unwrap().verify_password("secret"));
        assert!(rec.keys(Hash::Sha256).unwrap().verify_password("secret"));
        // No password is stored, only derived keys.
        let raw = std::fs::read(s.path()).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"secret"));
        s.set_account(&jane, &AccountRecord::new("new", 4096))
            .unwrap();
        assert!(s
            .account(&jane)
            .unwrap()
            .unwrap()
            .keys(Hash::Sha1)
            .unwrap()
            .verify_password("new"));
        s.delete_account(&jane).unwrap();
        assert!(s.account(&jane).unwrap().is_none());
        assert!(matches!(
            s.delete_account(&jane),
            Err(StoreError::NotFound(_))
        ));
    }

    fn item(id: &str) -> StoredItem {
        StoredItem {
            id: id.into(),
            publisher: "jane@example.org".into(),
            payload: format!(
                "<entry xmlns='http://www.w3.org/2005/Atom'><title>{id}</title></entry>"
            ),
            published_ms: 1,
        }
    }

    fn publish(s: &Redb, id: &str, options: Option<Options>) -> Result<NodeConfig, PublishError> {
        let req = PublishRequest {
            owner: BareJid::new("jane@example.org").unwrap(),
            node: "urn:xmpp:microblog:0".into(),
            item: item(id),
            options,
            max_nodes: 100,
        };
        s.publish_batch(std::slice::from_ref(&req))
            .unwrap()
            .pop()
            .unwrap()
    }

    #[test]
    fn items_replace_trim_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let jane = BareJid::new("jane@example.org").unwrap();
        let node = "urn:xmpp:microblog:0";
        {
            let s = Redb::open(dir.path()).unwrap();
            let opts = Options {
                max_items: Some(Some(3)),
                ..Options::default()
            };
            publish(&s, "a", Some(opts.clone())).unwrap();
            for id in ["b", "c", "a", "d"] {
                publish(&s, id, None).unwrap();
            }
            // "a" was republished (newest then), and max_items is 3.
            let ids: Vec<_> = s
                .items(&jane, node, Budget::UNLIMITED)
                .unwrap()
                .into_iter()
                .map(|i| i.id)
                .collect();
            assert_eq!(ids, ["c", "a", "d"]);
            assert!(s.item(&jane, node, "b").unwrap().is_none());
            // Options that disagree are refused and write nothing.
            let bad = Options {
                max_items: Some(Some(5)),
                ..Options::default()
            };
            assert!(matches!(
                publish(&s, "e", Some(bad)),
                Err(PublishError::PreconditionNotMet)
            ));
            assert!(publish(&s, "e", Some(opts)).is_ok());
        }
        let s = Redb::open(dir.path()).unwrap();
        let ids: Vec<_> = s
            .items(&jane, node, Budget::items(2))
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["d", "e"]);
        assert_eq!(s.item(&jane, node, "a").unwrap().unwrap().id, "a");
        assert!(s.item(&jane, node, "c").unwrap().is_none(), "evicted by e");
        assert_eq!(s.node(&jane, node).unwrap().unwrap().count, 3);
        assert!(s.retract(&jane, node, "a").unwrap().is_some());
        assert!(
            s.retract(&jane, node, "a").unwrap().is_none(),
            "already gone"
        );
        assert!(s.retract(&jane, "urn:example:none", "a").unwrap().is_none());
        let ids: Vec<_> = s
            .items(&jane, node, Budget::UNLIMITED)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["d", "e"]);
        assert_eq!(s.node(&jane, node).unwrap().unwrap().count, 2);
    }

    #[test]
    fn migrates_a_version_3_file_indexing_its_subscriptions() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A v3 file: subscriptions, and no roster, blocks or index.
            let db = Database::create(dir.path().join("starling.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(ACCOUNTS).unwrap();
            tx.open_table(NODES).unwrap();
            tx.open_table(ITEMS).unwrap();
            tx.open_table(ITEM_IDS).unwrap();
            tx.open_table(SUBS)
                .unwrap()
                .insert(
                    ("jane@example.org\u{0}n", "joe@example.org/phone"),
                    "subscribed",
                )
                .unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", 3)
                .unwrap();
            tx.commit().unwrap();
        }
        let s = Redb::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let joe = BareJid::new("joe@example.org").unwrap();
        let mine = s.subscriptions_of(&joe).unwrap();
        assert_eq!(mine.len(), 1, "the v3 subscription is in the new index");
        assert_eq!(mine[0].jid.as_str(), "joe@example.org/phone");
        assert!(s.roster(&joe).unwrap().is_empty());
        assert!(s.blocklist(&joe).unwrap().is_empty());
    }

    #[test]
    fn migrates_a_version_1_file() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join("starling.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(ACCOUNTS).unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", 1)
                .unwrap();
            tx.commit().unwrap();
        }
        let s = Redb::open(dir.path()).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(publish(&s, "a", None).is_ok());
        let jane = BareJid::new("jane@example.org").unwrap();
        let joe = stanza::Jid::new("joe@example.org/phone").unwrap();
        s.subscribe(&jane, "n", &joe).unwrap();
        let all = s.all_subscriptions().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (
                all[0].owner.as_str(),
                all[0].node.as_str(),
                all[0].jid.as_str()
            ),
            ("jane@example.org", "n", "joe@example.org/phone")
        );
        assert!(s.unsubscribe(&jane, "n", &joe).unwrap());
        assert!(!s.unsubscribe(&jane, "n", &joe).unwrap());
        assert_eq!(s.all_nodes().unwrap().len(), 1);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Redb::open(dir.path()).unwrap();
            let tx = s.db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", 99)
                .unwrap();
            tx.commit().unwrap();
        }
        assert!(matches!(
            Redb::open(dir.path()),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}

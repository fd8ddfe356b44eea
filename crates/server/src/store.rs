//! The durable store, on redb.
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
//! All calls block (disk, PBKDF2): async callers use `spawn_blocking`.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use stanza::BareJid;

use crate::pubsub::{NodeConfig, Options, StoredItem};
use crate::roster::{self, Outcome, RosterItem, SubKind};
use crate::sasl::{Hash, ScramKeys};

mod delete;
pub use delete::Deleted;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const ACCOUNTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("accounts");
/// `owner NUL node` -> [`NodeRecord`] (JSON).
const NODES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("nodes");
/// (`owner NUL node`, sequence) -> [`StoredItem`] (JSON); the sequence
/// orders items oldest to newest.
const ITEMS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("items");
/// (`owner NUL node`, item id) -> sequence.
const ITEM_IDS: TableDefinition<'_, (&str, &str), u64> = TableDefinition::new("item_ids");

/// (`owner NUL node`, subscriber JID, bare or full) -> subscription state.
const SUBS: TableDefinition<'_, (&str, &str), &str> = TableDefinition::new("subscriptions");

/// (owner, contact bare JID) -> [`RosterItem`] (JSON).
const ROSTER: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("roster");

/// (subscriber bare JID, `owner NUL node`, subscribed JID) -> (): the
/// subscriptions index by subscriber, for "what do I follow".
const SUBS_BY: TableDefinition<'_, (&str, &str, &str), ()> = TableDefinition::new("subs_by");

/// (owner, blocked JID) -> () (XEP-0191).
const BLOCKS: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("blocks");

/// redb's page cache. Its default (1 GiB) lets a busy server's RSS grow
/// with every page it ever wrote; the working set here (accounts, rosters,
/// node heads) is far smaller, and the OS page cache still holds the file.
const CACHE_BYTES: usize = 64 << 20;

/// The schema this build writes. 1: accounts. 2: PEP nodes and items.
/// 3: explicit subscriptions. 4: rosters, block lists, and the
/// subscriptions index by subscriber.
pub const SCHEMA_VERSION: u64 = 4;

/// What [`Store::seed`] imports.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    /// Accounts.
    pub accounts: Vec<(BareJid, AccountRecord)>,
    /// Roster items: (owner, contact, item).
    pub roster: Vec<(BareJid, BareJid, RosterItem)>,
    /// Nodes with their configuration.
    pub nodes: Vec<(BareJid, String, NodeConfig)>,
    /// Explicit subscriptions.
    pub subscriptions: Vec<Subscription>,
}

/// One stored explicit subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The node's owner.
    pub owner: BareJid,
    /// The node.
    pub node: String,
    /// The subscribed JID, bare or full.
    pub jid: stanza::Jid,
}

/// A node as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its configuration.
    pub config: NodeConfig,
    /// The next item's sequence number.
    pub next_seq: u64,
    /// Items stored now.
    pub count: u64,
}

/// One publish for [`Store::publish_batch`].
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// The node's owner.
    pub owner: BareJid,
    /// The node.
    pub node: String,
    /// The item.
    pub item: StoredItem,
    /// `<publish-options/>`, if sent.
    pub options: Option<Options>,
    /// Most nodes the owner may have: a publish that would create one more
    /// is refused.
    pub max_nodes: usize,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// publish-options disagree with the existing node.
    #[error("publish-options do not match the node configuration")]
    PreconditionNotMet,
    /// The node does not exist and the owner already has `max_nodes`.
    #[error("the owner has reached the node limit")]
    TooManyNodes,
    /// The store failed; nothing of the batch was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many nodes `owner` has, counting no further than `upto`.
fn count_nodes(
    nodes: &impl ReadableTable<&'static str, &'static [u8]>,
    owner: &BareJid,
    upto: usize,
) -> Result<usize, StoreError> {
    let prefix = format!("{owner}\u{0}");
    let mut n = 0;
    for entry in nodes.range(prefix.as_str()..)? {
        let (k, _) = entry?;
        if !k.value().starts_with(&prefix) || n >= upto {
            break;
        }
        n += 1;
    }
    Ok(n)
}

fn node_key(owner: &BareJid, node: &str) -> String {
    // NUL cannot occur in a JID or in XML text, so the key is unambiguous.
    format!("{owner}\u{0}{node}")
}

/// The (owner, node) a [`node_key`] was made from.
fn split_node_key(key: &str) -> Result<(BareJid, &str), StoreError> {
    let corrupt = || StoreError::Corrupt(key.to_owned(), "bad node key".into());
    let (owner, node) = key.split_once('\u{0}').ok_or_else(corrupt)?;
    Ok((BareJid::new(owner).map_err(|_| corrupt())?, node))
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(what.to_owned(), e.to_string()))
}

/// Where an RSM page starts (XEP-0059 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// From the oldest item (no `<before/>` or `<after/>`).
    First,
    /// The newest page (an empty `<before/>`).
    Last,
    /// At this position (`<index/>`).
    Index(u64),
    /// Just after this item id.
    After(String),
    /// Just before this item id.
    Before(String),
}

/// How much one reply may carry: a request must not be able to make the
/// server read and send more than this, whatever it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Most items.
    pub items: usize,
    /// Most payload bytes, all items together.
    pub bytes: usize,
}

impl Budget {
    /// No limit (tests and internal reads of known-small sets).
    pub const UNLIMITED: Self = Self {
        items: usize::MAX,
        bytes: usize::MAX,
    };
    /// At most `items` items, any size.
    pub fn items(items: usize) -> Self {
        Self {
            items,
            bytes: usize::MAX,
        }
    }
    /// Whether an item of `len` bytes still fits after `taken` items of
    /// `used` bytes.
    pub fn fits(&self, taken: usize, used: usize, len: usize) -> bool {
        taken < self.items && used.saturating_add(len) <= self.bytes
    }
}

/// One RSM page of items, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The items.
    pub items: Vec<StoredItem>,
    /// The position of the first of them in the whole list.
    pub first_index: u64,
    /// How many items the node holds.
    pub count: u64,
}

type ItemsTable<'t> = redb::Table<'t, (&'static str, u64), &'static [u8]>;
type IdsTable<'t> = redb::Table<'t, (&'static str, &'static str), u64>;

/// Drops a node's oldest items until it holds no more than its limit.
fn trim(
    items: &mut ItemsTable<'_>,
    ids: &mut IdsTable<'_>,
    key: &str,
    rec: &mut NodeRecord,
) -> Result<(), StoreError> {
    while rec.count > rec.config.item_limit() {
        let oldest = items
            .range((key, 0)..=(key, u64::MAX))?
            .next()
            .transpose()?
            .map(|(k, v)| (k.value().1, v.value().to_vec()));
        let Some((seq, bytes)) = oldest else { break };
        let item: StoredItem = decode(key, &bytes)?;
        items.remove((key, seq))?;
        ids.remove((key, item.id.as_str()))?;
        rec.count -= 1;
    }
    Ok(())
}

fn clear_items(tx: &redb::WriteTransaction, key: &str) -> Result<(), StoreError> {
    let mut items = tx.open_table(ITEMS)?;
    let mut ids = tx.open_table(ITEM_IDS)?;
    items.retain_in((key, 0)..=(key, u64::MAX), |_, _| false)?;
    let all: Vec<String> = ids
        .range((key, "")..)?
        .map_while(|e| e.ok())
        .take_while(|(k, _)| k.value().0 == key)
        .map(|(k, _)| k.value().1.to_owned())
        .collect();
    for id in all {
        ids.remove((key, id.as_str()))?;
    }
    Ok(())
}

/// One subscription stanza through both servers (RFC 6121 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The sender's half: its new item for the contact.
    pub user: Outcome,
    /// The contact's half, when the stanza reached a local account.
    pub contact: Option<Outcome>,
    /// What the contact's server answered on its own (a `subscribed` for
    /// an existing subscription or a pre-approval, an `unsubscribed` for no
    /// such account), already applied to the sender's item.
    pub reply: Option<(SubKind, Outcome)>,
}

/// (the user's item for the contact, the contact's item for the user).
pub type RosterPair = (Option<RosterItem>, Option<RosterItem>);

/// What removing a roster item did: both items before, and the
/// unsubscribe/unsubscribed exchanges it made.
#[derive(Debug, Clone)]
pub struct RosterRemoval {
    /// (the owner's item for the contact, the contact's item for the owner)
    /// as they were inside the removing transaction.
    pub before: RosterPair,
    /// The unsubscribe and unsubscribed halves.
    pub exchanges: Vec<Exchange>,
}

type RosterTable<'t> = redb::Table<'t, (&'static str, &'static str), &'static [u8]>;

fn get_item(
    t: &RosterTable<'_>,
    owner: &BareJid,
    contact: &BareJid,
) -> Result<Option<RosterItem>, StoreError> {
    let v = t.get((owner.as_str(), contact.as_str()))?;
    v.map(|v| decode(contact.as_str(), v.value())).transpose()
}

/// How many of `owner`'s roster items satisfy `pred`, counting no further
/// than `upto`. Items are decoded only when `pred` needs them.
fn count_items(
    t: &RosterTable<'_>,
    owner: &BareJid,
    upto: usize,
    pred: impl Fn(&RosterItem) -> bool,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for entry in t.range((owner.as_str(), "")..)? {
        if n >= upto {
            break;
        }
        let (k, v) = entry?;
        let (o, c) = k.value();
        if o != owner.as_str() {
            break;
        }
        if pred(&decode(c, v.value())?) {
            n += 1;
        }
    }
    Ok(n)
}

fn put_item(
    t: &mut RosterTable<'_>,
    owner: &BareJid,
    contact: &BareJid,
    item: Option<&RosterItem>,
) -> Result<(), StoreError> {
    let key = (owner.as_str(), contact.as_str());
    match item {
        Some(it) => {
            t.insert(key, serde_json::to_vec(it)?.as_slice())?;
        }
        None => {
            t.remove(key)?;
        }
    }
    Ok(())
}

/// Applies `kind` from `user` to `contact` inside a write transaction;
/// writes the user's side (and the reply's), returns the contact's for the
/// caller to write.
fn exchange(
    t: &mut RosterTable<'_>,
    user: &BareJid,
    contact: &BareJid,
    kind: SubKind,
    contact_exists: bool,
) -> Result<Exchange, StoreError> {
    let out = roster::outbound(get_item(t, user, contact)?.as_ref(), kind);
    put_item(t, user, contact, out.item.as_ref())?;
    let mut ex = Exchange {
        user: out,
        contact: None,
        reply: None,
    };
    if !ex.user.forward {
        return Ok(ex);
    }
    let reply = if contact_exists {
        let inb = roster::inbound(get_item(t, contact, user)?.as_ref(), kind);
        let r = inb.reply;
        ex.contact = Some(inb);
        r
    } else {
        // No such account: a request is refused (RFC 6121 §3.1.3).
        (kind == SubKind::Subscribe).then_some(SubKind::Unsubscribed)
    };
    if let Some(r) = reply {
        let back = roster::inbound(ex.user.item.as_ref(), r);
        put_item(t, user, contact, back.item.as_ref())?;
        ex.reply = Some((r, back));
    }
    Ok(ex)
}

fn parse_jid(s: &str) -> Result<BareJid, StoreError> {
    BareJid::new(s).map_err(|_| StoreError::Corrupt(s.to_owned(), "bad JID".into()))
}

/// Per-account roster quotas, checked inside the write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RosterQuota {
    /// Most roster items (hidden pending requests included).
    pub max_items: usize,
    /// Most pending incoming subscription requests.
    pub max_pending: usize,
}

impl RosterQuota {
    /// No limits (tests, seeding).
    pub const UNLIMITED: Self = Self {
        max_items: usize::MAX,
        max_pending: usize::MAX,
    };
}

/// Which quota a change would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// The user's roster is full.
    RosterItems,
    /// The contact has too many pending requests (or a full roster).
    PendingRequests,
    /// The block list is full.
    BlockList,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A per-account quota would be exceeded; nothing was written.
    #[error("quota exceeded: {0:?}")]
    Quota(Quota),
    /// The account exists already.
    #[error("account {0} exists")]
    Exists(String),
    /// No such account.
    #[error("no account {0}")]
    NotFound(String),
    /// The file was written by a newer Starling.
    #[error("store schema version {found} is newer than this build's {supported}")]
    TooNew {
        /// The version in the file.
        found: u64,
        /// The newest this build knows.
        supported: u64,
    },
    /// A record could not be decoded.
    #[error("corrupt record for {0}: {1}")]
    Corrupt(String, String),
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// SCRAM keys, one entry per hash.
    pub keys: Vec<ScramKeys>,
}

impl AccountRecord {
    /// Keys for `password` under every supported hash.
    pub fn new(password: &str, iterations: u32) -> Self {
        Self {
            keys: [Hash::Sha1, Hash::Sha256]
                .into_iter()
                .map(|h| ScramKeys::generate(h, password, iterations))
                .collect(),
        }
    }
    /// The keys for one hash.
    pub fn keys(&self, hash: Hash) -> Option<&ScramKeys> {
        self.keys.iter().find(|k| k.hash == hash)
    }
}

/// The store. Cheap to share behind an `Arc`; redb serializes writers.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) `dir/starling.redb`, migrating older schemas.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Db(format!("{}: {e}", dir.display())))?;
        let path = dir.join("starling.redb");
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)?;
        // Password-equivalent SCRAM keys and private posts: owner only.
        crate::files::restrict(&path)
            .map_err(|e| StoreError::Db(format!("{}: {e}", path.display())))?;
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
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get("schema_version")?.map_or(0, |v| v.value()))
    }

    /// Creates an account; fails if it exists. Durable when it returns.
    pub fn create_account(&self, jid: &BareJid, record: &AccountRecord) -> Result<(), StoreError> {
        self.put_account(jid, record, false)
    }

    /// Replaces an account's keys; fails if it does not exist.
    pub fn set_account(&self, jid: &BareJid, record: &AccountRecord) -> Result<(), StoreError> {
        self.put_account(jid, record, true)
    }

    fn put_account(
        &self,
        jid: &BareJid,
        record: &AccountRecord,
        must_exist: bool,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(ACCOUNTS)?;
            match (t.get(jid.as_str())?.is_some(), must_exist) {
                (true, false) => return Err(StoreError::Exists(jid.to_string())),
                (false, true) => return Err(StoreError::NotFound(jid.to_string())),
                _ => {}
            }
            let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Db(e.to_string()))?;
            t.insert(jid.as_str(), bytes.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Applies publishes in one write transaction: one fsync for the whole
    /// batch (group commit). Each result says whether that publish was
    /// applied; a refused publish writes nothing.
    pub fn publish_batch(
        &self,
        reqs: &[PublishRequest],
    ) -> Result<Vec<Result<NodeConfig, PublishError>>, StoreError> {
        let tx = self.db.begin_write()?;
        let mut out = Vec::with_capacity(reqs.len());
        {
            let mut nodes = tx.open_table(NODES)?;
            let mut items = tx.open_table(ITEMS)?;
            let mut ids = tx.open_table(ITEM_IDS)?;
            for r in reqs {
                let key = node_key(&r.owner, &r.node);
                let existing: Option<NodeRecord> = match nodes.get(key.as_str())? {
                    Some(v) => Some(decode(&key, v.value())?),
                    None => None,
                };
                let mut rec = match existing {
                    Some(rec) => {
                        if r.options.as_ref().is_some_and(|o| !o.met_by(&rec.config)) {
                            out.push(Err(PublishError::PreconditionNotMet));
                            continue;
                        }
                        rec
                    }
                    None if count_nodes(&nodes, &r.owner, r.max_nodes)? >= r.max_nodes => {
                        out.push(Err(PublishError::TooManyNodes));
                        continue;
                    }
                    None => NodeRecord {
                        config: r
                            .options
                            .clone()
                            .unwrap_or_default()
                            .apply(NodeConfig::default()),
                        next_seq: 0,
                        count: 0,
                    },
                };
                // Publishing an existing id replaces it; it becomes newest.
                let old = ids
                    .get((key.as_str(), r.item.id.as_str()))?
                    .map(|v| v.value());
                if let Some(old) = old {
                    items.remove((key.as_str(), old))?;
                    rec.count -= 1;
                }
                let seq = rec.next_seq;
                rec.next_seq += 1;
                items.insert((key.as_str(), seq), serde_json::to_vec(&r.item)?.as_slice())?;
                ids.insert((key.as_str(), r.item.id.as_str()), seq)?;
                rec.count += 1;
                trim(&mut items, &mut ids, &key, &mut rec)?;
                nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
                out.push(Ok(rec.config.clone()));
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Removes one item. `Ok(None)` when the node or the item does not
    /// exist; otherwise the node's configuration. Durable when it returns.
    pub fn retract(
        &self,
        owner: &BareJid,
        node: &str,
        id: &str,
    ) -> Result<Option<NodeConfig>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let config = {
            let mut nodes = tx.open_table(NODES)?;
            let mut items = tx.open_table(ITEMS)?;
            let mut ids = tx.open_table(ITEM_IDS)?;
            let rec: Option<NodeRecord> = match nodes.get(key.as_str())? {
                Some(v) => Some(decode(&key, v.value())?),
                None => None,
            };
            let Some(mut rec) = rec else { return Ok(None) };
            let seq = ids.remove((key.as_str(), id))?.map(|v| v.value());
            let Some(seq) = seq else { return Ok(None) };
            items.remove((key.as_str(), seq))?;
            rec.count = rec.count.saturating_sub(1);
            nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
            rec.config
        };
        tx.commit()?;
        Ok(Some(config))
    }

    /// A node's record.
    pub fn node(&self, owner: &BareJid, node: &str) -> Result<Option<NodeRecord>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NODES)?;
        let v = t.get(key.as_str())?;
        v.map(|v| decode(&key, v.value())).transpose()
    }

    /// The newest items that fit `budget`, oldest first.
    pub fn items(
        &self,
        owner: &BareJid,
        node: &str,
        budget: Budget,
    ) -> Result<Vec<StoredItem>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ITEMS)?;
        let mut out = Vec::new();
        let mut used = 0;
        for entry in t.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))?.rev() {
            let (_, v) = entry?;
            // The stored record's length bounds the payload's: checked
            // before decoding, so an over-budget item costs no copy.
            let len = v.value().len();
            if !budget.fits(out.len(), used, len) {
                break;
            }
            used += len;
            out.push(decode(&key, v.value())?);
        }
        out.reverse();
        Ok(out)
    }

    /// One item by id.
    pub fn item(
        &self,
        owner: &BareJid,
        node: &str,
        id: &str,
    ) -> Result<Option<StoredItem>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_read()?;
        let Some(seq) = tx
            .open_table(ITEM_IDS)?
            .get((key.as_str(), id))?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let t = tx.open_table(ITEMS)?;
        let v = t.get((key.as_str(), seq))?;
        v.map(|v| decode(&key, v.value())).transpose()
    }

    /// Records an explicit subscription. Durable when it returns.
    pub fn subscribe(
        &self,
        owner: &BareJid,
        node: &str,
        jid: &stanza::Jid,
    ) -> Result<(), StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        tx.open_table(SUBS)?
            .insert((key.as_str(), jid.as_str()), "subscribed")?;
        tx.open_table(SUBS_BY)?
            .insert((jid.to_bare().as_str(), key.as_str(), jid.as_str()), ())?;
        tx.commit()?;
        Ok(())
    }

    /// Removes an explicit subscription; false when there was none.
    pub fn unsubscribe(
        &self,
        owner: &BareJid,
        node: &str,
        jid: &stanza::Jid,
    ) -> Result<bool, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let existed = tx
            .open_table(SUBS)?
            .remove((key.as_str(), jid.as_str()))?
            .is_some();
        tx.open_table(SUBS_BY)?
            .remove((jid.to_bare().as_str(), key.as_str(), jid.as_str()))?;
        tx.commit()?;
        Ok(existed)
    }

    /// The subscribers of one node, bare or full.
    pub fn node_subscriptions(
        &self,
        owner: &BareJid,
        node: &str,
    ) -> Result<Vec<stanza::Jid>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SUBS)?;
        let mut out = Vec::new();
        for entry in t.range((key.as_str(), "")..)? {
            let (k, _) = entry?;
            let (nk, jid) = k.value();
            if nk != key {
                break;
            }
            out.push(
                stanza::Jid::new(jid).map_err(|_| {
                    StoreError::Corrupt(nk.to_owned(), "bad subscription JID".into())
                })?,
            );
        }
        Ok(out)
    }

    /// Every subscription held by `subscriber`'s account, by any of its
    /// JIDs (XEP-0060 §5.6).
    pub fn subscriptions_of(&self, subscriber: &BareJid) -> Result<Vec<Subscription>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SUBS_BY)?;
        let mut out = Vec::new();
        for entry in t.range((subscriber.as_str(), "", "")..)? {
            let (k, _) = entry?;
            let (bare, nk, jid) = k.value();
            if bare != subscriber.as_str() {
                break;
            }
            let (owner, node) = split_node_key(nk)?;
            out.push(Subscription {
                owner,
                node: node.to_owned(),
                jid: stanza::Jid::new(jid).map_err(|_| {
                    StoreError::Corrupt(nk.to_owned(), "bad subscription JID".into())
                })?,
            });
        }
        Ok(out)
    }

    /// `owner`'s nodes with their configurations.
    pub fn nodes_of(&self, owner: &BareJid) -> Result<Vec<(String, NodeConfig)>, StoreError> {
        let prefix = node_key(owner, "");
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NODES)?;
        let mut out = Vec::new();
        for entry in t.range(prefix.as_str()..)? {
            let (k, v) = entry?;
            let key = k.value();
            let Some(node) = key.strip_prefix(prefix.as_str()) else {
                break;
            };
            let rec: NodeRecord = decode(key, v.value())?;
            out.push((node.to_owned(), rec.config));
        }
        Ok(out)
    }

    /// Changes a node's configuration (XEP-0060 §8.2.3); `None` when there
    /// is no such node. Items beyond a lowered limit are dropped, oldest
    /// first. Durable when it returns.
    pub fn configure(
        &self,
        owner: &BareJid,
        node: &str,
        options: &Options,
    ) -> Result<Option<NodeConfig>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let config = {
            let mut nodes = tx.open_table(NODES)?;
            let rec: Option<NodeRecord> = match nodes.get(key.as_str())? {
                Some(v) => Some(decode(&key, v.value())?),
                None => None,
            };
            let Some(mut rec) = rec else { return Ok(None) };
            rec.config = options.apply(rec.config);
            let mut items = tx.open_table(ITEMS)?;
            let mut ids = tx.open_table(ITEM_IDS)?;
            trim(&mut items, &mut ids, &key, &mut rec)?;
            nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
            rec.config
        };
        tx.commit()?;
        Ok(Some(config))
    }

    /// Removes every item of a node (XEP-0060 §8.5); `None` when there is
    /// no such node, else its configuration. Durable when it returns.
    pub fn purge(&self, owner: &BareJid, node: &str) -> Result<Option<NodeConfig>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let config = {
            let mut nodes = tx.open_table(NODES)?;
            let rec: Option<NodeRecord> = match nodes.get(key.as_str())? {
                Some(v) => Some(decode(&key, v.value())?),
                None => None,
            };
            let Some(mut rec) = rec else { return Ok(None) };
            clear_items(&tx, &key)?;
            rec.count = 0;
            nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
            rec.config
        };
        tx.commit()?;
        Ok(Some(config))
    }

    /// Deletes a node with its items and subscriptions (XEP-0060 §8.4).
    /// Returns the subscriptions it had, or `None` when there was no such
    /// node. Durable when it returns.
    pub fn delete_node(
        &self,
        owner: &BareJid,
        node: &str,
    ) -> Result<Option<Vec<stanza::Jid>>, StoreError> {
        let key = node_key(owner, node);
        let tx = self.db.begin_write()?;
        let mut subs = Vec::new();
        {
            if tx.open_table(NODES)?.remove(key.as_str())?.is_none() {
                return Ok(None);
            }
            clear_items(&tx, &key)?;
            let mut t = tx.open_table(SUBS)?;
            let mut by = tx.open_table(SUBS_BY)?;
            // The subscribers as of this transaction: one added just
            // before must go too, not linger without its node.
            for raw in delete::prefixed_keys(&t, &key)? {
                let j = stanza::Jid::new(&raw)
                    .map_err(|_| StoreError::Corrupt(raw.clone(), "bad subscription JID".into()))?;
                t.remove((key.as_str(), raw.as_str()))?;
                by.remove((j.to_bare().as_str(), key.as_str(), raw.as_str()))?;
                subs.push(j);
            }
        }
        tx.commit()?;
        Ok(Some(subs))
    }

    /// One page of a node's items for RSM (XEP-0059), over the items
    /// ordered oldest to newest. `None` when the anchor item is unknown.
    pub fn items_page(
        &self,
        owner: &BareJid,
        node: &str,
        anchor: &Anchor,
        budget: Budget,
    ) -> Result<Option<Page>, StoreError> {
        let max = budget.items;
        let key = node_key(owner, node);
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ITEMS)?;
        // The sequence numbers only: cheap, and nodes are bounded by
        // MAX_ITEMS_CEILING.
        let mut seqs = Vec::new();
        for entry in t.range((key.as_str(), 0)..=(key.as_str(), u64::MAX))? {
            seqs.push(entry?.0.value().1);
        }
        let n = seqs.len();
        let pos_of = |id: &str| -> Result<Option<usize>, StoreError> {
            let ids = tx.open_table(ITEM_IDS)?;
            let seq = ids.get((key.as_str(), id))?.map(|v| v.value());
            Ok(seq.and_then(|s| seqs.binary_search(&s).ok()))
        };
        let (start, end) = match anchor {
            Anchor::First => (0, max.min(n)),
            Anchor::Last => (n.saturating_sub(max), n),
            Anchor::Index(i) => {
                let i = (*i as usize).min(n);
                (i, (i + max).min(n))
            }
            Anchor::After(id) => match pos_of(id)? {
                None => return Ok(None),
                Some(p) => (p + 1, (p + 1 + max).min(n)),
            },
            Anchor::Before(id) => match pos_of(id)? {
                None => return Ok(None),
                Some(p) => (p.saturating_sub(max), p),
            },
        };
        // Past the byte budget the page is cut short on the side away from
        // the anchor, so the client's next <before/> or <after/> from this
        // page's edge continues where it stopped.
        let backward = matches!(anchor, Anchor::Last | Anchor::Before(_));
        let range = &seqs[start..end];
        let mut items = Vec::with_capacity(range.len());
        let mut used = 0;
        let mut first = start;
        let order: Box<dyn Iterator<Item = (usize, &u64)>> = if backward {
            Box::new(range.iter().enumerate().rev())
        } else {
            Box::new(range.iter().enumerate())
        };
        for (i, &seq) in order {
            if let Some(v) = t.get((key.as_str(), seq))? {
                let len = v.value().len();
                if !budget.fits(items.len(), used, len) {
                    break;
                }
                used += len;
                items.push(decode(&key, v.value())?);
                if backward {
                    first = start + i;
                }
            }
        }
        if backward {
            items.reverse();
        }
        Ok(Some(Page {
            items,
            first_index: first as u64,
            count: n as u64,
        }))
    }

    /// Every explicit subscription, to rebuild the fan-out registry at start.
    pub fn all_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(SUBS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, _) = entry?;
            let (node_key, jid) = k.value();
            let (owner, node) = split_node_key(node_key)?;
            out.push(Subscription {
                owner,
                node: node.to_owned(),
                jid: stanza::Jid::new(jid).map_err(|_| {
                    StoreError::Corrupt(node_key.to_owned(), "bad subscription JID".into())
                })?,
            });
        }
        Ok(out)
    }

    /// Every node, with its owner and configuration, to rebuild access
    /// rules at start.
    pub fn all_nodes(&self) -> Result<Vec<(BareJid, String, NodeConfig)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(NODES)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let key = k.value();
            let (owner, node) = split_node_key(key)?;
            let rec: NodeRecord = decode(key, v.value())?;
            out.push((owner, node.to_owned(), rec.config));
        }
        Ok(out)
    }

    /// Every item of `owner`'s roster, hidden pending-in requests included.
    pub fn roster(&self, owner: &BareJid) -> Result<Vec<(BareJid, RosterItem)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ROSTER)?;
        let mut out = Vec::new();
        for entry in t.range((owner.as_str(), "")..)? {
            let (k, v) = entry?;
            let (o, c) = k.value();
            if o != owner.as_str() {
                break;
            }
            out.push((parse_jid(c)?, decode(c, v.value())?));
        }
        Ok(out)
    }

    /// One roster item.
    pub fn roster_item(
        &self,
        owner: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ROSTER)?;
        let v = t.get((owner.as_str(), contact.as_str()))?;
        v.map(|v| decode(contact.as_str(), v.value())).transpose()
    }

    /// Every (owner, contact) whose item has a `from` or `both`
    /// subscription: the presence follows, to rebuild the fan-out index.
    pub fn all_presence_follows(&self) -> Result<Vec<(BareJid, BareJid)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ROSTER)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let (o, c) = k.value();
            let item: RosterItem = decode(c, v.value())?;
            if item.sub.from() {
                out.push((parse_jid(o)?, parse_jid(c)?));
            }
        }
        Ok(out)
    }

    /// Adds or updates a roster item's name and groups (RFC 6121 §2.3).
    /// Durable when it returns.
    pub fn roster_update(
        &self,
        owner: &BareJid,
        contact: &BareJid,
        name: Option<String>,
        groups: Vec<String>,
        max_items: usize,
    ) -> Result<RosterItem, StoreError> {
        let tx = self.db.begin_write()?;
        let item = {
            let mut t = tx.open_table(ROSTER)?;
            let existing = get_item(&t, owner, contact)?;
            if existing.is_none() && count_items(&t, owner, max_items, |_| true)? >= max_items {
                return Err(StoreError::Quota(Quota::RosterItems));
            }
            let mut item = existing.unwrap_or_default();
            item.name = name;
            item.groups = groups;
            item.listed = true;
            put_item(&mut t, owner, contact, Some(&item))?;
            item
        };
        tx.commit()?;
        Ok(item)
    }

    /// Runs one subscription stanza from `user` about `contact` through
    /// both servers' state machines in one transaction (RFC 6121 §3).
    /// `contact_local`: the contact's account is served here; otherwise
    /// only the user's half runs. Durable when it returns.
    pub fn subscription(
        &self,
        user: &BareJid,
        contact: &BareJid,
        kind: SubKind,
        contact_local: bool,
        quota: RosterQuota,
    ) -> Result<(RosterPair, Exchange), StoreError> {
        let tx = self.db.begin_write()?;
        let ex = {
            let mut t = tx.open_table(ROSTER)?;
            // Both items as they were, read in the transaction that changes
            // them (the caller updates the fan-out registry from these).
            let before = (get_item(&t, user, contact)?, get_item(&t, contact, user)?);
            let contact_exists =
                contact_local && tx.open_table(ACCOUNTS)?.get(contact.as_str())?.is_some();
            // A subscribe is the one stanza that makes new items: on the
            // user's side (pending out) and on the contact's (pending in).
            if kind == SubKind::Subscribe {
                if before.0.is_none()
                    && count_items(&t, user, quota.max_items, |_| true)? >= quota.max_items
                {
                    return Err(StoreError::Quota(Quota::RosterItems));
                }
                if contact_exists && before.1.is_none() {
                    let full =
                        count_items(&t, contact, quota.max_items, |_| true)? >= quota.max_items;
                    let pending = count_items(&t, contact, quota.max_pending, |i| i.pending_in)?;
                    if full || pending >= quota.max_pending {
                        return Err(StoreError::Quota(Quota::PendingRequests));
                    }
                }
            }
            let ex = exchange(&mut t, user, contact, kind, contact_exists)?;
            if let Some(i) = &ex.contact {
                put_item(&mut t, contact, user, i.item.as_ref())?;
            }
            (before, ex)
        };
        tx.commit()?;
        Ok(ex)
    }

    /// Removes a roster item (RFC 6121 §2.5): cancels the subscription both
    /// ways as `unsubscribe` and `unsubscribed` would, then deletes it.
    /// Returns the two exchanges, for their pushes and routing.
    pub fn roster_remove(
        &self,
        owner: &BareJid,
        contact: &BareJid,
        contact_local: bool,
    ) -> Result<Option<RosterRemoval>, StoreError> {
        let tx = self.db.begin_write()?;
        let out = {
            let mut t = tx.open_table(ROSTER)?;
            // Both items as they were, read in the same transaction that
            // changes them: the caller updates the fan-out registry from
            // these, and a state read before the transaction could already
            // be stale.
            let before = (get_item(&t, owner, contact)?, get_item(&t, contact, owner)?);
            if before.0.is_none() {
                return Ok(None);
            }
            let contact_exists =
                contact_local && tx.open_table(ACCOUNTS)?.get(contact.as_str())?.is_some();
            let mut exchanges = Vec::new();
            for kind in [SubKind::Unsubscribe, SubKind::Unsubscribed] {
                let ex = exchange(&mut t, owner, contact, kind, contact_exists)?;
                if let Some(i) = &ex.contact {
                    put_item(&mut t, contact, owner, i.item.as_ref())?;
                }
                exchanges.push(ex);
            }
            put_item(&mut t, owner, contact, None)?;
            RosterRemoval { before, exchanges }
        };
        tx.commit()?;
        Ok(Some(out))
    }

    /// `owner`'s block list (XEP-0191).
    pub fn blocklist(&self, owner: &BareJid) -> Result<Vec<stanza::Jid>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BLOCKS)?;
        let mut out = Vec::new();
        for entry in t.range((owner.as_str(), "")..)? {
            let (k, _) = entry?;
            let (o, j) = k.value();
            if o != owner.as_str() {
                break;
            }
            out.push(
                stanza::Jid::new(j)
                    .map_err(|_| StoreError::Corrupt(j.to_owned(), "bad blocked JID".into()))?,
            );
        }
        Ok(out)
    }

    /// Every account's block list, to rebuild the fan-out index.
    pub fn all_blocks(&self) -> Result<Vec<(BareJid, Vec<stanza::Jid>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BLOCKS)?;
        let mut out: Vec<(BareJid, Vec<stanza::Jid>)> = Vec::new();
        for entry in t.iter()? {
            let (k, _) = entry?;
            let (o, j) = k.value();
            let j = stanza::Jid::new(j)
                .map_err(|_| StoreError::Corrupt(j.to_owned(), "bad blocked JID".into()))?;
            match out.last_mut() {
                Some((owner, list)) if owner.as_str() == o => list.push(j),
                _ => out.push((parse_jid(o)?, vec![j])),
            }
        }
        Ok(out)
    }

    /// Adds (`block`) or removes JIDs from `owner`'s block list; an empty
    /// `jids` with `block == false` clears it. Returns the JIDs whose state
    /// changed. A block that would take the list past `max_items` writes
    /// nothing and fails with [`Quota::BlockList`]. Durable when it returns.
    pub fn set_blocked(
        &self,
        owner: &BareJid,
        jids: &[stanza::Jid],
        block: bool,
        max_items: usize,
    ) -> Result<Vec<stanza::Jid>, StoreError> {
        let all = if !block && jids.is_empty() {
            self.blocklist(owner)?
        } else {
            jids.to_vec()
        };
        let tx = self.db.begin_write()?;
        let mut changed = Vec::new();
        {
            let mut t = tx.open_table(BLOCKS)?;
            for j in all {
                let key = (owner.as_str(), j.as_str());
                let did = if block {
                    t.insert(key, ())?.is_none()
                } else {
                    t.remove(key)?.is_some()
                };
                if did {
                    changed.push(j);
                }
            }
            if block {
                let mut n = 0;
                for entry in t.range((owner.as_str(), "")..)? {
                    if entry?.0.value().0 != owner.as_str() || n > max_items {
                        break;
                    }
                    n += 1;
                }
                if n > max_items {
                    // Dropping the transaction uncommitted writes nothing.
                    return Err(StoreError::Quota(Quota::BlockList));
                }
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    /// Imports accounts, roster items, nodes and subscriptions in one
    /// transaction, for load-test set-up (loadgen seeds an embedded server
    /// this way instead of running thousands of subscription exchanges).
    /// Existing records with the same keys are replaced; an existing node
    /// keeps its items.
    pub fn seed(&self, seed: &Seed) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut accounts = tx.open_table(ACCOUNTS)?;
            for (jid, rec) in &seed.accounts {
                accounts.insert(jid.as_str(), serde_json::to_vec(rec)?.as_slice())?;
            }
            let mut roster = tx.open_table(ROSTER)?;
            for (owner, contact, item) in &seed.roster {
                put_item(&mut roster, owner, contact, Some(item))?;
            }
            let mut nodes = tx.open_table(NODES)?;
            for (owner, node, config) in &seed.nodes {
                let key = node_key(owner, node);
                let rec = match nodes.get(key.as_str())? {
                    Some(v) => {
                        let mut r: NodeRecord = decode(&key, v.value())?;
                        r.config = config.clone();
                        r
                    }
                    None => NodeRecord {
                        config: config.clone(),
                        next_seq: 0,
                        count: 0,
                    },
                };
                nodes.insert(key.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
            }
            let mut subs = tx.open_table(SUBS)?;
            let mut by = tx.open_table(SUBS_BY)?;
            for s in &seed.subscriptions {
                let key = node_key(&s.owner, &s.node);
                subs.insert((key.as_str(), s.jid.as_str()), "subscribed")?;
                by.insert((s.jid.to_bare().as_str(), key.as_str(), s.jid.as_str()), ())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// An account's record.
    pub fn account(&self, jid: &BareJid) -> Result<Option<AccountRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ACCOUNTS)?;
        let Some(v) = t.get(jid.as_str())? else {
            return Ok(None);
        };
        decode(jid.as_str(), v.value()).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let jane = BareJid::new("jane@example.org").unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
            s.create_account(&jane, &AccountRecord::new("secret", 4096))
                .unwrap();
            assert!(matches!(
                s.create_account(&jane, &AccountRecord::new("x", 4096)),
                Err(StoreError::Exists(_))
            ));
        }
        let s = Store::open(dir.path()).unwrap();
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

    fn publish(s: &Store, id: &str, options: Option<Options>) -> Result<NodeConfig, PublishError> {
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
            let s = Store::open(dir.path()).unwrap();
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
        let s = Store::open(dir.path()).unwrap();
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
        let s = Store::open(dir.path()).unwrap();
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
        let s = Store::open(dir.path()).unwrap();
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
            let s = Store::open(dir.path()).unwrap();
            let tx = s.db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", 99)
                .unwrap();
            tx.commit().unwrap();
        }
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}

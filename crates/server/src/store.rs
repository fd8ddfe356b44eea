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

use crate::sasl::{Hash, ScramKeys};

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const ACCOUNTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("accounts");

/// The schema this build writes.
pub const SCHEMA_VERSION: u64 = 1;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
        let db = Database::create(&path)?;
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
                // Version 1 is the first schema: a fresh file has no
                // version yet. Later versions add their steps here, each
                // upgrading from the one before.
                _ => {
                    tx.open_table(ACCOUNTS)?;
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

    /// Deletes an account; fails if it does not exist.
    pub fn delete_account(&self, jid: &BareJid) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(ACCOUNTS)?;
            if t.remove(jid.as_str())?.is_none() {
                return Err(StoreError::NotFound(jid.to_string()));
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
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(jid.to_string(), e.to_string()))
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

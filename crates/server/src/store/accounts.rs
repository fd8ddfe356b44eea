//! Accounts: SCRAM keys per hash, never a password.

use serde::{Deserialize, Serialize};
use stanza::BareJid;

use super::StoreError;
use crate::sasl::{Hash, ScramKeys};

/// One account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// SCRAM keys, one entry per hash.
    pub keys: Vec<ScramKeys>,
    /// When it was made, in milliseconds since the Unix epoch (0 for
    /// accounts made before this was kept).
    #[serde(default)]
    pub created_ms: u64,
}

impl AccountRecord {
    /// Keys for `password` under every supported hash.
    pub fn new(password: &str, iterations: u32) -> Self {
        Self {
            keys: [Hash::Sha1, Hash::Sha256]
                .into_iter()
                .map(|h| ScramKeys::generate(h, password, iterations))
                .collect(),
            created_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
    /// The keys for one hash.
    pub fn keys(&self, hash: Hash) -> Option<&ScramKeys> {
        self.keys.iter().find(|k| k.hash == hash)
    }
}

/// Accounts.
pub trait AccountStore {
    /// An account's record.
    fn account(&self, jid: &BareJid) -> Result<Option<AccountRecord>, StoreError>;

    /// Creates an account; fails if it exists. Durable when it returns.
    fn create_account(&self, jid: &BareJid, record: &AccountRecord) -> Result<(), StoreError>;

    /// Replaces an account's keys; fails if it does not exist.
    fn set_account(&self, jid: &BareJid, record: &AccountRecord) -> Result<(), StoreError>;
}

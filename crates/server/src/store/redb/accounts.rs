//! Accounts on redb.

use stanza::BareJid;

use redb::{ReadableDatabase, ReadableTable};

use super::{decode, Redb, ACCOUNTS};
use crate::store::{AccountRecord, AccountStore, StoreError};

impl AccountStore for Redb {
    fn account(&self, jid: &BareJid) -> Result<Option<AccountRecord>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ACCOUNTS)?;
        let Some(v) = t.get(jid.as_str())? else {
            return Ok(None);
        };
        decode(jid.as_str(), v.value()).map(Some)
    }

    fn create_account(&self, jid: &BareJid, record: &AccountRecord) -> Result<(), StoreError> {
        self.put_account(jid, record, false)
    }

    fn set_account(&self, jid: &BareJid, record: &AccountRecord) -> Result<(), StoreError> {
        self.put_account(jid, record, true)
    }
}

impl Redb {
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
            let bytes = serde_json::to_vec(record)?;
            t.insert(jid.as_str(), bytes.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }
}

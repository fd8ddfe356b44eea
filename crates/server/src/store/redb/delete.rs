//! Deleting an account and everything it owned, in one write transaction:
//! a name registered again later starts from nothing.

use redb::{Database, ReadableTable, WriteTransaction};
use stanza::BareJid;

use super::{
    decode, node_key, parse_jid, split_node_key, ACCOUNTS, BLOCKS, ITEMS, ITEM_IDS, NODES, ROSTER,
    SUBS, SUBS_BY,
};
use crate::roster::RosterItem;
use crate::store::{Deleted, StoreError};

/// [`crate::store::MaintenanceStore::delete_account`], in one write
/// transaction.
pub(super) fn delete_account(db: &Database, jid: &BareJid) -> Result<Deleted, StoreError> {
    let tx = db.begin_write()?;
    {
        let mut t = tx.open_table(ACCOUNTS)?;
        if t.remove(jid.as_str())?.is_none() {
            return Err(StoreError::NotFound(jid.to_string()));
        }
    }
    let mut out = Deleted {
        nodes: delete_nodes(&tx, jid)?,
        subscriptions: delete_own_subscriptions(&tx, jid)?,
        ..Deleted::default()
    };
    (out.roster, out.other_sides) = delete_rosters(&tx, jid)?;
    super::tokens::delete_tokens(&tx, jid)?;
    {
        let mut blocks = tx.open_table(BLOCKS)?;
        let keys = prefixed_keys(&blocks, jid.as_str())?;
        for k in keys {
            blocks.remove((jid.as_str(), k.as_str()))?;
        }
    }
    tx.commit()?;
    Ok(out)
}

/// The second parts of the keys `(first, *)` of a two-part table.
pub(super) fn prefixed_keys<V: redb::Value + 'static>(
    t: &impl ReadableTable<(&'static str, &'static str), V>,
    first: &str,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for entry in t.range((first, "")..)? {
        let (k, _) = entry?;
        let (a, b) = k.value();
        if a != first {
            break;
        }
        out.push(b.to_owned());
    }
    Ok(out)
}

/// Removes the owner's nodes with their items, item ids and subscribers.
fn delete_nodes(tx: &WriteTransaction, owner: &BareJid) -> Result<Vec<String>, StoreError> {
    let prefix = format!("{owner}\u{0}");
    let mut nodes = tx.open_table(NODES)?;
    let mut keys = Vec::new();
    for entry in nodes.range(prefix.as_str()..)? {
        let (k, _) = entry?;
        if !k.value().starts_with(&prefix) {
            break;
        }
        keys.push(k.value().to_owned());
    }
    let mut items = tx.open_table(ITEMS)?;
    let mut ids = tx.open_table(ITEM_IDS)?;
    let mut subs = tx.open_table(SUBS)?;
    let mut by = tx.open_table(SUBS_BY)?;
    let mut names = Vec::new();
    for key in &keys {
        nodes.remove(key.as_str())?;
        items.retain_in((key.as_str(), 0)..=(key.as_str(), u64::MAX), |_, _| false)?;
        for id in prefixed_keys(&ids, key)? {
            ids.remove((key.as_str(), id.as_str()))?;
        }
        super::statuses::forget_all(tx, key)?;
        for sub in prefixed_keys(&subs, key)? {
            subs.remove((key.as_str(), sub.as_str()))?;
            let bare = stanza::Jid::new(&sub).map_or(sub.clone(), |j| j.to_bare().to_string());
            by.remove((bare.as_str(), key.as_str(), sub.as_str()))?;
        }
        names.push(split_node_key(key)?.1.to_owned());
    }
    Ok(names)
}

/// Removes the subscriptions `who` holds to other accounts' nodes.
fn delete_own_subscriptions(
    tx: &WriteTransaction,
    who: &BareJid,
) -> Result<Vec<(BareJid, String, String)>, StoreError> {
    let mut by = tx.open_table(SUBS_BY)?;
    let mut found = Vec::new();
    for entry in by.range((who.as_str(), "", "")..)? {
        let (k, _) = entry?;
        let (s, node, jid) = k.value();
        if s != who.as_str() {
            break;
        }
        found.push((node.to_owned(), jid.to_owned()));
    }
    let mut subs = tx.open_table(SUBS)?;
    let mut out = Vec::new();
    for (nk, jid) in found {
        by.remove((who.as_str(), nk.as_str(), jid.as_str()))?;
        subs.remove((nk.as_str(), jid.as_str()))?;
        let (owner, node) = split_node_key(&nk)?;
        out.push((owner, node.to_owned(), jid));
    }
    // `node_key` is the format of the keys above; keep the two in step.
    debug_assert!(node_key(who, "n").starts_with(who.as_str()));
    Ok(out)
}

/// Removes the account's roster and every item other rosters keep for it.
/// There is no index from contact to owner, so the other sides are found
/// by one scan of the roster table: deletion is rare.
#[allow(clippy::type_complexity)]
fn delete_rosters(
    tx: &WriteTransaction,
    who: &BareJid,
) -> Result<(Vec<(BareJid, RosterItem)>, Vec<BareJid>), StoreError> {
    let mut roster = tx.open_table(ROSTER)?;
    let mut own = Vec::new();
    let mut others = Vec::new();
    for entry in roster.iter()? {
        let (k, v) = entry?;
        let (owner, contact) = k.value();
        if owner == who.as_str() {
            own.push((
                parse_jid(contact)?,
                decode::<RosterItem>(contact, v.value())?,
            ));
        } else if contact == who.as_str() {
            others.push(parse_jid(owner)?);
        }
    }
    for (contact, _) in &own {
        roster.remove((who.as_str(), contact.as_str()))?;
    }
    for owner in &others {
        roster.remove((owner.as_str(), who.as_str()))?;
    }
    Ok((own, others))
}

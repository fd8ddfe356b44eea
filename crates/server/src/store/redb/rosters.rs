//! Rosters on redb.

use redb::{ReadableDatabase, ReadableTable};
use stanza::BareJid;

use super::{decode, parse_jid, Redb, ACCOUNTS, ROSTER};
use crate::roster::{self, Outcome, RosterItem, SubKind};
use crate::store::{
    Exchange, Quota, RosterPair, RosterQuota, RosterRemoval, RosterStore, StoreError,
};

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

pub(super) fn put_item(
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
/// Where the contact is: served here (and whether its account exists), or
/// on another server, which runs its half itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contact {
    Local { exists: bool },
    Remote,
}

impl Contact {
    fn of(tx: &redb::WriteTransaction, contact: &BareJid, local: bool) -> Result<Self, StoreError> {
        Ok(if local {
            Contact::Local {
                exists: tx.open_table(ACCOUNTS)?.get(contact.as_str())?.is_some(),
            }
        } else {
            Contact::Remote
        })
    }
}

fn exchange(
    t: &mut RosterTable<'_>,
    user: &BareJid,
    contact: &BareJid,
    kind: SubKind,
    where_: Contact,
) -> Result<Exchange, StoreError> {
    let out = roster::outbound(get_item(t, user, contact)?.as_ref(), kind);
    put_item(t, user, contact, out.item.as_ref())?;
    let mut ex = Exchange {
        user: out,
        contact: None,
        reply: None,
    };
    let contact_exists = match where_ {
        // The stanza goes to the other server, which answers itself.
        _ if !ex.user.forward => return Ok(ex),
        Contact::Remote => return Ok(ex),
        Contact::Local { exists } => exists,
    };
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

impl RosterStore for Redb {
    fn roster(&self, owner: &BareJid) -> Result<Vec<(BareJid, RosterItem)>, StoreError> {
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

    fn roster_item(
        &self,
        owner: &BareJid,
        contact: &BareJid,
    ) -> Result<Option<RosterItem>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ROSTER)?;
        let v = t.get((owner.as_str(), contact.as_str()))?;
        v.map(|v| decode(contact.as_str(), v.value())).transpose()
    }

    fn all_presence_follows(&self) -> Result<Vec<(BareJid, BareJid)>, StoreError> {
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

    fn roster_update(
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

    fn subscription(
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
            let where_ = Contact::of(&tx, contact, contact_local)?;
            let contact_exists = where_ == Contact::Local { exists: true };
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
            let ex = exchange(&mut t, user, contact, kind, where_)?;
            if let Some(i) = &ex.contact {
                put_item(&mut t, contact, user, i.item.as_ref())?;
            }
            (before, ex)
        };
        tx.commit()?;
        Ok(ex)
    }

    fn inbound_subscription(
        &self,
        contact: &BareJid,
        user: &BareJid,
        kind: SubKind,
        quota: RosterQuota,
    ) -> Result<Option<(Option<RosterItem>, Outcome)>, StoreError> {
        let tx = self.db.begin_write()?;
        let out = {
            if tx.open_table(ACCOUNTS)?.get(contact.as_str())?.is_none() {
                return Ok(None);
            }
            let mut t = tx.open_table(ROSTER)?;
            let before = get_item(&t, contact, user)?;
            if kind == SubKind::Subscribe && before.is_none() {
                let full = count_items(&t, contact, quota.max_items, |_| true)? >= quota.max_items;
                let pending = count_items(&t, contact, quota.max_pending, |i| i.pending_in)?;
                if full || pending >= quota.max_pending {
                    return Err(StoreError::Quota(Quota::PendingRequests));
                }
            }
            let out = roster::inbound(before.as_ref(), kind);
            put_item(&mut t, contact, user, out.item.as_ref())?;
            (before, out)
        };
        tx.commit()?;
        Ok(Some(out))
    }

    fn roster_remove(
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
            let where_ = Contact::of(&tx, contact, contact_local)?;
            let mut exchanges = Vec::new();
            for kind in [SubKind::Unsubscribe, SubKind::Unsubscribed] {
                let ex = exchange(&mut t, owner, contact, kind, where_)?;
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
}

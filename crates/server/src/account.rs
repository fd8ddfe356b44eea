//! Accounts changed while the server runs, by the user (XEP-0077) or by
//! the operator (`starling adduser`, `passwd`, `deluser` through the
//! control socket):
//!
//! - [`set_password`]: a new account, or a new password for one; the
//!   account's other sessions authenticated with the old password, so
//!   they end;
//! - [`delete`]: the store forgets everything the account owned, its
//!   sessions end, its contacts are told, and the fan-out registry
//!   forgets it.

use std::sync::Arc;

use stanza::{ser, BareJid, StreamErrorCondition};

use crate::presence::{roster_push, sessions};
use crate::store::Deleted;
use crate::{AccountRecord, Shared, StoreError};

/// What [`set_password`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasswordChange {
    /// Create the account (`Exists` if it is there).
    Create,
    /// Give an existing account a new password (`NotFound` if it is not
    /// there); it keeps its age, and its sessions but `keep` end.
    Change,
}

/// Creates `jid` with `password`, or changes its password (see
/// [`PasswordChange`]). PBKDF2 and the durable write run off the runtime.
pub(crate) async fn set_password(
    shared: &Arc<Shared>,
    jid: &BareJid,
    password: String,
    what: PasswordChange,
    keep: Option<&stanza::FullJid>,
) -> Result<(), StoreError> {
    let iterations = shared.config.scram_iterations;
    let j = jid.clone();
    shared
        .db(move |store| {
            let mut record = AccountRecord::new(&password, iterations);
            match what {
                PasswordChange::Create => store.create_account(&j, &record),
                PasswordChange::Change => {
                    let Some(old) = store.account(&j)? else {
                        return Err(StoreError::NotFound(j.to_string()));
                    };
                    record.created_ms = old.created_ms;
                    store.set_account(&j, &record)
                }
            }
        })
        .await?;
    if what == PasswordChange::Change {
        crate::control::end_sessions(shared, jid, keep, StreamErrorCondition::Reset);
    }
    tracing::info!(%jid, change = (what == PasswordChange::Change), "password set");
    Ok(())
}

/// Deletes `jid` for good. Its sessions end with `<not-authorized/>`,
/// except `keep`. (A session deleting its own account is not kept: its
/// answer is queued before the end takes effect, so it still gets it.)
pub(crate) async fn delete(
    shared: &Arc<Shared>,
    jid: &BareJid,
    keep: Option<&stanza::FullJid>,
) -> Result<Deleted, StoreError> {
    let j = jid.clone();
    let deleted = shared.db(move |s| s.delete_account(&j)).await?;
    crate::control::end_sessions(shared, jid, keep, StreamErrorCondition::NotAuthorized);
    // Contacts first hear that the account went away, while the registry
    // still knows who is online.
    for (contact, item) in &deleted.roster {
        let from_us = |ty| {
            ser::presence(
                Some(jid.as_str()),
                Some(contact.as_str()),
                Some(ty),
                None,
                b"",
            )
        };
        let mut out = Vec::new();
        if item.sub.from() {
            out.push(from_us("unavailable"));
            out.push(from_us("unsubscribed"));
        }
        if item.sub.to() || item.ask {
            out.push(from_us("unsubscribe"));
        }
        for s in sessions(shared, contact) {
            for b in &out {
                let _ = s.queue().push(fanout::Frame::Bytes(b.clone()));
            }
        }
    }
    // Their rosters lost the item: tell their resources, and recompute
    // who may read their roster-limited nodes (a name registered again
    // must not inherit the old owner's place in anyone's roster).
    for owner in &deleted.other_sides {
        roster_push(shared, owner, jid, None);
        // Logged by refresh_access; the deletion itself is done.
        let _ = crate::pep::refresh_access(shared, owner).await;
    }
    shared.fanout.registry().remove_account(jid);
    tracing::info!(%jid, nodes = deleted.nodes.len(), "account deleted");
    Ok(deleted)
}

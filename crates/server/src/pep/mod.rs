//! PEP requests from a bound session (XEP-0163 on XEP-0060): publish,
//! retract, items retrieval with RSM (§6.5, XEP-0059), subscribe and
//! unsubscribe (§6.1, §6.2), the user's subscriptions (§5.6), and the owner
//! use cases in `#owner`: configure (§8.2), subscribers (§8.8), purge
//! (§8.5) and delete (§8.4).
//!
//! Access (§4.5) is decided from the owner's roster: `presence` admits
//! contacts with a `from`/`both` subscription, `roster` the members of the
//! allowed groups, `whitelist` nobody but the owner (Starling keeps no
//! other affiliations). When a roster or a configuration changes,
//! [`refresh_access`] re-derives who may receive and drops subscriptions
//! that are no longer allowed, before the change is acknowledged.

//!
//! # Layout
//! - [`access`]: who may read and receive, and the refresh after changes;
//! - `publish`: publish, retract, and item-less events;
//! - `items`: items retrieval and RSM;
//! - `subscribe`: subscribe and unsubscribe;
//! - `owner`: the `#owner` use cases and the requester's subscriptions.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use stanza::ser::{self, StanzaError};
use stanza::{ns, BareJid, EventItem, EventKind, FullJid, PubsubEvent, StanzaErrorCondition as C};

use crate::pubsub::StoredItem;
use crate::Shared;
use stanza::xep::pubsub::Request;

mod access;
mod items;
mod owner;
mod publish;
mod subscribe;

pub(crate) use access::{allowed_for, check_access, refresh_access, AccessLocks};
pub(crate) use owner::remove_subscribers;
pub(crate) use publish::{notify_event, prepare, publish_prepared, retract, Notice, Prepared};
pub(crate) use subscribe::{subscribe, unsubscribe};

/// Answers one pubsub iq: the reply, then anything to send after it (the
/// last item for a new subscriber).
pub(crate) async fn iq(
    shared: &Arc<Shared>,
    me: &FullJid,
    id: &str,
    to: Option<&str>,
    req: Request,
) -> Vec<Bytes> {
    let reply_err =
        |e: StanzaError<'_>| vec![ser::stanza_error("iq", Some(id), to, Some(me.as_str()), &e)];
    let owner = match to {
        None => me.to_bare(),
        Some(t) => match stanza::Jid::new(t) {
            Err(_) => return reply_err(StanzaError::new(C::JidMalformed)),
            // A resource's pubsub service is the client's business; routing
            // iqs to other clients arrives with message routing.
            Ok(j) if j.is_full() => return reply_err(StanzaError::new(C::ServiceUnavailable)),
            Ok(j) => j.to_bare(),
        },
    };
    if !shared.config.domains.iter().any(|d| d == owner.domain()) {
        // Federation is a later issue.
        return reply_err(StanzaError::new(C::RemoteServerNotFound));
    }
    if owner != me.to_bare()
        && shared
            .fanout
            .registry()
            .blocked_between(&me.to_jid(), &owner.to_jid())
    {
        // XEP-0191 §3.3: nothing passes between blocked accounts.
        return reply_err(StanzaError::new(C::ServiceUnavailable));
    }
    let mut after = None;
    let result = match req {
        Request::Owner(op) => owner::iq(shared, me, &owner, op).await,
        Request::Publish {
            node,
            id: item_id,
            payload,
            options,
        } => {
            publish::publish(
                shared,
                me,
                &owner,
                node,
                item_id,
                &payload,
                options.as_ref(),
            )
            .await
        }
        Request::Items {
            node,
            ids,
            max_items,
            rsm,
        } => items::items(shared, me, &owner, node, ids, max_items, rsm).await,
        Request::Subscribe { node, jid } => {
            subscribe::subscribe(shared, me, &owner, node, jid, &mut after).await
        }
        Request::Unsubscribe { node, jid } => {
            subscribe::unsubscribe(shared, me, &owner, node, jid).await
        }
        Request::Retract { node, id, notify } => {
            publish::retract(shared, me, &owner, node, id, notify).await
        }
        Request::Subscriptions { node } => {
            owner::own_subscriptions(shared, me, &owner, node.as_deref()).await
        }
    };
    match result {
        Ok(payload) => {
            let payload = (!payload.is_empty()).then_some(payload.as_slice());
            let mut out = vec![ser::iq_result(id, to, Some(me.as_str()), payload)];
            out.extend(after);
            out
        }
        Err(e) => reply_err(e),
    }
}

/// The JID a subscribe or unsubscribe names must be the requester's bare
/// or full JID (XEP-0060 §6.1.3.1).
pub(super) fn own_jid(me: &FullJid, jid: stanza::Jid) -> Result<stanza::Jid, StanzaError<'static>> {
    if jid.as_str() == me.as_str() || jid.as_str() == me.to_bare().as_str() {
        Ok(jid)
    } else {
        Err(app(C::BadRequest, "invalid-jid"))
    }
}

/// The last item of `owner`'s `node` as a replay for `to`: a headline
/// event marked with `<delay>` (XEP-0203), so clients do not take it for a
/// fresh post.
pub(crate) fn replay(owner: &BareJid, to: &FullJid, node: &str, it: &StoredItem) -> Bytes {
    let stamp = datetime(it.published_ms);
    let items = [EventItem {
        id: &it.id,
        publisher: Some(&it.publisher),
        payload: it.payload.as_bytes(),
    }];
    let ev = PubsubEvent {
        node,
        kind: EventKind::Items(&items),
        delay: Some((owner.as_str(), &stamp)),
    };
    stanza::event_message(owner.as_str(), to.as_str(), &format!("last-{}", it.id), &ev)
}

/// XEP-0082 date-time in UTC for milliseconds since the Unix epoch.
pub fn datetime(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian), using
    // 400-year eras of 146,097 days that start on March 1st.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

pub(crate) type Reply = Result<Vec<u8>, StanzaError<'static>>;

pub(crate) fn app(cond: C, name: &'static str) -> StanzaError<'static> {
    StanzaError::new(cond).with_app(name, ns::PUBSUB_ERRORS)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn new_item_id() -> String {
    let r: [u8; 8] = rand::random();
    format!(
        "{:x}-{}",
        now_ms(),
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::datetime;

    #[test]
    fn xep0082_datetimes() {
        assert_eq!(datetime(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(datetime(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(datetime(1_795_514_400_123), "2026-11-24T10:00:00.123Z");
    }
}

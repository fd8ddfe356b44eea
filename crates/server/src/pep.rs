//! PEP requests from a bound session: publish, retract, items retrieval,
//! subscribe and unsubscribe (XEP-0163; XEP-0060 §6.1, §6.2, §6.5, §7.1,
//! §7.2). RSM and the owner use cases arrive in later steps.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fanout::Publish;
use stanza::ser::{self, StanzaError, XmlWriter};
use stanza::{
    ns, BareJid, Element, EventItem, EventKind, FullJid, PubsubEvent, StanzaErrorCondition as C,
};
use tracing::debug;

use crate::pubsub::{AccessModel, Options, StoredItem};
use crate::store::{PublishError, PublishRequest};
use crate::Shared;

/// Who may receive a node's events under its access model, for the
/// fan-out registry: `None` for open and presence (every route that exists
/// qualifies); for roster and whitelist, until rosters and affiliations
/// exist, nobody but the owner.
pub(crate) fn allowed_for(access: AccessModel) -> Option<std::collections::HashSet<BareJid>> {
    match access {
        AccessModel::Open | AccessModel::Presence => None,
        AccessModel::Roster | AccessModel::Whitelist => Some(Default::default()),
    }
}

/// Answers one pubsub iq: the reply, then anything to send after it (the
/// last item for a new subscriber).
pub(crate) async fn iq(shared: &Arc<Shared>, me: &FullJid, iq: &Element) -> Vec<Bytes> {
    let id = iq.attr("id").unwrap_or("");
    let to = iq.attr("to");
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
    let Some(pubsub) = iq.child("pubsub", ns::PUBSUB) else {
        return reply_err(StanzaError::new(C::BadRequest));
    };
    let mut after = None;
    let result = match (iq.attr("type"), pubsub.first_element()) {
        (Some("set"), Some(p)) if p.is("publish", ns::PUBSUB) => {
            publish(shared, me, &owner, pubsub, p).await
        }
        (Some("get"), Some(i)) if i.is("items", ns::PUBSUB) => items(shared, me, &owner, i).await,
        (Some("set"), Some(s)) if s.is("subscribe", ns::PUBSUB) => {
            subscribe(shared, me, &owner, s, &mut after).await
        }
        (Some("set"), Some(u)) if u.is("unsubscribe", ns::PUBSUB) => {
            unsubscribe(shared, me, &owner, u).await
        }
        (Some("set"), Some(r)) if r.is("retract", ns::PUBSUB) => {
            retract(shared, me, &owner, r).await
        }
        _ => {
            Err(StanzaError::new(C::FeatureNotImplemented)
                .with_app("unsupported", ns::PUBSUB_ERRORS))
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

/// The JID a subscribe or unsubscribe names, which must be the requester's
/// bare or full JID (XEP-0060 §6.1.3.1).
fn own_jid(me: &FullJid, el: &Element) -> Result<stanza::Jid, StanzaError<'static>> {
    let Some(jid) = el.attr("jid") else {
        return Err(app(C::BadRequest, "jid-required"));
    };
    let jid = stanza::Jid::new(jid).map_err(|_| app(C::BadRequest, "invalid-jid"))?;
    if jid.as_str() == me.as_str() || jid.as_str() == me.to_bare().as_str() {
        Ok(jid)
    } else {
        Err(app(C::BadRequest, "invalid-jid"))
    }
}

/// The access check for someone other than the owner (XEP-0060 §6.1.3).
fn check_access(access: AccessModel) -> Result<(), StanzaError<'static>> {
    match access {
        AccessModel::Open => Ok(()),
        // Presence and roster access need the roster (a later step); until
        // then only the owner passes.
        AccessModel::Presence => Err(app(C::NotAuthorized, "presence-subscription-required")),
        AccessModel::Roster => Err(app(C::NotAuthorized, "not-in-roster-group")),
        AccessModel::Whitelist => Err(app(C::NotAllowed, "closed-node")),
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
pub(crate) fn datetime(ms: u64) -> String {
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

async fn subscribe(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    sub: &Element,
    after: &mut Option<Bytes>,
) -> Reply {
    let Some(node) = sub.attr("node").map(str::to_owned) else {
        return Err(app(C::BadRequest, "nodeid-required"));
    };
    let jid = own_jid(me, sub)?;
    let store = shared.store.clone();
    let (o, n, j) = (owner.clone(), node.clone(), jid.clone());
    let is_owner = *owner == me.to_bare();
    let done = tokio::task::spawn_blocking(move || {
        let Some(rec) = store.node(&o, &n)? else {
            return Ok(Err(StanzaError::new(C::ItemNotFound)));
        };
        if !is_owner {
            if let Err(e) = check_access(rec.config.access_model) {
                return Ok(Err(e));
            }
        }
        store.subscribe(&o, &n, &j)?;
        Ok::<_, crate::StoreError>(Ok(store.items(&o, &n, Some(1))?.pop()))
    })
    .await;
    let last = match done {
        Ok(Ok(Ok(last))) => last,
        Ok(Ok(Err(e))) => return Err(e),
        _ => return Err(StanzaError::new(C::InternalServerError)),
    };
    shared.fanout.registry().subscribe(owner, &node, &jid);
    // The new subscriber gets the last item at once, marked as a replay.
    if let Some(it) = last {
        *after = Some(replay(owner, me, &node, &it));
    }
    let mut w = XmlWriter::with_capacity(160);
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("subscription")
        .attr("node", &node)
        .attr("jid", jid.as_str())
        .attr("subscription", "subscribed")
        .close_empty();
    w.end("pubsub");
    Ok(w.as_bytes().to_vec())
}

/// Retracts one item (XEP-0060 §7.2) and, when notification is on, tells
/// the same recipients a publish would reach.
async fn retract(shared: &Arc<Shared>, me: &FullJid, owner: &BareJid, r: &Element) -> Reply {
    if *owner != me.to_bare() {
        return Err(StanzaError::new(C::Forbidden));
    }
    let Some(node) = r.attr("node").map(str::to_owned) else {
        return Err(app(C::BadRequest, "nodeid-required"));
    };
    let Some(id) = r
        .child("item", ns::PUBSUB)
        .and_then(|i| i.attr("id"))
        .map(str::to_owned)
    else {
        return Err(app(C::BadRequest, "item-required"));
    };
    let store = shared.store.clone();
    let (o, n, i) = (owner.clone(), node.clone(), id.clone());
    let config = match tokio::task::spawn_blocking(move || store.retract(&o, &n, &i)).await {
        Ok(Ok(Some(c))) => c,
        Ok(Ok(None)) => return Err(StanzaError::new(C::ItemNotFound)),
        _ => return Err(StanzaError::new(C::InternalServerError)),
    };
    let notify = match r.attr("notify") {
        Some(v) => v == "true" || v == "1",
        None => config.notify_retract,
    };
    if notify {
        let fanout = shared.fanout.clone();
        let owner = owner.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let ids = [id.as_str()];
            let notif_id = format!("r-{id}");
            fanout.publish(
                &owner,
                &Publish {
                    id: &notif_id,
                    event: PubsubEvent {
                        node: &node,
                        kind: EventKind::Retract(&ids),
                        delay: None,
                    },
                },
            )
        })
        .await;
    }
    Ok(Vec::new())
}

async fn unsubscribe(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    unsub: &Element,
) -> Reply {
    let Some(node) = unsub.attr("node").map(str::to_owned) else {
        return Err(app(C::BadRequest, "nodeid-required"));
    };
    let jid = own_jid(me, unsub)?;
    let store = shared.store.clone();
    let (o, n, j) = (owner.clone(), node.clone(), jid.clone());
    match tokio::task::spawn_blocking(move || store.unsubscribe(&o, &n, &j)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Err(app(C::UnexpectedRequest, "not-subscribed")),
        _ => return Err(StanzaError::new(C::InternalServerError)),
    }
    shared.fanout.registry().unsubscribe(owner, &node, &jid);
    Ok(Vec::new())
}

type Reply = Result<Vec<u8>, StanzaError<'static>>;

fn app(cond: C, name: &'static str) -> StanzaError<'static> {
    StanzaError::new(cond).with_app(name, ns::PUBSUB_ERRORS)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_item_id() -> String {
    let r: [u8; 8] = rand::random();
    format!(
        "{:x}-{}",
        now_ms(),
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

async fn publish(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    pubsub: &Element,
    p: &Element,
) -> Reply {
    if *owner != me.to_bare() {
        return Err(StanzaError::new(C::Forbidden));
    }
    let Some(node) = p.attr("node").map(str::to_owned) else {
        return Err(app(C::BadRequest, "nodeid-required"));
    };
    let Some(item) = p.child("item", ns::PUBSUB) else {
        return Err(app(C::BadRequest, "item-required"));
    };
    let Some(payload) = item.first_element() else {
        return Err(app(C::BadRequest, "payload-required"));
    };
    let item_id = item
        .attr("id")
        .filter(|s| !s.is_empty())
        .map_or_else(new_item_id, str::to_owned);
    let options = match pubsub
        .child("publish-options", ns::PUBSUB)
        .and_then(|po| po.child("x", ns::DATA_FORMS))
        .map(Options::from_form)
        .transpose()
    {
        Ok(o) => o,
        Err(_) => return Err(app(C::Conflict, "precondition-not-met")),
    };
    // Stored and delivered as published, but standing on its own: prefixes
    // declared on <pubsub> or <iq> are re-declared (PROTOCOL §1.7).
    let payload = String::from_utf8(payload.to_bytes().to_vec()).unwrap_or_default();
    let req = PublishRequest {
        owner: owner.clone(),
        node: node.clone(),
        item: StoredItem {
            id: item_id.clone(),
            publisher: owner.to_string(),
            payload,
            published_ms: now_ms(),
        },
        options,
    };
    let config = match shared.committer.publish(req.clone()).await {
        Ok(c) => c,
        Err(PublishError::PreconditionNotMet) => {
            return Err(app(C::Conflict, "precondition-not-met"))
        }
        Err(PublishError::Store(e)) => {
            tracing::error!(error = %e, "publish failed in the store");
            return Err(StanzaError::new(C::InternalServerError));
        }
    };
    // Durable now: deliver. The access model limits who may receive.
    shared
        .fanout
        .registry()
        .set_node_access(owner, &node, allowed_for(config.access_model));
    let fanout = shared.fanout.clone();
    let report = tokio::task::spawn_blocking(move || {
        let it = &req.item;
        let items = [EventItem {
            id: &it.id,
            publisher: Some(&it.publisher),
            payload: it.payload.as_bytes(),
        }];
        let notif_id = format!("n-{}", it.id);
        fanout.publish(
            &req.owner,
            &Publish {
                id: &notif_id,
                event: PubsubEvent {
                    node: &req.node,
                    kind: EventKind::Items(&items),
                    delay: None,
                },
            },
        )
    })
    .await;
    debug!(%owner, %node, item = %item_id, ?report, "published");
    let mut w = XmlWriter::with_capacity(160);
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("publish").attr("node", &node).close_start();
    w.open("item").attr("id", &item_id).close_empty();
    w.end("publish").end("pubsub");
    Ok(w.as_bytes().to_vec())
}

async fn items(shared: &Arc<Shared>, me: &FullJid, owner: &BareJid, items: &Element) -> Reply {
    let Some(node) = items.attr("node").map(str::to_owned) else {
        return Err(app(C::BadRequest, "nodeid-required"));
    };
    let wanted: Vec<String> = items
        .elements()
        .filter(|i| i.is("item", ns::PUBSUB))
        .filter_map(|i| i.attr("id").map(str::to_owned))
        .collect();
    let max = match items.attr("max_items").map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return Err(StanzaError::new(C::BadRequest).with_text("max_items must be a number"))
        }
    };
    let store = shared.store.clone();
    let (o, n) = (owner.clone(), node.clone());
    let read = tokio::task::spawn_blocking(move || {
        let rec = store.node(&o, &n)?;
        let Some(rec) = rec else { return Ok(None) };
        let list = if wanted.is_empty() {
            store.items(&o, &n, max)?
        } else {
            let mut v = Vec::new();
            for id in &wanted {
                v.extend(store.item(&o, &n, id)?);
            }
            v
        };
        Ok::<_, crate::StoreError>(Some((rec.config, list)))
    })
    .await;
    let (config, list) = match read {
        Ok(Ok(Some(x))) => x,
        Ok(Ok(None)) => return Err(StanzaError::new(C::ItemNotFound)),
        _ => return Err(StanzaError::new(C::InternalServerError)),
    };
    if *owner != me.to_bare() {
        check_access(config.access_model)?;
    }
    let mut w =
        XmlWriter::with_capacity(256 + list.iter().map(|i| i.payload.len() + 64).sum::<usize>());
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("items").attr("node", &node).close_start();
    for it in &list {
        w.open("item")
            .attr("id", &it.id)
            .attr("publisher", &it.publisher)
            .close_start()
            .raw(it.payload.as_bytes())
            .end("item");
    }
    w.end("items").end("pubsub");
    Ok(w.as_bytes().to_vec())
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

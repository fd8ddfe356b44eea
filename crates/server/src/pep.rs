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

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fanout::Publish;
use stanza::ser::{self, StanzaError, XmlWriter};
use stanza::{
    ns, BareJid, Element, EventItem, EventKind, FullJid, PubsubEvent, StanzaErrorCondition as C,
};
use tracing::debug;

use std::collections::HashSet;

use crate::pubsub::{AccessModel, NodeConfig, Options, SendLast, StoredItem};
use crate::roster::RosterItem;
use crate::store::prelude::*;
use crate::store::{Anchor, Budget, PublishError, PublishRequest};
use crate::Shared;

/// Who may receive a node's events, for the fan-out registry: `None` for
/// open and presence (every route that exists qualifies: explicit
/// subscriptions are checked when made and when the roster changes, and
/// presence followers are the presence audience); the allowed roster
/// members for roster; nobody but the owner for whitelist.
pub(crate) fn allowed_for(
    config: &NodeConfig,
    roster: &[(BareJid, RosterItem)],
) -> Option<HashSet<BareJid>> {
    match config.access_model {
        AccessModel::Open | AccessModel::Presence => None,
        AccessModel::Roster => Some(
            roster
                .iter()
                .filter(|(_, i)| in_groups(config, i))
                .map(|(j, _)| j.clone())
                .collect(),
        ),
        AccessModel::Whitelist => Some(HashSet::new()),
    }
}

fn in_groups(config: &NodeConfig, item: &RosterItem) -> bool {
    item.listed
        && item
            .groups
            .iter()
            .any(|g| config.roster_groups_allowed.contains(g))
}

/// The access check for someone other than the owner (XEP-0060 §6.1.3),
/// given the owner's roster item for them.
pub(crate) fn check_access(
    config: &NodeConfig,
    item: Option<&RosterItem>,
) -> Result<(), StanzaError<'static>> {
    match config.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence if item.is_some_and(|i| i.sub.from()) => Ok(()),
        AccessModel::Presence => Err(app(C::NotAuthorized, "presence-subscription-required")),
        AccessModel::Roster if item.is_some_and(|i| in_groups(config, i)) => Ok(()),
        AccessModel::Roster => Err(app(C::NotAuthorized, "not-in-roster-group")),
        AccessModel::Whitelist => Err(app(C::NotAllowed, "closed-node")),
    }
}

/// `owner`'s node if `requester` may read it: `item-not-found`, or the
/// access model's error, otherwise. Blocking (store reads).
fn readable_node(
    store: &dyn Store,
    owner: &BareJid,
    node: &str,
    requester: &BareJid,
) -> Result<Result<crate::store::NodeRecord, StanzaError<'static>>, crate::StoreError> {
    let Some(rec) = store.node(owner, node)? else {
        return Ok(Err(StanzaError::new(C::ItemNotFound)));
    };
    if requester != owner {
        let item = store.roster_item(owner, requester)?;
        if let Err(e) = check_access(&rec.config, item.as_ref()) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(rec))
}

/// Re-derives who may receive each of `owner`'s nodes after the owner's
/// roster or a node's configuration changed, and drops the explicit
/// subscriptions the access model no longer allows (XEP-0060 §4.5). Done
/// before the change is acknowledged, so later publishes see it.
///
/// Refreshes of one owner run one at a time (a striped lock): each reads
/// the store after the change it follows committed, so the last one to
/// apply holds the latest state, and the registry cannot keep a follower
/// the store already removed. A refresh that fails is an error for the
/// request that caused it: the change must not be acknowledged while the
/// registry still delivers by the old rules.
pub(crate) async fn refresh_access(
    shared: &Arc<Shared>,
    owner: &BareJid,
) -> Result<(), StanzaError<'static>> {
    let _one_at_a_time = shared.access_locks.lock(owner).await;
    let o = owner.clone();
    let work = shared
        .db(move |store| {
            let nodes = store.nodes_of(&o)?;
            let restricted = nodes
                .iter()
                .any(|(_, c)| c.access_model != AccessModel::Open);
            if !restricted {
                return Ok((nodes, Vec::new(), Vec::new()));
            }
            // The whole roster only for `roster` nodes (their allowed set);
            // otherwise one item per explicit subscriber, so a big account's
            // follow changes stay cheap.
            let roster = if nodes
                .iter()
                .any(|(_, c)| c.access_model == AccessModel::Roster)
            {
                store.roster(&o)?
            } else {
                Vec::new()
            };
            let mut dropped = Vec::new();
            for (node, config) in nodes
                .iter()
                .filter(|(_, c)| c.access_model != AccessModel::Open)
            {
                for jid in store.node_subscriptions(&o, node)? {
                    let bare = jid.to_bare();
                    if bare == o {
                        continue;
                    }
                    let item = store.roster_item(&o, &bare)?;
                    if check_access(config, item.as_ref()).is_err() {
                        store.unsubscribe(&o, node, &jid)?;
                        dropped.push((node.clone(), jid));
                    }
                }
            }
            Ok::<_, crate::StoreError>((nodes, roster, dropped))
        })
        .await;
    let (nodes, roster, dropped) = work.map_err(|e| {
        tracing::error!(%owner, error = %e, "could not refresh node access");
        StanzaError::new(C::InternalServerError)
    })?;
    let registry = shared.fanout.registry();
    for (node, config) in &nodes {
        registry.set_node_access(owner, node, allowed_for(config, &roster));
    }
    for (node, jid) in dropped {
        debug!(%owner, %node, %jid, "subscription no longer allowed; removed");
        registry.unsubscribe(owner, &node, &jid);
    }
    Ok(())
}

/// Striped locks, one stripe per hash of an owner: refreshes of one owner
/// are serialized without a lock per account.
#[derive(Debug)]
pub(crate) struct AccessLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
    hasher: std::hash::RandomState,
}

impl Default for AccessLocks {
    fn default() -> Self {
        Self {
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl AccessLocks {
    async fn lock(&self, owner: &BareJid) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        let i = self.hasher.hash_one(owner.as_str()) as usize % self.stripes.len();
        self.stripes[i].lock().await
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
    let result = if let Some(o) = iq.child("pubsub", ns::PUBSUB_OWNER) {
        crate::owner::iq(shared, me, &owner, iq.attr("type"), o).await
    } else if let Some(pubsub) = iq.child("pubsub", ns::PUBSUB) {
        match (iq.attr("type"), pubsub.first_element()) {
            (Some("set"), Some(p)) if p.is("publish", ns::PUBSUB) => {
                publish(shared, me, &owner, pubsub, p).await
            }
            (Some("get"), Some(i)) if i.is("items", ns::PUBSUB) => {
                items(shared, me, &owner, pubsub, i).await
            }
            (Some("set"), Some(s)) if s.is("subscribe", ns::PUBSUB) => {
                subscribe(shared, me, &owner, s, &mut after).await
            }
            (Some("set"), Some(u)) if u.is("unsubscribe", ns::PUBSUB) => {
                unsubscribe(shared, me, &owner, u).await
            }
            (Some("set"), Some(r)) if r.is("retract", ns::PUBSUB) => {
                retract(shared, me, &owner, r).await
            }
            (Some("get"), Some(s)) if s.is("subscriptions", ns::PUBSUB) => {
                crate::owner::own_subscriptions(shared, me, &owner, s).await
            }
            _ => Err(StanzaError::new(C::FeatureNotImplemented)
                .with_app("unsupported", ns::PUBSUB_ERRORS)),
        }
    } else {
        Err(StanzaError::new(C::BadRequest))
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
    let (o, n, j) = (owner.clone(), node.clone(), jid.clone());
    let requester = me.to_bare();
    let done = shared
        .db(move |store| {
            let rec = match readable_node(store, &o, &n, &requester)? {
                Ok(rec) => rec,
                Err(e) => return Ok(Err(e)),
            };
            store.subscribe(&o, &n, &j)?;
            let last = match rec.config.send_last {
                SendLast::Never => None,
                SendLast::OnSub | SendLast::OnSubAndPresence => {
                    store.items(&o, &n, Budget::items(1))?.pop()
                }
            };
            Ok::<_, crate::StoreError>(Ok(last))
        })
        .await;
    let last = match done {
        Ok(Ok(last)) => last,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(StanzaError::new(C::InternalServerError)),
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
    let (o, n, i) = (owner.clone(), node.clone(), id.clone());
    let config = match shared.db(move |s| s.retract(&o, &n, &i)).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(StanzaError::new(C::ItemNotFound)),
        Err(_) => return Err(StanzaError::new(C::InternalServerError)),
    };
    let notify = match r.attr("notify") {
        Some(v) => v == "true" || v == "1",
        None => config.notify_retract,
    };
    if notify {
        notify_event(shared, owner, &node, Notice::Retract(id)).await;
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
    let (o, n, j) = (owner.clone(), node.clone(), jid.clone());
    match shared.db(move |s| s.unsubscribe(&o, &n, &j)).await {
        Ok(true) => {}
        Ok(false) => return Err(app(C::UnexpectedRequest, "not-subscribed")),
        Err(_) => return Err(StanzaError::new(C::InternalServerError)),
    }
    shared.fanout.registry().unsubscribe(owner, &node, &jid);
    Ok(Vec::new())
}

/// A node event without items, for [`notify_event`].
pub(crate) enum Notice {
    /// An item was retracted.
    Retract(String),
    /// Every item was purged.
    Purge,
    /// The node was deleted.
    Delete,
}

/// Sends a retract, purge or delete event to the node's recipients, through
/// the fan-out strategy like a publish.
pub(crate) async fn notify_event(
    shared: &Arc<Shared>,
    owner: &BareJid,
    node: &str,
    notice: Notice,
) {
    let fanout = shared.fanout.clone();
    let (owner, node) = (owner.clone(), node.to_owned());
    let report = tokio::task::spawn_blocking(move || {
        let ids: Vec<&str> = match &notice {
            Notice::Retract(id) => vec![id.as_str()],
            Notice::Purge | Notice::Delete => Vec::new(),
        };
        let (kind, notif_id) = match &notice {
            Notice::Retract(id) => (EventKind::Retract(&ids), format!("r-{id}")),
            Notice::Purge => (EventKind::Purge, format!("purge-{}", now_ms())),
            Notice::Delete => (EventKind::Delete, format!("delete-{}", now_ms())),
        };
        fanout.publish(
            &owner,
            &Publish {
                id: &notif_id,
                event: PubsubEvent {
                    node: &node,
                    kind,
                    delay: None,
                },
            },
        )
    })
    .await;
    if let Ok(r) = &report {
        shared.metrics.delivery(r);
    }
}

pub(crate) type Reply = Result<Vec<u8>, StanzaError<'static>>;

pub(crate) fn app(cond: C, name: &'static str) -> StanzaError<'static> {
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
    if !shared.limiters.publish(owner) {
        shared.metrics.limited("publish");
        return Err(StanzaError::new(C::ResourceConstraint).with_text("publishing too fast"));
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
    let limits = &shared.config.limits;
    if payload.len() > limits.max_item_bytes {
        // XEP-0060 §7.1.3.4.
        return Err(app(C::NotAcceptable, "payload-too-big"));
    }
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
        max_nodes: limits.max_nodes_per_account,
    };
    let config = match shared.committer.publish(req.clone()).await {
        Ok(c) => c,
        Err(PublishError::TooManyNodes) => {
            return Err(app(C::PolicyViolation, "max-nodes-exceeded")
                .with_text("the account has reached its node limit"))
        }
        Err(PublishError::PreconditionNotMet) => {
            return Err(app(C::Conflict, "precondition-not-met"))
        }
        Err(PublishError::Store(e)) => {
            tracing::error!(error = %e, "publish failed in the store");
            return Err(StanzaError::new(C::InternalServerError));
        }
    };
    // Durable now: deliver. The access model limits who may receive.
    if config.access_model == AccessModel::Roster {
        refresh_access(shared, owner).await?;
    } else {
        shared
            .fanout
            .registry()
            .set_node_access(owner, &node, allowed_for(&config, &[]));
    }
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
    shared.metrics.publishes.inc();
    if let Ok(r) = &report {
        shared.metrics.delivery(r);
    }
    debug!(%owner, %node, item = %item_id, ?report, "published");
    let mut w = XmlWriter::with_capacity(160);
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("publish").attr("node", &node).close_start();
    w.open("item").attr("id", &item_id).close_empty();
    w.end("publish").end("pubsub");
    Ok(w.as_bytes().to_vec())
}

/// An RSM request (XEP-0059 §2) on items retrieval.
struct Rsm {
    max: usize,
    anchor: Anchor,
}

/// Largest RSM page served, whatever `<max/>` asks.
const MAX_PAGE: usize = 500;

fn parse_rsm(set: &Element) -> Result<Rsm, StanzaError<'static>> {
    let bad = |t: &'static str| StanzaError::new(C::BadRequest).with_text(t);
    let max = match set.child("max", ns::RSM) {
        None => MAX_PAGE,
        Some(m) => m
            .text()
            .trim()
            .parse::<usize>()
            .map_err(|_| bad("<max/> must be a number"))?
            .min(MAX_PAGE),
    };
    let anchor = if let Some(b) = set.child("before", ns::RSM) {
        let id = b.text().trim().to_owned();
        if id.is_empty() {
            Anchor::Last
        } else {
            Anchor::Before(id)
        }
    } else if let Some(a) = set.child("after", ns::RSM) {
        Anchor::After(a.text().trim().to_owned())
    } else if let Some(i) = set.child("index", ns::RSM) {
        Anchor::Index(
            i.text()
                .trim()
                .parse()
                .map_err(|_| bad("<index/> must be a number"))?,
        )
    } else {
        Anchor::First
    };
    Ok(Rsm { max, anchor })
}

/// What an items request reads.
enum Read {
    /// Items by id, or the newest `max_items` (or all).
    List(Vec<StoredItem>),
    /// One RSM page.
    Page(crate::store::Page),
}

async fn items(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    pubsub: &Element,
    items: &Element,
) -> Reply {
    let Some(node) = items.attr("node").map(str::to_owned) else {
        return Err(app(C::BadRequest, "nodeid-required"));
    };
    // Each id once, in request order: a request repeating one id thousands
    // of times must not get thousands of copies (reply amplification), nor
    // cost a quadratic scan to find that out.
    let mut seen = HashSet::new();
    let wanted: Vec<String> = items
        .elements()
        .filter(|i| i.is("item", ns::PUBSUB))
        .filter_map(|i| i.attr("id"))
        .filter(|id| seen.insert(*id))
        .map(str::to_owned)
        .collect();
    let max = match items.attr("max_items").map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return Err(StanzaError::new(C::BadRequest).with_text("max_items must be a number"))
        }
    };
    // The RSM <set/> is a sibling of <items/> inside <pubsub/>.
    let rsm = match pubsub.child("set", ns::RSM) {
        Some(set) => Some(parse_rsm(set)?),
        None => None,
    };
    read_items(shared, me, owner, node, wanted, max, rsm).await
}

async fn read_items(
    shared: &Arc<Shared>,
    me: &FullJid,
    owner: &BareJid,
    node: String,
    wanted: Vec<String>,
    max: Option<usize>,
    rsm: Option<Rsm>,
) -> Reply {
    let (o, n) = (owner.clone(), node.clone());
    let requester = me.to_bare();
    let budget = shared.config.limits.reply_budget();
    let read = shared
        .db(move |store| {
            if let Err(e) = readable_node(store, &o, &n, &requester)? {
                return Ok(Err(e));
            }
            let read = if !wanted.is_empty() {
                let mut v: Vec<StoredItem> = Vec::new();
                let mut used = 0;
                for id in &wanted {
                    let Some(it) = store.item(&o, &n, id)? else {
                        continue;
                    };
                    if !budget.fits(v.len(), used, it.payload.len()) {
                        break;
                    }
                    used += it.payload.len();
                    v.push(it);
                }
                Read::List(v)
            } else if let Some(rsm) = rsm {
                let max = max.map_or(rsm.max, |m| m.min(rsm.max));
                let b = Budget {
                    items: max.min(budget.items),
                    ..budget
                };
                match store.items_page(&o, &n, &rsm.anchor, b)? {
                    Some(p) => Read::Page(p),
                    None => return Ok(Err(StanzaError::new(C::ItemNotFound))),
                }
            } else {
                let b = Budget {
                    items: max.unwrap_or(usize::MAX).min(budget.items),
                    ..budget
                };
                Read::List(store.items(&o, &n, b)?)
            };
            Ok::<_, crate::StoreError>(Ok(read))
        })
        .await;
    let read = match read {
        Ok(r) => r?,
        Err(_) => return Err(StanzaError::new(C::InternalServerError)),
    };
    let (list, page) = match read {
        Read::List(l) => (l, None),
        Read::Page(p) => (p.items, Some((p.first_index, p.count))),
    };
    let mut w =
        XmlWriter::with_capacity(256 + list.iter().map(|i| i.payload.len() + 64).sum::<usize>());
    w.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
    w.open("items").attr("node", &node).close_start();
    // Oldest first, within a page too (PROTOCOL §7).
    for it in &list {
        w.open("item")
            .attr("id", &it.id)
            .attr("publisher", &it.publisher)
            .close_start()
            .raw(it.payload.as_bytes())
            .end("item");
    }
    w.end("items");
    if let Some((first_index, count)) = page {
        w.open("set").attr("xmlns", ns::RSM).close_start();
        if let (Some(first), Some(last)) = (list.first(), list.last()) {
            w.open("first")
                .attr("index", &first_index.to_string())
                .close_start()
                .text(&first.id)
                .end("first");
            w.text_element("last", None, &last.id);
        }
        w.text_element("count", None, &count.to_string());
        w.end("set");
    }
    w.end("pubsub");
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

//! The subscriber registry: who follows whom, and who is online.
//!
//! The server's durable store is the authority; this is the in-memory index
//! it rebuilds at start and updates on every roster, subscription, block and
//! account change, *before* acknowledging the change. Each method returns only
//! once the change is visible to every later publish.
//!
//! # Shape
//! - One [`Account`] per bare JID ever mentioned, found by JID through the
//!   [`AccountMap`] only on the slow paths (attach, follow changes).
//! - A publisher's followers are direct `Arc<Account>` links, partitioned by
//!   shard, and each account links to its sessions. A publish walks links and
//!   never hashes a follower's JID: that is what keeps a delivery cheap.
//! - Presence and `+notify` interest live in atomics on each session, read
//!   without locks on the hot path.
//!
//! # The recipient set (PROTOCOL §6)
//! [`Registry::visit`] yields each full JID once, however many routes
//! qualify it: presence followers (`from`/`both`) whose session has
//! `+notify` for the node; explicit subscribers, with no `+notify` filter (a
//! full-JID subscription gets that resource, a bare one each available
//! resource, or the bare JID itself when the server knows nothing of its
//! presence); the owner's own
//! `+notify` resources. Only available resources with non-negative priority
//! count, and blocks (XEP-0191) are honoured both ways.
//!
//! Accounts are never freed while the registry lives (followers link them),
//! except through [`Registry::remove_account`], which unlinks them.
//!
//! # Layout
//! This module holds the entries and the slow-path changes (attach, follow,
//! subscribe, block, remove); `visit` the hot recipient walk; `routes`
//! the queues to remote domains.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;
use stanza::{BareJid, FullJid, Jid};

use crate::compact::{empty, Lazy, Map, Seeded, Set};
use crate::map::{AccountMap, ConcurrentMap};
use crate::prefetch::prefetch;
use crate::queue::OutboundQueue;

mod routes;
mod visit;

/// A session's registry id: unique for the registry's lifetime.
pub type SessionId = u64;
/// An interned pubsub node name.
pub type NodeId = u32;

/// A session's presence as the fan-out sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    /// Whether the resource sent available presence.
    pub available: bool,
    /// Its priority; negative priorities receive no notifications.
    pub priority: i8,
    /// Nodes with `+notify` in its caps (XEP-0115, XEP-0163 §4).
    pub notify: Vec<String>,
}

/// In [`SessionEntry::state`]: available with non-negative priority.
const RECEIVES: u64 = 1 << 63;
/// Node ids below this have their `+notify` as a bit of the state word.
const NOTIFY_BITS: NodeId = 63;

/// One connected resource. A delivery reads the state word and locks the
/// queue: `repr(C, align(64))` puts both on one cache line.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct SessionEntry {
    /// [`RECEIVES`] | one `+notify` bit per node id below [`NOTIFY_BITS`].
    state: AtomicU64,
    queue: OutboundQueue,
    id: SessionId,
    jid: FullJid,
    resource: Arc<str>,
    /// The presence priority, for routing messages to a bare JID.
    priority: std::sync::atomic::AtomicI8,
    /// `+notify` for node ids from [`NOTIFY_BITS`] up (rare).
    notify_extra: RwLock<Box<[NodeId]>>,
}

impl SessionEntry {
    /// The registry id.
    pub fn id(&self) -> SessionId {
        self.id
    }
    /// The full JID.
    pub fn jid(&self) -> &FullJid {
        &self.jid
    }
    /// The outbound queue the writer drains.
    pub fn queue(&self) -> &OutboundQueue {
        &self.queue
    }
    /// The priority of its last presence (0 before any).
    pub fn priority(&self) -> i8 {
        self.priority.load(Ordering::Relaxed)
    }
    /// Available with non-negative priority.
    #[inline]
    pub fn receives(&self) -> bool {
        self.state.load(Ordering::Acquire) & RECEIVES != 0
    }
    /// `+notify` for `node`.
    #[inline]
    pub fn wants(&self, node: NodeId) -> bool {
        if node < NOTIFY_BITS {
            self.state.load(Ordering::Acquire) & (1 << node) != 0
        } else {
            self.notify_extra.read().contains(&node)
        }
    }
}

/// An XEP-0191 block list.
#[derive(Debug, Default)]
struct BlockList {
    /// Blocked JIDs as normalised text: full, bare or domain.
    items: Set<String>,
}

impl crate::compact::Empty for BlockList {
    fn empty() -> &'static Self {
        static EMPTY: BlockList = BlockList {
            items: Set::with_hasher(Seeded),
        };
        &EMPTY
    }
}

impl BlockList {
    /// Whether `bare` (optionally its resource `full`) is blocked.
    fn blocks(&self, bare: &BareJid, full: Option<&FullJid>) -> bool {
        self.items.contains(bare.as_str())
            || self.items.contains(bare.domain())
            || full.is_some_and(|f| self.items.contains(f.as_str()))
    }
}

/// An explicit XEP-0060 subscription of one account to one node.
#[derive(Debug)]
struct ExplicitSub {
    account: Arc<Account>,
    /// Subscribed with the bare JID.
    bare: bool,
    /// Subscribed full JIDs, by resource.
    resources: Vec<Arc<str>>,
}

impl ExplicitSub {
    #[inline]
    fn full_match(&self, s: &SessionEntry) -> bool {
        !self.resources.is_empty() && self.resources.iter().any(|r| **r == *s.resource)
    }
    /// Whether this subscription covers session `s`: a bare-JID subscription
    /// covers every resource, a full-JID one only that resource. No `+notify`
    /// test: an explicit subscription is the subscriber's own request, and
    /// XEP-0163 filtering applies only to presence-based follows (PROTOCOL §6).
    #[inline]
    fn covers(&self, s: &SessionEntry) -> bool {
        self.bare || self.full_match(s)
    }
}

/// Presence followers, partitioned by the follower's shard.
#[derive(Debug, Default)]
struct FollowerSet {
    /// One list per shard, from the first follower on (none before).
    shards: Vec<Vec<Arc<Account>>>,
    index: Map<BareJid, (u32, u32)>,
}

impl crate::compact::Empty for FollowerSet {
    fn empty() -> &'static Self {
        static EMPTY: FollowerSet = FollowerSet {
            shards: Vec::new(),
            index: Map::with_hasher(Seeded),
        };
        &EMPTY
    }
}

/// Explicit subscriptions to an account's nodes, by node and subscriber.
type Subs = Map<NodeId, Map<BareJid, ExplicitSub>>;
/// Who may receive from nodes with a restrictive access model.
type Access = Map<NodeId, Arc<HashSet<BareJid>>>;
empty!(Subs, Access, Set<BareJid>);

impl FollowerSet {
    /// Removes `follower` in O(1) by swapping the last entry into its place.
    fn remove(&mut self, follower: &BareJid) {
        if let Some((shard, idx)) = self.index.remove(follower) {
            let list = &mut self.shards[shard as usize];
            list.swap_remove(idx as usize);
            if let Some(moved) = list.get(idx as usize) {
                let jid = moved.jid.clone();
                self.index.insert(jid, (shard, idx));
            }
        }
    }
}

/// The sessions of one account: nearly always one or two.
pub type SessionList = SmallVec<[Arc<SessionEntry>; 2]>;

/// Everything the registry knows about one bare JID. `repr(C)` keeps the
/// session list and the block flag, which every delivery reads, first.
#[derive(Debug)]
#[repr(C)]
pub struct Account {
    sessions: RwLock<SessionList>,
    /// Address of the first session's entry, or 0: only ever prefetched,
    /// never dereferenced, so it may be stale.
    session_hint: AtomicUsize,
    has_blocks: AtomicBool,
    jid: BareJid,
    shard: usize,
    local: bool,
    // The maps below are allocated on first write: most accounts follow
    // and are followed by few, and publish to no restricted node.
    /// Accounts with a `from`/`both` subscription to this one.
    followers: RwLock<Lazy<FollowerSet>>,
    /// Explicit subscriptions to this account's nodes.
    subs: RwLock<Lazy<Subs>>,
    has_subs: AtomicBool,
    /// Nodes whose access model limits who may receive (`roster`,
    /// `whitelist`): the bare JIDs allowed. Nodes absent here are `open` or
    /// `presence`, where every follow route that exists is allowed.
    access: RwLock<Lazy<Access>>,
    has_access_rules: AtomicBool,
    blocks: RwLock<Lazy<BlockList>>,
    /// Publishers this account follows by any route (for strategies that
    /// subscribe sessions to publishers, like `broadcast`).
    following: Mutex<Lazy<Set<BareJid>>>,
}

impl Account {
    /// The bare JID.
    pub fn jid(&self) -> &BareJid {
        &self.jid
    }
    /// The shard that owns this account's sessions.
    pub fn shard(&self) -> usize {
        self.shard
    }
    /// Whether the domain is served here.
    pub fn is_local(&self) -> bool {
        self.local
    }
    /// The connected sessions.
    pub fn sessions(&self) -> parking_lot::RwLockReadGuard<'_, SessionList> {
        self.sessions.read()
    }
    fn set_hint(&self, list: &SessionList) {
        let addr = list.first().map_or(0, |s| Arc::as_ptr(s) as usize);
        self.session_hint.store(addr, Ordering::Relaxed);
    }
    fn blocked_by_either(&self, other: &Account, other_session: Option<&SessionEntry>) -> bool {
        (self.has_blocks.load(Ordering::Acquire)
            && self
                .blocks
                .read()
                .blocks(&other.jid, other_session.map(|s| &s.jid)))
            || (other.has_blocks.load(Ordering::Acquire)
                && other.blocks.read().blocks(&self.jid, None))
    }
}

/// One recipient of a publish.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A connected session.
    Session(&'a Arc<SessionEntry>),
    /// A remote account whose presence the server does not know: one
    /// notification to the bare JID, or to the subscribed resource.
    Remote {
        /// The account.
        account: &'a Arc<Account>,
        /// The subscribed resource, for a full-JID subscription.
        resource: Option<&'a str>,
    },
}

type FollowHook = Box<dyn Fn(&Arc<Account>, &Arc<Account>) + Send + Sync>;
/// Makes (or finds) the queue for stanzas from a local domain to a remote
/// one: the server's s2s side, which connects on demand.
type RouteMaker = Box<dyn Fn(&str, &str) -> Option<Arc<OutboundQueue>> + Send + Sync>;

/// The registry. Share it as `Arc<Registry>`.
pub struct Registry {
    accounts: AccountMap<BareJid, Arc<Account>>,
    sessions: AccountMap<FullJid, Arc<SessionEntry>>,
    local_domains: Vec<String>,
    shards: usize,
    hasher: RandomState,
    next_session: AtomicU64,
    nodes: RwLock<HashMap<Arc<str>, NodeId>>,
    /// Called with (follower, publisher) after a follow edge is added.
    follow_hooks: RwLock<Vec<FollowHook>>,
    routes: AccountMap<String, Arc<OutboundQueue>>,
    route_maker: RwLock<Option<RouteMaker>>,
    /// Remote domains that take XEP-0033 multicast.
    multicast: RwLock<HashSet<String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("accounts", &self.accounts.len())
            .field("sessions", &self.sessions.len())
            .field("shards", &self.shards)
            .finish()
    }
}

impl Registry {
    /// A registry for `local_domains`, partitioning accounts over `shards`.
    pub fn new(local_domains: impl IntoIterator<Item = impl Into<String>>, shards: usize) -> Self {
        let r = Self {
            accounts: AccountMap::new(),
            sessions: AccountMap::new(),
            local_domains: local_domains.into_iter().map(Into::into).collect(),
            shards: shards.max(1),
            hasher: RandomState::new(),
            next_session: AtomicU64::new(1),
            nodes: RwLock::new(HashMap::new()),
            follow_hooks: RwLock::new(Vec::new()),
            routes: AccountMap::new(),
            route_maker: RwLock::new(None),
            multicast: RwLock::new(HashSet::new()),
        };
        // The microblog node gets id 0, so its +notify is one bit test.
        r.node_id(stanza::ns::MICROBLOG);
        r
    }

    /// Number of shards accounts are partitioned over.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The interned id of a node name.
    pub fn node_id(&self, node: &str) -> NodeId {
        if let Some(&id) = self.nodes.read().get(node) {
            return id;
        }
        let mut nodes = self.nodes.write();
        let next = nodes.len() as NodeId;
        *nodes.entry(Arc::from(node)).or_insert(next)
    }

    /// Registers a hook run after every new follow edge (follower, publisher),
    /// before the registry call returns.
    pub fn on_follow(&self, hook: impl Fn(&Arc<Account>, &Arc<Account>) + Send + Sync + 'static) {
        self.follow_hooks.write().push(Box::new(hook));
    }

    /// The account for `jid`, created on first mention.
    pub fn account(&self, jid: &BareJid) -> Arc<Account> {
        self.accounts.get_or_insert_with(jid, || {
            Arc::new(Account {
                jid: jid.clone(),
                shard: (self.hasher.hash_one(jid.as_str()) as usize) % self.shards,
                local: self.local_domains.iter().any(|d| d == jid.domain()),
                sessions: RwLock::new(SmallVec::new()),
                session_hint: AtomicUsize::new(0),
                followers: RwLock::new(Lazy::new()),
                subs: RwLock::new(Lazy::new()),
                has_subs: AtomicBool::new(false),
                access: RwLock::new(Lazy::new()),
                has_access_rules: AtomicBool::new(false),
                blocks: RwLock::new(Lazy::new()),
                has_blocks: AtomicBool::new(false),
                following: Mutex::new(Lazy::new()),
            })
        })
    }

    /// The account for `jid`, if known.
    pub fn find_account(&self, jid: &BareJid) -> Option<Arc<Account>> {
        self.accounts.get(jid)
    }

    /// The session for a full JID, if attached.
    pub fn session(&self, jid: &FullJid) -> Option<Arc<SessionEntry>> {
        self.sessions.get(jid)
    }

    /// Registers a new session, unavailable until [`Self::set_presence`].
    /// A session already attached with the same full JID is replaced and
    /// its queue closed.
    pub fn attach(&self, jid: FullJid, queue_capacity: usize) -> Arc<SessionEntry> {
        let entry = Arc::new(SessionEntry {
            id: self.next_session.fetch_add(1, Ordering::Relaxed),
            resource: Arc::from(jid.resource()),
            queue: OutboundQueue::new(jid.as_str(), queue_capacity),
            jid: jid.clone(),
            state: AtomicU64::new(0),
            priority: std::sync::atomic::AtomicI8::new(0),
            notify_extra: RwLock::new(Box::new([])),
        });
        if let Some(old) = self.detach(&jid) {
            old.queue.close();
        }
        let account = self.account(&jid.to_bare());
        let mut list = account.sessions.write();
        list.push(entry.clone());
        account.set_hint(&list);
        drop(list);
        self.sessions.remove(&jid);
        self.sessions.get_or_insert_with(&jid, || entry.clone());
        entry
    }

    /// Updates a session's availability, priority and `+notify` interests.
    pub fn set_presence(&self, session: &SessionEntry, p: &Presence) {
        let mut bits = 0u64;
        let mut extra = Vec::new();
        for node in &p.notify {
            let id = self.node_id(node);
            if id < NOTIFY_BITS {
                bits |= 1 << id;
            } else {
                extra.push(id);
            }
        }
        *session.notify_extra.write() = extra.into_boxed_slice();
        if p.available && p.priority >= 0 {
            bits |= RECEIVES;
        }
        session.priority.store(p.priority, Ordering::Relaxed);
        session.state.store(bits, Ordering::Release);
    }

    /// Removes the session with this full JID; returns it.
    pub fn detach(&self, jid: &FullJid) -> Option<Arc<SessionEntry>> {
        let entry = self.sessions.remove(jid)?;
        if let Some(account) = self.find_account(&jid.to_bare()) {
            let mut list = account.sessions.write();
            list.retain(|s| s.id != entry.id);
            account.set_hint(&list);
        }
        Some(entry)
    }

    /// Records that `follower` has (`on`) or no longer has a `from`/`both`
    /// subscription in `publisher`'s roster.
    pub fn set_presence_follow(&self, publisher: &BareJid, follower: &BareJid, on: bool) {
        let p = self.account(publisher);
        let f = self.account(follower);
        {
            let mut set = p.followers.write();
            if on {
                if !set.index.contains_key(follower) {
                    if set.shards.is_empty() {
                        set.shards = vec![Vec::new(); self.shards];
                    }
                    let list = &mut set.shards[f.shard];
                    list.push(f.clone());
                    let pos = (f.shard as u32, (list.len() - 1) as u32);
                    set.index.insert(follower.clone(), pos);
                }
            } else {
                set.remove(follower);
            }
        }
        self.update_following(&f, &p);
    }

    /// Adds an explicit subscription of `subscriber` (bare or full) to
    /// `publisher`'s `node`.
    pub fn subscribe(&self, publisher: &BareJid, node: &str, subscriber: &Jid) {
        let node = self.node_id(node);
        let p = self.account(publisher);
        let bare = subscriber.to_bare();
        let s = self.account(&bare);
        {
            let mut subs = p.subs.write();
            let entry = subs
                .entry(node)
                .or_default()
                .entry(bare)
                .or_insert_with(|| ExplicitSub {
                    account: s.clone(),
                    bare: false,
                    resources: Vec::new(),
                });
            match subscriber.resource() {
                None => entry.bare = true,
                Some(r) => {
                    if !entry.resources.iter().any(|x| &**x == r) {
                        entry.resources.push(Arc::from(r));
                    }
                }
            }
            p.has_subs.store(true, Ordering::Release);
        }
        self.update_following(&s, &p);
    }

    /// Removes an explicit subscription (bare or one resource).
    pub fn unsubscribe(&self, publisher: &BareJid, node: &str, subscriber: &Jid) {
        let node = self.node_id(node);
        let Some(p) = self.find_account(publisher) else {
            return;
        };
        let bare = subscriber.to_bare();
        {
            let mut subs = p.subs.write();
            if let Some(by_account) = subs.get_mut(&node) {
                if let Some(e) = by_account.get_mut(&bare) {
                    match subscriber.resource() {
                        None => e.bare = false,
                        Some(r) => e.resources.retain(|x| &**x != r),
                    }
                    if !e.bare && e.resources.is_empty() {
                        by_account.remove(&bare);
                    }
                }
                if by_account.is_empty() {
                    subs.remove(&node);
                }
            }
            p.has_subs.store(!subs.is_empty(), Ordering::Release);
        }
        if let Some(s) = self.find_account(&bare) {
            self.update_following(&s, &p);
        }
    }

    /// Sets who may receive `publisher`'s `node` under its access model.
    /// `None` for `open` and `presence` (every existing route qualifies: the
    /// server only records explicit subscriptions the model allowed, and
    /// presence followers are exactly the `presence` audience). `Some(set)`
    /// for `roster` (the members of the allowed groups) and `whitelist`.
    pub fn set_node_access(
        &self,
        publisher: &BareJid,
        node: &str,
        allowed: Option<HashSet<BareJid>>,
    ) {
        let node = self.node_id(node);
        let p = self.account(publisher);
        let mut access = p.access.write();
        match allowed {
            Some(set) => {
                access.insert(node, Arc::new(set));
            }
            None => {
                access.remove(&node);
            }
        }
        p.has_access_rules
            .store(!access.is_empty(), Ordering::Release);
    }

    /// Drops every explicit subscription to a node (node deleted).
    pub fn clear_node(&self, publisher: &BareJid, node: &str) {
        let node = self.node_id(node);
        if let Some(p) = self.find_account(publisher) {
            let mut subs = p.subs.write();
            subs.remove(&node);
            p.has_subs.store(!subs.is_empty(), Ordering::Release);
        }
    }

    /// Replaces `owner`'s XEP-0191 block list.
    pub fn set_blocklist(&self, owner: &BareJid, items: &[Jid]) {
        let a = self.account(owner);
        let mut b = a.blocks.write();
        b.items = items.iter().map(|j| j.as_str().to_owned()).collect();
        a.has_blocks.store(!b.items.is_empty(), Ordering::Release);
    }

    /// Adds to `owner`'s block list.
    pub fn block(&self, owner: &BareJid, item: &Jid) {
        let a = self.account(owner);
        a.blocks.write().items.insert(item.as_str().to_owned());
        a.has_blocks.store(true, Ordering::Release);
    }

    /// Removes from `owner`'s block list.
    pub fn unblock(&self, owner: &BareJid, item: &Jid) {
        if let Some(a) = self.find_account(owner) {
            let mut b = a.blocks.write();
            b.items.remove(item.as_str());
            a.has_blocks.store(!b.items.is_empty(), Ordering::Release);
        }
    }

    /// Whether `owner`'s block list matches `bare` (or `full`, when given):
    /// by bare JID, by domain, or by that full JID (XEP-0191 §3.3.1).
    pub fn is_blocked(&self, owner: &BareJid, bare: &BareJid, full: Option<&FullJid>) -> bool {
        self.find_account(owner).is_some_and(|a| {
            a.has_blocks.load(Ordering::Acquire) && a.blocks.read().blocks(bare, full)
        })
    }

    /// Whether `a` and `b` block each other either way: then no stanza
    /// passes between them.
    pub fn blocked_between(&self, a: &Jid, b: &Jid) -> bool {
        let (ab, bb) = (a.to_bare(), b.to_bare());
        self.is_blocked(&ab, &bb, b.to_full().as_ref())
            || self.is_blocked(&bb, &ab, a.to_full().as_ref())
    }

    /// Forgets an account: its follows both ways, subscriptions and blocks.
    /// Its sessions must have been detached.
    pub fn remove_account(&self, jid: &BareJid) {
        let Some(a) = self.accounts.remove(jid) else {
            return;
        };
        // As a follower: leave every publisher it follows, by any route.
        let following: Vec<BareJid> = a.following.lock().drain().collect();
        for p in following {
            if let Some(pa) = self.find_account(&p) {
                pa.followers.write().remove(jid);
                let mut subs = pa.subs.write();
                for by_account in subs.values_mut() {
                    by_account.remove(jid);
                }
                subs.retain(|_, v| !v.is_empty());
                pa.has_subs.store(!subs.is_empty(), Ordering::Release);
            }
        }
        // As a publisher: nobody follows it any more.
        let mut f = a.followers.write();
        for list in &mut f.shards {
            for follower in list.drain(..) {
                follower.following.lock().remove(jid);
            }
        }
        f.index.clear();
        let mut subs = a.subs.write();
        for (_, by_account) in subs.drain() {
            for (_, e) in by_account {
                e.account.following.lock().remove(jid);
            }
        }
        a.has_subs.store(false, Ordering::Release);
    }

    /// Publishers `account` follows by any route.
    pub fn following(&self, account: &Account) -> Vec<BareJid> {
        account.following.lock().iter().cloned().collect()
    }

    /// The names of `publisher`'s nodes that `subscriber` holds an explicit
    /// subscription to (bare or any resource): the nodes whose last item a
    /// resource gets on coming online even without `+notify`.
    pub fn explicit_nodes(&self, publisher: &Account, subscriber: &BareJid) -> Vec<String> {
        if !publisher.has_subs.load(Ordering::Acquire) {
            return Vec::new();
        }
        let ids: Vec<NodeId> = publisher
            .subs
            .read()
            .iter()
            .filter(|(_, m)| m.contains_key(subscriber))
            .map(|(&id, _)| id)
            .collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let nodes = self.nodes.read();
        nodes
            .iter()
            .filter(|(_, id)| ids.contains(id))
            .map(|(name, _)| name.to_string())
            .collect()
    }

    fn update_following(&self, follower: &Arc<Account>, publisher: &Arc<Account>) {
        let follows = publisher.followers.read().index.contains_key(&follower.jid)
            || publisher
                .subs
                .read()
                .values()
                .any(|m| m.contains_key(&follower.jid));
        let added = {
            let mut f = follower.following.lock();
            if follows {
                f.insert(publisher.jid.clone())
            } else {
                f.remove(&publisher.jid);
                false
            }
        };
        if added {
            for hook in self.follow_hooks.read().iter() {
                hook(follower, publisher);
            }
        }
    }
}

#[cfg(test)]
mod tests;

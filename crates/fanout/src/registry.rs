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

    /// Sets the queue that carries stanzas for a remote domain (s2s).
    pub fn set_route(&self, domain: &str, queue: Arc<OutboundQueue>) {
        self.routes.remove(&domain.to_owned());
        self.routes.get_or_insert_with(&domain.to_owned(), || queue);
    }

    /// The queue for a remote domain set with [`Self::set_route`].
    pub fn route(&self, domain: &str) -> Option<Arc<OutboundQueue>> {
        self.routes.get(&domain.to_owned())
    }

    /// Records whether `domain` takes XEP-0033 multicast: its remote
    /// recipients of one publish then get one stanza per domain.
    pub fn set_multicast(&self, domain: &str, on: bool) {
        let mut m = self.multicast.write();
        if on {
            m.insert(domain.to_owned());
        } else {
            m.remove(domain);
        }
    }

    /// Whether `domain` takes XEP-0033 multicast.
    pub fn multicast(&self, domain: &str) -> bool {
        self.multicast.read().contains(domain)
    }

    /// Sets how a missing route from `local` to `remote` is made: the
    /// server's federation, which opens a stream to the domain on demand.
    pub fn on_missing_route(
        &self,
        make: impl Fn(&str, &str) -> Option<Arc<OutboundQueue>> + Send + Sync + 'static,
    ) {
        *self.route_maker.write() = Some(Box::new(make));
    }

    /// The queue for stanzas from `local` (a domain served here) to
    /// `remote`: a route set for the domain, else one made on demand.
    pub fn route_between(&self, local: &str, remote: &str) -> Option<Arc<OutboundQueue>> {
        if let Some(q) = self.route(remote) {
            return Some(q);
        }
        self.route_maker
            .read()
            .as_ref()
            .and_then(|m| m(local, remote))
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

    /// Whether `session` is a recipient of `publisher`'s `node` under the
    /// same rules as [`Self::visit`], checked for one session in O(1): for
    /// replaying the last item to a resource that just became available.
    pub fn delivers_to(&self, publisher: &Account, node: NodeId, session: &SessionEntry) -> bool {
        if !session.receives() {
            return false;
        }
        let bare = session.jid.to_bare();
        let wants = session.wants(node);
        let explicit = publisher
            .has_subs
            .load(Ordering::Acquire)
            .then(|| {
                let subs = publisher.subs.read();
                subs.get(&node)
                    .and_then(|m| m.get(&bare))
                    .map(|e| e.covers(session))
            })
            .flatten()
            .unwrap_or(false);
        if publisher.jid == bare {
            return wants || explicit;
        }
        let permitted = !publisher.has_access_rules.load(Ordering::Acquire)
            || publisher
                .access
                .read()
                .get(&node)
                .is_none_or(|set| set.contains(&bare));
        let blocked = self
            .find_account(&bare)
            .is_some_and(|a| publisher.blocked_by_either(&a, Some(session)));
        let presence = wants && publisher.followers.read().index.contains_key(&bare);
        permitted && !blocked && (presence || explicit)
    }

    /// Calls `f` once per recipient of a publish to `publisher`'s `node`.
    /// With `shard`, only recipients whose account lives in that shard.
    /// Returns the number of recipients.
    pub fn visit(
        &self,
        publisher: &Account,
        node: NodeId,
        shard: Option<usize>,
        mut f: impl FnMut(Target<'_>),
    ) -> u64 {
        let mut count = 0u64;
        let in_shard = |a: &Account| shard.is_none_or(|s| a.shard == s);
        let subs_guard = publisher
            .has_subs
            .load(Ordering::Acquire)
            .then(|| publisher.subs.read());
        let node_subs = subs_guard
            .as_ref()
            .and_then(|g| g.get(&node))
            .filter(|m| !m.is_empty());
        let allowed: Option<Arc<HashSet<BareJid>>> =
            if publisher.has_access_rules.load(Ordering::Acquire) {
                publisher.access.read().get(&node).cloned()
            } else {
                None
            };
        let permitted = |a: &Account| allowed.as_ref().is_none_or(|set| set.contains(&a.jid));
        let followers = publisher.followers.read();
        let lists: &[Vec<Arc<Account>>] = match shard {
            // No lists at all before the first follower.
            Some(s) => followers.shards.get(s).map_or(&[], std::slice::from_ref),
            None => &followers.shards,
        };

        // 1. Presence followers, with any explicit subscription they also hold.
        // How far ahead to prefetch: accounts at +8, their first session at
        // +4 (whose account line arrived meanwhile).
        const AHEAD_ACCOUNT: usize = 8;
        const AHEAD_SESSION: usize = 4;
        for list in lists {
            for (i, acc) in list.iter().enumerate() {
                if let Some(a) = list.get(i + AHEAD_ACCOUNT) {
                    prefetch(Arc::as_ptr(a));
                }
                if let Some(a) = list.get(i + AHEAD_SESSION) {
                    prefetch(a.session_hint.load(Ordering::Relaxed) as *const SessionEntry);
                }
                // The owner is handled in step 3. Compare addresses: reading
                // the JID text would cost a cache miss per follower.
                if std::ptr::eq(&**acc, publisher) {
                    continue;
                }
                let explicit = node_subs.and_then(|m| m.get(&acc.jid));
                let sessions = acc.sessions.read();
                if sessions.is_empty() || publisher.blocked_by_either(acc, None) || !permitted(acc)
                {
                    continue;
                }
                for s in sessions.iter() {
                    if s.receives()
                        && (s.wants(node) || explicit.is_some_and(|e| e.covers(s)))
                        && !(publisher.has_blocks.load(Ordering::Relaxed)
                            && publisher.blocks.read().blocks(&acc.jid, Some(&s.jid)))
                    {
                        count += 1;
                        f(Target::Session(s));
                    }
                }
            }
        }

        // 2. Explicit subscribers that are not presence followers.
        if let Some(m) = node_subs {
            for (bare, e) in m {
                let acc = &e.account;
                if !in_shard(acc) || *bare == publisher.jid || followers.index.contains_key(bare) {
                    continue;
                }
                if publisher.blocked_by_either(acc, None) || !permitted(acc) {
                    continue;
                }
                let sessions = acc.sessions.read();
                if sessions.is_empty() && !acc.local {
                    if e.bare {
                        count += 1;
                        f(Target::Remote {
                            account: acc,
                            resource: None,
                        });
                    }
                    for r in &e.resources {
                        count += 1;
                        f(Target::Remote {
                            account: acc,
                            resource: Some(r),
                        });
                    }
                    continue;
                }
                for s in sessions.iter() {
                    if s.receives() && e.covers(s) {
                        count += 1;
                        f(Target::Session(s));
                    }
                }
            }
        }

        // 3. The owner's own resources.
        if in_shard(publisher) {
            let explicit = node_subs.and_then(|m| m.get(&publisher.jid));
            for s in publisher.sessions.read().iter() {
                if s.receives() && (s.wants(node) || explicit.is_some_and(|e| e.covers(s))) {
                    count += 1;
                    f(Target::Session(s));
                }
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }
    fn full(s: &str) -> FullJid {
        FullJid::new(s).unwrap()
    }
    /// An account that publishes to nobody holds no maps: each of its
    /// follow, subscription, access and block records is a null pointer
    /// until written (#11: 392 bytes before).
    #[test]
    fn an_account_nobody_follows_holds_no_maps() {
        assert!(
            std::mem::size_of::<Account>() <= 168,
            "{}",
            std::mem::size_of::<Account>()
        );
        let r = Registry::new(["example.org"], 2);
        let joe = r.account(&bare("joe@example.org"));
        assert!(joe.followers.read().shards.is_empty());
        r.set_presence_follow(&bare("jane@example.org"), &bare("joe@example.org"), true);
        let jane = r.account(&bare("jane@example.org"));
        assert_eq!(jane.followers.read().shards.len(), 2);
        assert!(joe.followers.read().index.is_empty());
        assert!(joe.following.lock().contains(&bare("jane@example.org")));
    }

    fn online(r: &Registry, jid: &str, prio: i8, notify: bool) -> Arc<SessionEntry> {
        let s = r.attach(full(jid), 16);
        r.set_presence(
            &s,
            &Presence {
                available: true,
                priority: prio,
                notify: if notify {
                    vec![stanza::ns::MICROBLOG.into()]
                } else {
                    vec![]
                },
            },
        );
        s
    }
    fn recipients(r: &Registry, publisher: &str) -> Vec<String> {
        let p = r.account(&bare(publisher));
        let mut out = Vec::new();
        let n = r.visit(&p, r.node_id(stanza::ns::MICROBLOG), None, |t| match t {
            Target::Session(s) => out.push(s.jid().to_string()),
            Target::Remote { account, resource } => out.push(match resource {
                Some(res) => format!("remote:{}/{res}", account.jid()),
                None => format!("remote:{}", account.jid()),
            }),
        });
        assert_eq!(n as usize, out.len());
        out.sort();
        out
    }

    fn registry() -> Registry {
        Registry::new(["example.org"], 2)
    }

    #[test]
    fn presence_followers_need_notify_and_nonnegative_priority() {
        let r = registry();
        r.set_presence_follow(&bare("jane@example.org"), &bare("joe@example.org"), true);
        online(&r, "joe@example.org/phone", 0, true);
        online(&r, "joe@example.org/desk", 5, false);
        online(&r, "joe@example.org/away", -1, true);
        let hidden = r.attach(full("joe@example.org/hidden"), 16); // no presence yet
        assert!(!hidden.receives());
        assert_eq!(
            recipients(&r, "jane@example.org"),
            ["joe@example.org/phone"]
        );
        r.set_presence_follow(&bare("jane@example.org"), &bare("joe@example.org"), false);
        assert!(recipients(&r, "jane@example.org").is_empty());
    }

    #[test]
    fn owner_resources_are_filtered_by_notify() {
        let r = registry();
        online(&r, "jane@example.org/a", 0, true);
        online(&r, "jane@example.org/b", 0, false);
        assert_eq!(recipients(&r, "jane@example.org"), ["jane@example.org/a"]);
    }

    #[test]
    fn explicit_subscriptions() {
        let r = registry();
        let p = bare("jane@example.org");
        // Full-JID subscription: that resource, even without +notify.
        r.subscribe(
            &p,
            stanza::ns::MICROBLOG,
            &Jid::new("ann@example.org/movim").unwrap(),
        );
        online(&r, "ann@example.org/movim", 0, false);
        online(&r, "ann@example.org/other", 0, true);
        // Bare subscription: every available resource, caps or not.
        r.subscribe(
            &p,
            stanza::ns::MICROBLOG,
            &Jid::new("bob@example.org").unwrap(),
        );
        online(&r, "bob@example.org/x", 0, true);
        online(&r, "bob@example.org/y", 0, false);
        // A local subscriber that is offline gets nothing; a remote bare one
        // whose presence is unknown gets one notification to the bare JID.
        r.subscribe(
            &p,
            stanza::ns::MICROBLOG,
            &Jid::new("cat@example.org").unwrap(),
        );
        r.subscribe(
            &p,
            stanza::ns::MICROBLOG,
            &Jid::new("dan@other.org").unwrap(),
        );
        assert_eq!(
            recipients(&r, "jane@example.org"),
            [
                "ann@example.org/movim",
                "bob@example.org/x",
                "bob@example.org/y",
                "remote:dan@other.org"
            ]
        );
        r.unsubscribe(
            &p,
            stanza::ns::MICROBLOG,
            &Jid::new("dan@other.org").unwrap(),
        );
        assert_eq!(recipients(&r, "jane@example.org").len(), 3);
    }

    #[test]
    fn one_notification_per_full_jid() {
        let r = registry();
        let p = bare("jane@example.org");
        r.set_presence_follow(&p, &bare("joe@example.org"), true);
        r.subscribe(
            &p,
            stanza::ns::MICROBLOG,
            &Jid::new("joe@example.org").unwrap(),
        );
        r.subscribe(
            &p,
            stanza::ns::MICROBLOG,
            &Jid::new("joe@example.org/phone").unwrap(),
        );
        r.subscribe(
            &p,
            stanza::ns::MICROBLOG,
            &Jid::new("jane@example.org/a").unwrap(),
        );
        online(&r, "joe@example.org/phone", 0, true);
        online(&r, "jane@example.org/a", 0, true);
        assert_eq!(
            recipients(&r, "jane@example.org"),
            ["jane@example.org/a", "joe@example.org/phone"]
        );
    }

    #[test]
    fn blocks_both_ways() {
        let r = registry();
        let p = bare("jane@example.org");
        for f in ["a@example.org", "b@example.org", "c@evil.org"] {
            r.set_presence_follow(&p, &bare(f), true);
            online(&r, &format!("{f}/r"), 0, true);
        }
        r.block(&p, &Jid::new("a@example.org").unwrap());
        r.block(
            &bare("b@example.org"),
            &Jid::new("jane@example.org").unwrap(),
        );
        r.block(&p, &Jid::new("evil.org").unwrap());
        assert!(recipients(&r, "jane@example.org").is_empty());
        r.unblock(&p, &Jid::new("a@example.org").unwrap());
        assert_eq!(recipients(&r, "jane@example.org"), ["a@example.org/r"]);
    }

    #[test]
    fn access_model_limits_every_route_but_the_owner() {
        let r = registry();
        let p = bare("jane@example.org");
        r.set_presence_follow(&p, &bare("joe@example.org"), true);
        r.set_presence_follow(&p, &bare("kim@example.org"), true);
        r.subscribe(
            &p,
            stanza::ns::MICROBLOG,
            &Jid::new("ann@example.org").unwrap(),
        );
        for j in ["joe", "kim", "ann", "jane"] {
            online(&r, &format!("{j}@example.org/r"), 0, true);
        }
        assert_eq!(recipients(&r, "jane@example.org").len(), 4);
        // Whitelist: only joe (and the owner).
        let allowed: HashSet<BareJid> = [bare("joe@example.org")].into_iter().collect();
        r.set_node_access(&p, stanza::ns::MICROBLOG, Some(allowed));
        assert_eq!(
            recipients(&r, "jane@example.org"),
            ["jane@example.org/r", "joe@example.org/r"]
        );
        // Another node of the same owner is unaffected.
        let acc = r.account(&p);
        let other = r.node_id("urn:xmpp:other");
        assert_eq!(
            r.visit(&acc, other, None, |_| {}),
            0,
            "no one has +notify for it"
        );
        r.set_node_access(&p, stanza::ns::MICROBLOG, None);
        assert_eq!(recipients(&r, "jane@example.org").len(), 4);
    }

    #[test]
    fn delivers_to_agrees_with_visit() {
        let r = registry();
        let p = bare("jane@example.org");
        r.set_presence_follow(&p, &bare("joe@example.org"), true);
        r.subscribe(
            &p,
            stanza::ns::MICROBLOG,
            &Jid::new("ann@example.org/movim").unwrap(),
        );
        r.set_presence_follow(&p, &bare("mal@example.org"), true);
        r.block(&p, &Jid::new("mal@example.org").unwrap());
        let sessions = [
            online(&r, "joe@example.org/a", 0, true),
            online(&r, "joe@example.org/b", 0, false),
            online(&r, "ann@example.org/movim", 0, false),
            online(&r, "ann@example.org/other", 0, true),
            online(&r, "mal@example.org/r", 0, true),
            online(&r, "jane@example.org/me", 0, true),
            online(&r, "eve@example.org/r", 0, true),
        ];
        let acc = r.account(&p);
        let node = r.node_id(stanza::ns::MICROBLOG);
        let mut by_visit = Vec::new();
        r.visit(&acc, node, None, |t| {
            if let Target::Session(s) = t {
                by_visit.push(s.id());
            }
        });
        let by_check: Vec<_> = sessions
            .iter()
            .filter(|s| r.delivers_to(&acc, node, s))
            .map(|s| s.id())
            .collect();
        by_visit.sort_unstable();
        assert_eq!(by_check, by_visit);
        assert_eq!(by_check.len(), 3, "joe/a, ann/movim, jane/me");
    }

    #[test]
    fn detach_and_replace() {
        let r = registry();
        r.set_presence_follow(&bare("jane@example.org"), &bare("joe@example.org"), true);
        let old = online(&r, "joe@example.org/phone", 0, true);
        let new = online(&r, "joe@example.org/phone", 0, true);
        assert_eq!(old.queue().state(), crate::QueueState::Closed);
        assert_ne!(old.id(), new.id());
        assert_eq!(
            recipients(&r, "jane@example.org"),
            ["joe@example.org/phone"]
        );
        r.detach(&full("joe@example.org/phone"));
        assert!(recipients(&r, "jane@example.org").is_empty());
    }

    #[test]
    fn shards_partition_the_recipients() {
        let r = Registry::new(["example.org"], 3);
        let p = bare("jane@example.org");
        for i in 0..50 {
            let f = format!("u{i}@example.org");
            r.set_presence_follow(&p, &bare(&f), true);
            online(&r, &format!("{f}/r"), 0, true);
        }
        online(&r, "jane@example.org/me", 0, true);
        let acc = r.account(&p);
        let node = r.node_id(stanza::ns::MICROBLOG);
        let total: u64 = (0..3).map(|s| r.visit(&acc, node, Some(s), |_| {})).sum();
        assert_eq!(total, 51);
        assert_eq!(r.visit(&acc, node, None, |_| {}), 51);
    }

    #[test]
    fn remove_account_unlinks() {
        let r = registry();
        r.set_presence_follow(&bare("jane@example.org"), &bare("joe@example.org"), true);
        r.subscribe(
            &bare("jane@example.org"),
            "n",
            &Jid::new("joe@example.org").unwrap(),
        );
        r.subscribe(
            &bare("joe@example.org"),
            "n",
            &Jid::new("kim@example.org").unwrap(),
        );
        r.remove_account(&bare("joe@example.org"));
        assert!(
            r.find_account(&bare("joe@example.org")).is_none(),
            "not recreated"
        );
        let kim = r.account(&bare("kim@example.org"));
        assert!(
            r.following(&kim).is_empty(),
            "kim's subscription to joe is gone"
        );
        online(&r, "joe@example.org/phone", 0, true);
        assert!(recipients(&r, "jane@example.org").is_empty());
    }

    #[test]
    fn hot_types_stay_small() {
        // A delivery touches the first line of a session entry only.
        assert_eq!(std::mem::align_of::<SessionEntry>(), 64);
        assert_eq!(std::mem::offset_of!(SessionEntry, queue), 8);
        // The queue's push path is its first 56 bytes (queue.rs tests it).
    }

    #[test]
    fn following_index_and_hook() {
        let r = registry();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        r.on_follow(move |f, p| s2.lock().push((f.jid().to_string(), p.jid().to_string())));
        r.set_presence_follow(&bare("jane@example.org"), &bare("joe@example.org"), true);
        r.subscribe(
            &bare("kim@example.org"),
            "n",
            &Jid::new("joe@example.org").unwrap(),
        );
        let joe = r.account(&bare("joe@example.org"));
        let mut f = r.following(&joe);
        f.sort();
        assert_eq!(f, [bare("jane@example.org"), bare("kim@example.org")]);
        assert_eq!(seen.lock().len(), 2);
    }
}

//! The recipient walk of one publish (PROTOCOL §6): [`Registry::visit`]
//! over every route that can qualify a session, and
//! [`Registry::delivers_to`], the same rules for one session.

use super::*;

impl Registry {
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

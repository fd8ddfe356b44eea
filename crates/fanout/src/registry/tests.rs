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

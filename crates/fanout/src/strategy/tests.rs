//! Behaviour every strategy must share: exact recipients, the slow-consumer
//! policy, and counts that add up.

use std::collections::BTreeMap;
use std::sync::Arc;

use stanza::{ns, BareJid, EventItem, EventKind, FullJid, Jid, PubsubEvent};

use super::{by_name, Config, Fanout, Publish, STRATEGIES};
use crate::handle::OutboundHandle;
use crate::queue::QueueState;
use crate::registry::{Presence, Registry};

const ENTRY: &[u8] = b"<entry xmlns='http://www.w3.org/2005/Atom'><title>hi</title></entry>";

fn bare(s: &str) -> BareJid {
    BareJid::new(s).unwrap()
}

struct World {
    fanout: Arc<dyn Fanout>,
    handles: BTreeMap<String, OutboundHandle>,
}

impl World {
    fn new(strategy: &str, config: Config) -> Self {
        let registry = Arc::new(Registry::new(["example.org"], 2));
        Self {
            fanout: by_name(strategy, registry, config).unwrap(),
            handles: BTreeMap::new(),
        }
    }
    fn online(&mut self, jid: &str, priority: i8, notify: bool, cap: usize) {
        let h = self.fanout.attach(FullJid::new(jid).unwrap(), cap);
        self.fanout.registry().set_presence(
            h.session(),
            &Presence {
                available: true,
                priority,
                notify: if notify {
                    vec![ns::MICROBLOG.into()]
                } else {
                    vec![]
                },
            },
        );
        self.handles.insert(jid.to_owned(), h);
    }
    fn publish(&self, publisher: &str, item: &str) -> super::DeliveryReport {
        let items = [EventItem {
            id: item,
            publisher: Some(publisher),
            payload: ENTRY,
        }];
        self.fanout.publish(
            &bare(publisher),
            &Publish {
                id: &format!("n-{item}"),
                event: PubsubEvent {
                    node: ns::MICROBLOG,
                    kind: EventKind::Items(&items),
                    delay: None,
                },
            },
        )
    }
    /// Drains every session; returns jid -> the stanzas it would write.
    fn drain(&self) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for (jid, h) in &self.handles {
            let mut frames = Vec::new();
            h.drain(&mut frames, usize::MAX);
            let texts: Vec<String> = frames
                .iter()
                .map(|f| String::from_utf8(f.to_bytes(h.to_escaped()).to_vec()).unwrap())
                .collect();
            if !texts.is_empty() {
                out.insert(jid.clone(), texts);
            }
        }
        out
    }
}

#[test]
fn exact_delivery_for_every_strategy() {
    for &name in STRATEGIES {
        let mut w = World::new(name, Config::default());
        let reg = w.fanout.registry().clone();
        let jane = bare("jane@example.org");
        // Presence followers: +notify only, non-negative priority only.
        reg.set_presence_follow(&jane, &bare("joe@example.org"), true);
        w.online("joe@example.org/phone", 0, true, 16);
        w.online("joe@example.org/desk", 0, false, 16);
        w.online("joe@example.org/dnd", -5, true, 16);
        // Explicit subscribers: a full-JID one and a bare one.
        reg.subscribe(
            &jane,
            ns::MICROBLOG,
            &Jid::new("ann@example.org/movim").unwrap(),
        );
        w.online("ann@example.org/movim", 0, false, 16);
        reg.subscribe(&jane, ns::MICROBLOG, &Jid::new("bob@example.org").unwrap());
        w.online("bob@example.org/x", 1, true, 16);
        // A stranger without caps who subscribed with the bare JID (Movim):
        // explicit subscriptions get no +notify filter (PROTOCOL §6).
        reg.subscribe(&jane, ns::MICROBLOG, &Jid::new("cid@example.org").unwrap());
        w.online("cid@example.org/web", 0, false, 16);
        w.online("cid@example.org/away", -1, false, 16);
        // A `both` contact without caps who also subscribed explicitly.
        reg.set_presence_follow(&jane, &bare("dee@example.org"), true);
        reg.subscribe(&jane, ns::MICROBLOG, &Jid::new("dee@example.org").unwrap());
        w.online("dee@example.org/web", 0, false, 16);
        // The owner's own resources, +notify only.
        w.online("jane@example.org/laptop", 0, true, 16);
        w.online("jane@example.org/cli", 0, false, 16);
        // Not followers at all, and a blocked follower.
        w.online("eve@example.org/r", 0, true, 16);
        reg.set_presence_follow(&jane, &bare("mal@example.org"), true);
        w.online("mal@example.org/r", 0, true, 16);
        reg.block(&jane, &Jid::new("mal@example.org").unwrap());

        let report = w.publish("jane@example.org", "8f3c");
        let got = w.drain();
        let who: Vec<&str> = got.keys().map(String::as_str).collect();
        assert_eq!(
            who,
            [
                "ann@example.org/movim",
                "bob@example.org/x",
                "cid@example.org/web",
                "dee@example.org/web",
                "jane@example.org/laptop",
                "joe@example.org/phone"
            ],
            "{name}"
        );
        for (jid, stanzas) in &got {
            assert_eq!(stanzas.len(), 1, "{name}: one notification per full JID");
            let s = &stanzas[0];
            assert!(s.contains(&format!("to='{jid}'")), "{name}: {s}");
            assert!(
                s.contains("type='headline'") && s.contains("<item id='8f3c'"),
                "{name}: {s}"
            );
        }
        assert_eq!(report.recipients, 6, "{name}");
        assert_eq!(report.delivered, 6, "{name}");
        assert_eq!(report.dropped.total(), 0, "{name}");
        assert_eq!(w.fanout.stats().delivered, 6, "{name}");
        // The replay check agrees with the walk for each of them.
        let account = reg.account(&jane);
        let node = reg.node_id(ns::MICROBLOG);
        for (jid, h) in &w.handles {
            assert_eq!(
                reg.delivers_to(&account, node, h.session()),
                got.contains_key(jid),
                "{name}: delivers_to for {jid}"
            );
        }
    }
}

#[test]
fn changes_apply_to_the_next_publish() {
    for &name in STRATEGIES {
        let mut w = World::new(name, Config::default());
        let reg = w.fanout.registry().clone();
        w.online("joe@example.org/phone", 0, true, 16);
        assert_eq!(w.publish("jane@example.org", "1").recipients, 0, "{name}");
        // Follow while online: the very next publish reaches the session.
        reg.set_presence_follow(&bare("jane@example.org"), &bare("joe@example.org"), true);
        assert_eq!(w.publish("jane@example.org", "2").delivered, 1, "{name}");
        reg.block(
            &bare("joe@example.org"),
            &Jid::new("jane@example.org").unwrap(),
        );
        assert_eq!(w.publish("jane@example.org", "3").recipients, 0, "{name}");
        let got = w.drain();
        assert_eq!(got["joe@example.org/phone"].len(), 1, "{name}: {got:?}");
        assert!(got["joe@example.org/phone"][0].contains("id='2'"), "{name}");
        // Detached sessions receive nothing.
        reg.unblock(
            &bare("joe@example.org"),
            &Jid::new("jane@example.org").unwrap(),
        );
        w.fanout
            .detach(&FullJid::new("joe@example.org/phone").unwrap());
        assert_eq!(w.publish("jane@example.org", "4").recipients, 0, "{name}");
    }
}

#[test]
fn slow_consumer_policy_and_counts_add_up() {
    for &name in STRATEGIES {
        let config = Config {
            broadcast_capacity: 2,
        };
        let mut w = World::new(name, config);
        let reg = w.fanout.registry().clone();
        reg.set_presence_follow(&bare("jane@example.org"), &bare("slow@example.org"), true);
        reg.set_presence_follow(&bare("jane@example.org"), &bare("fast@example.org"), true);
        w.online("slow@example.org/r", 0, true, 2);
        w.online_cap("fast@example.org/r", 100);
        let mut delivered = 0;
        let mut dropped = 0;
        let mut fast_got = 0;
        for i in 0..5 {
            let r = w.publish("jane@example.org", &i.to_string());
            assert_eq!(r.recipients, 2, "{name}");
            assert_eq!(
                r.delivered + r.dropped.total(),
                r.recipients,
                "{name}: {r:?}"
            );
            delivered += r.delivered;
            dropped += r.dropped.total();
            // The fast follower keeps up.
            let mut frames = Vec::new();
            fast_got += w.handles["fast@example.org/r"].drain(&mut frames, usize::MAX);
        }
        assert_eq!(delivered + dropped, 10, "{name}");
        assert_eq!(
            fast_got, 5,
            "{name}: a slow follower must not hurt a fast one"
        );
        let slow = &w.handles["slow@example.org/r"];
        let mut frames = Vec::new();
        let slow_got = slow.drain(&mut frames, usize::MAX) as u64;
        if name == "broadcast" {
            // Lagged: the channel kept the newest 2; 3 are counted and the
            // session is flagged as having lost items.
            assert_eq!(slow_got, 2, "{name}");
            assert_eq!(w.fanout.stats().dropped.lagged, 3, "{name}");
            assert!(slow.take_lost(), "{name}");
            assert!(!slow.take_lost(), "{name}: the flag is taken once");
        } else {
            // The queue holds 2; the third push overflows it, later ones are
            // refused; the writer sees Overflowed and disconnects.
            assert_eq!(slow_got, 2, "{name}");
            let s = w.fanout.stats().dropped;
            assert_eq!((s.queue_full, s.closed), (1, 2), "{name}");
            assert_eq!(slow.state(), QueueState::Overflowed, "{name}");
        }
        // Nothing lost without being counted.
        let st = w.fanout.stats();
        assert_eq!(slow_got + 5 + st.dropped.total(), 10, "{name}: {st:?}");
    }
}

#[test]
fn remote_subscribers_without_route_are_counted() {
    for &name in STRATEGIES {
        let w = World::new(name, Config::default());
        let reg = w.fanout.registry().clone();
        reg.subscribe(
            &bare("jane@example.org"),
            ns::MICROBLOG,
            &Jid::new("dan@other.org").unwrap(),
        );
        let r = w.publish("jane@example.org", "1");
        assert_eq!(
            (r.recipients, r.delivered, r.dropped.no_route),
            (1, 0, 1),
            "{name}"
        );
        let route = Arc::new(crate::OutboundQueue::new("other.org", 10));
        reg.set_route("other.org", route.clone());
        let r = w.publish("jane@example.org", "2");
        assert_eq!((r.recipients, r.delivered), (1, 1), "{name}");
        let mut frames = Vec::new();
        route.drain_into(&mut frames, 10);
        let text = String::from_utf8(frames[0].to_bytes(b"").to_vec()).unwrap();
        assert!(text.contains("to='dan@other.org'"), "{name}: {text}");
    }
}

#[test]
fn a_multicast_domain_gets_one_stanza_for_its_recipients() {
    for &name in STRATEGIES {
        let w = World::new(name, Config::default());
        let reg = w.fanout.registry().clone();
        for who in ["dan@other.org", "eve@other.org", "fay@third.org"] {
            reg.subscribe(
                &bare("jane@example.org"),
                ns::MICROBLOG,
                &Jid::new(who).unwrap(),
            );
        }
        let other = Arc::new(crate::OutboundQueue::new("other.org", 10));
        let third = Arc::new(crate::OutboundQueue::new("third.org", 10));
        reg.set_route("other.org", other.clone());
        reg.set_route("third.org", third.clone());
        reg.set_multicast("other.org", true);
        let r = w.publish("jane@example.org", "1");
        assert_eq!((r.recipients, r.delivered), (3, 3), "{name}");
        let mut frames = Vec::new();
        other.drain_into(&mut frames, 10);
        assert_eq!(frames.len(), 1, "{name}: one stanza for other.org");
        let text = String::from_utf8(frames[0].to_bytes(b"").to_vec()).unwrap();
        assert!(text.contains("to='other.org'"), "{name}: {text}");
        for who in ["dan@other.org", "eve@other.org"] {
            assert!(text.contains(&format!("jid='{who}'")), "{name}: {text}");
        }
        // third.org takes no multicast: one stanza per recipient.
        frames.clear();
        third.drain_into(&mut frames, 10);
        assert_eq!(frames.len(), 1, "{name}");
        let text = String::from_utf8(frames[0].to_bytes(b"").to_vec()).unwrap();
        assert!(
            text.contains("to='fay@third.org'") && !text.contains("addresses"),
            "{name}"
        );
    }
}

#[test]
fn unknown_strategy_is_a_typed_error() {
    let reg = Arc::new(Registry::new(["example.org"], 1));
    let e = by_name("fastest", reg, Config::default()).unwrap_err();
    assert!(e.to_string().contains("fastest"));
}

impl World {
    fn online_cap(&mut self, jid: &str, cap: usize) {
        self.online(jid, 0, true, cap)
    }
}

#[test]
fn concurrent_publish_login_and_logout() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const POSTS: u64 = 200;
    for &name in STRATEGIES {
        let mut w = World::new(name, Config::default());
        let reg = w.fanout.registry().clone();
        let publishers = ["p0@example.org", "p1@example.org"];
        // Stable followers stay online the whole time and must get every post.
        for i in 0..20 {
            let f = format!("stable{i}@example.org");
            for p in publishers {
                reg.set_presence_follow(&bare(p), &bare(&f), true);
            }
            w.online(&format!("{f}/r"), 0, true, 10_000);
        }
        // Churning followers log in and out while posts fan out.
        for i in 0..20 {
            for p in publishers {
                reg.set_presence_follow(&bare(p), &bare(&format!("churn{i}@example.org")), true);
            }
        }
        let w = Arc::new(w);
        let done = AtomicBool::new(false);
        let reported = AtomicU64::new(0);
        let received: BTreeMap<String, AtomicU64> = w
            .handles
            .keys()
            .map(|k| (k.clone(), AtomicU64::new(0)))
            .collect();
        std::thread::scope(|s| {
            for p in publishers {
                let (w, reported) = (&w, &reported);
                s.spawn(move || {
                    for i in 0..POSTS {
                        let r = w.publish(p, &i.to_string());
                        assert_eq!(
                            r.delivered + r.dropped.total(),
                            r.recipients,
                            "{name}: {r:?}"
                        );
                        reported.fetch_add(r.delivered, Ordering::Relaxed);
                    }
                });
            }
            let (w2, reg2, done2) = (&w, &reg, &done);
            s.spawn(move || {
                let presence = Presence {
                    available: true,
                    priority: 0,
                    notify: vec![ns::MICROBLOG.into()],
                };
                let mut n = 0;
                while !done2.load(Ordering::Acquire) || n < 50 {
                    let jid = FullJid::new(&format!("churn{}@example.org/r", n % 20)).unwrap();
                    let h = w2.fanout.attach(jid.clone(), 4);
                    reg2.set_presence(h.session(), &presence);
                    let mut frames = Vec::new();
                    h.drain(&mut frames, usize::MAX);
                    w2.fanout.detach(&jid);
                    n += 1;
                }
            });
            let (w3, received, done3) = (&w, &received, &done);
            s.spawn(move || {
                let mut frames = Vec::new();
                loop {
                    let finished = done3.load(Ordering::Acquire);
                    for (jid, h) in &w3.handles {
                        frames.clear();
                        let n = h.drain(&mut frames, usize::MAX) as u64;
                        received[jid].fetch_add(n, Ordering::Relaxed);
                    }
                    if finished {
                        break;
                    }
                    std::thread::yield_now();
                }
            });
            // Publishers finish first; then stop the churn and the drainer.
            while w.fanout.stats().publishes < 2 * POSTS {
                std::thread::yield_now();
            }
            done.store(true, Ordering::Release);
        });
        for (jid, n) in &received {
            assert_eq!(
                n.load(Ordering::Relaxed),
                2 * POSTS,
                "{name}: {jid} missed posts"
            );
        }
        assert_eq!(
            w.fanout.stats().delivered,
            reported.load(Ordering::Relaxed),
            "{name}"
        );
    }
}

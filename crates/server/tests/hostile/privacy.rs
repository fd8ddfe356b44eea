//! What one user can learn or keep of another.

use crate::common::binary::Binary;
use crate::common::{self, Client};
use crate::{own_items, publish, publish_with_access, NODE};
use stanza::{ns, Element};

async fn disco(c: &mut Client, to: &str, what: &str) -> Element {
    let r = c
        .iq(&format!(
            "<iq type='get' id='disco-{what}' to='{to}'>\
             <query xmlns='http://jabber.org/protocol/disco#{what}'/></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    r.first_element().unwrap().clone()
}

/// §2.7 and §2.12: disco#info tells a stranger nothing about whether an
/// account exists, and a blocked user sees what a stranger to a missing
/// account sees.
#[tokio::test]
async fn disco_tells_strangers_nothing() {
    let srv = Binary::start(&[("jane", "pw"), ("mal", "pw"), ("eve", "pw")], "");
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    publish_with_access(&mut jane, "1", "hi", "open").await;
    let (mut eve, _) = Client::login_plain(srv.addr, "eve", "pw", "a").await;
    let real = disco(&mut eve, "jane@example.org", "info").await;
    let missing = disco(&mut eve, "nobody@example.org", "info").await;
    assert_eq!(real, missing, "the same answer, existing or not");
    assert_eq!(
        disco(&mut eve, "jane@example.org", "items")
            .await
            .elements()
            .count(),
        1
    );
    assert_eq!(
        disco(&mut eve, "nobody@example.org", "items")
            .await
            .elements()
            .count(),
        0
    );
    // Jane blocks mal: to mal she looks like a missing account.
    // (The block push to jane's resource comes first; drain reads past it.)
    jane.send("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='mal@example.org'/></block></iq>")
        .await;
    jane.drain().await;
    let (mut mal, _) = Client::login_plain(srv.addr, "mal", "pw", "a").await;
    assert_eq!(disco(&mut mal, "jane@example.org", "info").await, missing);
    assert_eq!(
        disco(&mut mal, "jane@example.org", "items")
            .await
            .elements()
            .count(),
        0
    );
    srv.stop();
}

/// §2.12: a pending subscription request from someone the user blocked is
/// not replayed at the user's next login.
#[tokio::test]
async fn pending_requests_do_not_cross_a_block() {
    let srv = Binary::start(&[("jane", "pw"), ("mal", "pw"), ("kim", "pw")], "");
    for who in ["mal", "kim"] {
        let (mut c, _) = Client::login_plain(srv.addr, who, "pw", "a").await;
        c.send("<presence to='jane@example.org' type='subscribe'/>")
            .await;
        c.drain().await;
    }
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    jane.send("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='mal@example.org'/></block></iq>")
        .await;
    jane.drain().await;
    jane.keep_presence = true;
    jane.send("<presence/>").await;
    jane.send("<iq type='get' id='fence'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut requests = Vec::new();
    loop {
        let e = jane.element().await;
        if e.attr("id") == Some("fence") {
            break;
        }
        if e.name == "presence" && e.attr("type") == Some("subscribe") {
            requests.push(e.attr("from").unwrap_or("").to_owned());
        }
    }
    assert_eq!(requests, ["kim@example.org"]);
    srv.stop();
}

/// §2.12: a password change ends the account's other sessions.
#[tokio::test]
async fn a_password_change_ends_the_other_sessions() {
    let srv = Binary::start(&[("jane", "old")], "");
    let (mut a, _) = Client::login_plain(srv.addr, "jane", "old", "a").await;
    let (mut b, _) = Client::login_plain(srv.addr, "jane", "old", "b").await;
    let r = a
        .iq("<iq type='set' id='pw'><query xmlns='jabber:iq:register'>\
             <username>jane</username><password>new</password></query></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert_eq!(b.stream_error().await, "reset");
    a.ping().await;
    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    assert!(c
        .plain("jane", "old")
        .await
        .child("not-authorized", ns::SASL)
        .is_some());
    let (mut d, _) = Client::login_plain(srv.addr, "jane", "new", "d").await;
    d.ping().await;
    srv.stop();
}

/// Gives jane private items, a roster contact (bob, both ways), a block, a
/// pending request (from kim) and a subscription to bob's node.
async fn populate_jane(srv: &Binary) -> (Client, Client) {
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    let (mut bob, _) = Client::login_plain(srv.addr, "bob", "pw", "a").await;
    Client::befriend(&mut jane, "jane@example.org", &mut bob, "bob@example.org").await;
    publish_with_access(&mut jane, "secret", "private", "whitelist").await;
    jane.send("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='mal@example.org'/></block></iq>")
        .await;
    jane.drain().await;
    let (mut kim, _) = Client::login_plain(srv.addr, "kim", "pw", "a").await;
    kim.send("<presence to='jane@example.org' type='subscribe'/>")
        .await;
    kim.drain().await;
    publish(&mut bob, "b1", 10).await;
    let r = jane
        .iq(&format!(
            "<iq type='set' id='sub' to='bob@example.org'><pubsub xmlns='{}'>\
             <subscribe node='{NODE}' jid='jane@example.org'/></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    jane.drain().await;
    bob.drain().await;
    (jane, bob)
}

/// Registers jane again and checks she inherited nothing; checks bob
/// was told and kept nothing of the old jane.
async fn new_jane_inherits_nothing(srv: &Binary, bob: &mut Client) {
    // Bob heard the old jane leave: unavailable, unsubscribed, and a
    // roster push removing her.
    bob.keep_presence = true;
    let mut heard = Vec::new();
    bob.send("<iq type='get' id='fence'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let e = bob.element().await;
        if e.attr("id") == Some("fence") {
            break;
        }
        if e.name == "presence" && e.attr("from") == Some("jane@example.org") {
            heard.push(e.attr("type").unwrap_or("").to_owned());
        }
        if let Some(item) = e.child("query", ns::ROSTER).and_then(|q| q.first_element()) {
            heard.push(format!(
                "roster {}",
                item.attr("subscription").unwrap_or("")
            ));
        }
    }
    for want in [
        "unavailable",
        "unsubscribed",
        "unsubscribe",
        "roster remove",
    ] {
        assert!(heard.iter().any(|h| h == want), "{want} in {heard:?}");
    }
    let roster = bob
        .iq("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    assert_eq!(
        roster
            .child("query", ns::ROSTER)
            .unwrap()
            .elements()
            .count(),
        0
    );
    bob.keep_presence = false;

    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    let r = c
        .iq("<iq type='set' id='reg'><query xmlns='jabber:iq:register'>\
             <username>jane</username><password>new</password></query></iq>")
        .await;
    assert_eq!(
        r.attr("type"),
        Some("result"),
        "the name is free again: {r:?}"
    );
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "new", "a").await;
    let r = own_items(&mut jane).await;
    assert_eq!(
        common::error_conditions(&r),
        ["item-not-found"],
        "old items gone"
    );
    let roster = jane
        .iq("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    assert_eq!(
        roster
            .child("query", ns::ROSTER)
            .unwrap()
            .elements()
            .count(),
        0
    );
    let blocks = jane
        .iq("<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    assert_eq!(blocks.first_element().unwrap().elements().count(), 0);
    let subs = jane
        .iq(&format!(
            "<iq type='get' id='subs' to='bob@example.org'><pubsub xmlns='{}'><subscriptions/></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    let n = subs
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("subscriptions", ns::PUBSUB))
        .map_or(0, |s| s.elements().count());
    assert_eq!(n, 0, "old subscriptions gone: {subs:?}");
    // No pending request from kim comes to the new jane.
    jane.keep_presence = true;
    jane.send("<presence/>").await;
    jane.send("<iq type='get' id='fence'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let e = jane.element().await;
        if e.attr("id") == Some("fence") {
            break;
        }
        assert_ne!(e.attr("type"), Some("subscribe"), "{e:?}");
    }
    // Bob's new posts do not reach the new jane through the old follow.
    publish(bob, "b2", 10).await;
    jane.send("<iq type='get' id='fence2'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let e = jane.element().await;
    assert_eq!(
        e.attr("id"),
        Some("fence2"),
        "nothing before the fence: {e:?}"
    );
}

const DELETION_CONFIG: &str = "allow_registration = true\n";

/// §2.5: XEP-0077 `<remove/>` deletes everything the account owned.
#[tokio::test]
async fn in_band_removal_leaves_nothing_behind() {
    let srv = Binary::start(
        &[("jane", "pw"), ("bob", "pw"), ("kim", "pw"), ("mal", "pw")],
        DELETION_CONFIG,
    );
    let (mut jane, mut bob) = populate_jane(&srv).await;
    jane.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    let r = jane.element().await;
    assert_eq!(
        (r.attr("type"), r.attr("id")),
        (Some("result"), Some("rm")),
        "{r:?}"
    );
    assert_eq!(jane.stream_error().await, "not-authorized");
    new_jane_inherits_nothing(&srv, &mut bob).await;
    srv.stop();
}

/// §2.5: `starling deluser` works while the server runs (through its
/// control socket), with the same effect.
#[tokio::test]
async fn deluser_on_a_running_server_leaves_nothing_behind() {
    let srv = Binary::start(
        &[("jane", "pw"), ("bob", "pw"), ("kim", "pw"), ("mal", "pw")],
        DELETION_CONFIG,
    );
    let (mut jane, mut bob) = populate_jane(&srv).await;
    let (ok, err) = srv.cli(&["deluser", "jane@example.org"]);
    assert!(ok && err.contains("running server"), "{err}");
    assert_eq!(jane.stream_error().await, "not-authorized");
    new_jane_inherits_nothing(&srv, &mut bob).await;
    // A second deletion names the problem.
    let (ok, err) = srv.cli(&["deluser", "nobody@example.org"]);
    assert!(!ok && err.contains("no account"), "{err}");
    srv.stop();
}

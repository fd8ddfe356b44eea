//! XEP-0191 blocking: presence, messages, iqs and notifications stop both
//! ways, and start again on unblock. Also iq routing between clients.

mod common;

use common::{error_conditions, Client, TestServer, NOTIFY};
use stanza::{ns, Element};

const ACCOUNTS: [(&str, &str); 2] = [("jane", "secret"), ("joe", "secret")];

async fn publish(c: &mut Client, id: &str) {
    let r = c
        .iq(&format!(
            "<iq type='set' id='pub-{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='urn:xmpp:microblog:0'><item id='{id}'>\
             <entry xmlns='http://www.w3.org/2005/Atom'/></item></publish></pubsub></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

fn is_event(e: &Element) -> bool {
    e.name == "message" && e.child("event", ns::PUBSUB_EVENT).is_some()
}

#[tokio::test]
async fn a_block_stops_everything_both_ways_until_unblocked() {
    let srv = TestServer::start(&ACCOUNTS, |c| c.allow_plaintext_auth = true).await;
    let (mut jane, jane_full) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    let (mut joe, joe_full) = Client::login_plain(srv.addr, "joe", "secret", "b").await;
    jane.send("<presence/>").await;
    joe.announce(NOTIFY, false, None).await;
    Client::befriend(&mut jane, "jane@example.org", &mut joe, "joe@example.org").await;
    publish(&mut jane, "before").await;
    joe.expect("the post", is_event).await;

    // iq routing between clients: joe asks jane's client, jane answers.
    joe.send(&format!(
        "<iq type='get' id='ver' to='{jane_full}'><query xmlns='jabber:iq:version'/></iq>"
    ))
    .await;
    let q = jane
        .expect("the routed iq", |e| e.attr("id") == Some("ver"))
        .await;
    assert_eq!(q.attr("from"), Some(joe_full.as_str()));
    jane.send(&format!(
        "<iq type='result' id='ver' to='{joe_full}'><query xmlns='jabber:iq:version'><name>x</name></query></iq>"
    ))
    .await;
    let a = joe
        .expect("the answer", |e| e.attr("id") == Some("ver"))
        .await;
    assert_eq!(a.attr("type"), Some("result"));
    assert_eq!(a.attr("from"), Some(jane_full.as_str()));

    // Block: pushed to jane; joe sees jane go unavailable.
    jane.keep_presence = false;
    joe.keep_presence = true;
    jane.send("<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='joe@example.org'/></block></iq>").await;
    let push = jane
        .expect("the block push", |e| e.attr("type") == Some("set"))
        .await;
    assert!(push.child("block", ns::BLOCKING).is_some(), "{push:?}");
    let r = jane
        .expect("the result", |e| e.attr("id") == Some("b1"))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    let p = joe
        .expect("unavailable", |e| {
            e.name == "presence" && e.attr("from") == Some(jane_full.as_str())
        })
        .await;
    assert_eq!(p.attr("type"), Some("unavailable"));
    joe.keep_presence = false;

    // Nothing passes: posts, messages either way, iqs.
    publish(&mut jane, "while-blocked").await;
    joe.send("<message to='jane@example.org' id='m1' type='chat'><body>hi</body></message>")
        .await;
    let e = joe.expect("a bounce", |e| e.attr("id") == Some("m1")).await;
    assert_eq!(error_conditions(&e), ["service-unavailable"]);
    jane.send("<message to='joe@example.org' id='m2' type='chat'><body>hi</body></message>")
        .await;
    let e = jane
        .expect("a bounce", |e| e.attr("id") == Some("m2"))
        .await;
    assert_eq!(error_conditions(&e), ["not-acceptable", "blocked"]);
    let r = joe
        .iq("<iq type='get' id='i1' to='jane@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:microblog:0'/></pubsub></iq>")
        .await;
    assert_eq!(error_conditions(&r), ["service-unavailable"]);
    joe.quiet().await;

    let r = jane
        .iq("<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    let items: Vec<_> = r
        .child("blocklist", ns::BLOCKING)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid").map(str::to_owned))
        .collect();
    assert_eq!(items, ["joe@example.org"]);
    let r = jane
        .iq("<iq type='set' id='b2'><block xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    assert_eq!(error_conditions(&r), ["bad-request"]);

    // Unblock everything: joe sees jane again and gets her posts.
    joe.keep_presence = true;
    jane.send("<iq type='set' id='u1'><unblock xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    let push = jane
        .expect("the unblock push", |e| e.attr("type") == Some("set"))
        .await;
    assert!(push.child("unblock", ns::BLOCKING).is_some(), "{push:?}");
    jane.expect("the result", |e| e.attr("id") == Some("u1"))
        .await;
    let p = joe
        .expect("presence", |e| {
            e.name == "presence" && e.attr("from") == Some(jane_full.as_str())
        })
        .await;
    assert_eq!(p.attr("type"), None);
    joe.keep_presence = false;
    publish(&mut jane, "after").await;
    let m = joe.expect("the post", is_event).await;
    let id = m
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
        .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
        .and_then(|i| i.attr("id"));
    assert_eq!(id, Some("after"));
    let _ = srv.stop().await;
}

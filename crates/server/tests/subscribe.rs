//! Following by explicit XEP-0060 subscription, as Movim does.

mod common;

use common::{error_conditions, Client, TestServer};
use stanza::{ns, Element};

const OPEN_NODE: &str = "urn:xmpp:microblog:0";

fn open_options() -> &'static str {
    "<publish-options><x xmlns='jabber:x:data' type='submit'>\
     <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
     <field var='pubsub#access_model'><value>open</value></field></x></publish-options>"
}

async fn publish(c: &mut Client, id: &str, options: &str) {
    c.send(&format!(
        "<iq type='set' id='pub-{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='{OPEN_NODE}'><item id='{id}'><entry xmlns='http://www.w3.org/2005/Atom'>\
         <title>{id}</title></entry></item></publish>{options}</pubsub></iq>"
    ))
    .await;
    let r = c.element().await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

async fn request(c: &mut Client, verb: &str, jid: &str) -> Element {
    c.send(&format!(
        "<iq type='set' id='s1' to='jane@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <{verb} node='{OPEN_NODE}' jid='{jid}'/></pubsub></iq>"
    ))
    .await;
    c.element().await
}

/// The next headline event's item id, and whether it carried a delay.
async fn event(c: &mut Client) -> (String, bool) {
    let m = c.element().await;
    assert_eq!(m.attr("type"), Some("headline"), "{m:?}");
    let id = m
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
        .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
        .and_then(|i| i.attr("id"))
        .unwrap()
        .to_owned();
    (id, m.child("delay", ns::DELAY).is_some())
}

#[tokio::test]
async fn subscribe_receive_unsubscribe_and_survive_a_restart() {
    let accounts = [("jane", "secret"), ("joe", "secret")];
    let srv = TestServer::start(&accounts, |c| c.allow_plaintext_auth = true).await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    publish(&mut jane, "first", open_options()).await;
    let (mut joe, joe_jid) = Client::login_plain(srv.addr, "joe", "secret", "movim").await;
    joe.send("<presence/>").await;
    joe.ping().await;

    let r = request(&mut joe, "subscribe", &joe_jid).await;
    let sub = r
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("subscription", ns::PUBSUB))
        .expect("a subscription");
    assert_eq!(sub.attr("subscription"), Some("subscribed"));
    assert_eq!(sub.attr("jid"), Some(joe_jid.as_str()));
    // The last item at once, marked as a replay.
    assert_eq!(event(&mut joe).await, ("first".to_owned(), true));
    // A live post: no delay. (A full-JID subscription needs no caps.)
    publish(&mut jane, "second", "").await;
    assert_eq!(event(&mut joe).await, ("second".to_owned(), false));

    // The subscription is durable: restart, log in again, still delivered.
    drop((jane, joe));
    let dir = srv.stop().await;
    let srv = TestServer::start_in(dir, &[], |c| c.allow_plaintext_auth = true).await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    let (mut joe, _) = Client::login_plain(srv.addr, "joe", "secret", "movim").await;
    // Coming online, the subscribed resource gets the last item replayed,
    // with no caps (explicit subscriptions get no +notify filter).
    joe.send("<presence/>").await;
    assert_eq!(event(&mut joe).await, ("second".to_owned(), true));
    joe.ping().await;
    publish(&mut jane, "third", "").await;
    assert_eq!(event(&mut joe).await, ("third".to_owned(), false));

    // Retract with notification: the follower is told, history forgets.
    let retract = format!(
        "<iq type='set' id='rt'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <retract node='{OPEN_NODE}' notify='true'><item id='third'/></retract></pubsub></iq>"
    );
    jane.send(&retract).await;
    assert_eq!(jane.element().await.attr("type"), Some("result"));
    let m = joe.element().await;
    let retracted = m
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
        .and_then(|i| i.child("retract", ns::PUBSUB_EVENT))
        .and_then(|r| r.attr("id"));
    assert_eq!(retracted, Some("third"), "{m:?}");
    jane.send(&retract).await;
    assert_eq!(error_conditions(&jane.element().await), ["item-not-found"]);
    // Only the owner retracts.
    joe.send(&retract.replace("<iq ", "<iq to='jane@example.org' "))
        .await;
    assert_eq!(error_conditions(&joe.element().await), ["forbidden"]);

    // A bare-JID subscriber that comes online with +notify gets the last
    // item replayed.
    let r = request(&mut joe, "subscribe", "joe@example.org").await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert_eq!(event(&mut joe).await, ("second".to_owned(), true));
    let (mut joe2, _) = Client::login_plain(srv.addr, "joe", "secret", "phone").await;
    joe2.announce(common::NOTIFY, false, Some("second")).await;
    let r = request(&mut joe2, "unsubscribe", "joe@example.org").await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");

    let r = request(&mut joe, "unsubscribe", &joe_jid).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    publish(&mut jane, "fourth", "").await;
    joe.ping().await;
    let r = request(&mut joe, "unsubscribe", &joe_jid).await;
    assert_eq!(
        error_conditions(&r),
        ["unexpected-request", "not-subscribed"]
    );
    let _ = srv.stop().await;
}

#[tokio::test]
async fn subscribe_errors() {
    let accounts = [("jane", "secret"), ("joe", "secret")];
    let srv = TestServer::start(&accounts, |c| c.allow_plaintext_auth = true).await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    let (mut joe, joe_jid) = Client::login_plain(srv.addr, "joe", "secret", "b").await;
    // No such node yet.
    assert_eq!(
        error_conditions(&request(&mut joe, "subscribe", &joe_jid).await),
        ["item-not-found"]
    );
    // The default access model is presence.
    publish(&mut jane, "1", "").await;
    assert_eq!(
        error_conditions(&request(&mut joe, "subscribe", &joe_jid).await),
        ["not-authorized", "presence-subscription-required"]
    );
    // Subscribing someone else.
    assert_eq!(
        error_conditions(&request(&mut joe, "subscribe", "kim@example.org").await),
        ["bad-request", "invalid-jid"]
    );
    let _ = srv.stop().await;
}

/// Publishes sent in one write are stored in one transaction and reach a
/// subscriber in order; a request behind them sees them all (RFC 6120
/// §10.1), and a refused publish in the middle fails alone.
#[tokio::test]
async fn a_burst_of_publishes_commits_once_and_keeps_its_order() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let accounts = [("jane", "secret"), ("joe", "secret")];
    let (srv, hooked) = TestServer::start_hooked(&accounts, |c| {
        c.allow_plaintext_auth = true;
        c.limits.max_item_bytes = 1024;
    })
    .await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    publish(&mut jane, "first", open_options()).await;
    let (mut joe, joe_jid) = Client::login_plain(srv.addr, "joe", "secret", "movim").await;
    joe.send("<presence/>").await;
    joe.ping().await;
    request(&mut joe, "subscribe", &joe_jid).await;
    assert_eq!(event(&mut joe).await, ("first".to_owned(), true));

    let batches = Arc::new(AtomicUsize::new(0));
    let b = batches.clone();
    hooked.set(move |call, _| {
        if call == "publish_batch" {
            b.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    });
    let post = |id: &str, payload: &str| {
        format!(
            "<iq type='set' id='pub-{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='{OPEN_NODE}'><item id='{id}'>{payload}</item></publish></pubsub></iq>"
        )
    };
    let entry = |id: &str| {
        format!("<entry xmlns='http://www.w3.org/2005/Atom'><title>{id}</title></entry>")
    };
    let mut burst: String = (1..=5)
        .map(|i| post(&format!("b{i}"), &entry(&format!("b{i}"))))
        .collect();
    // Too big for max_item_bytes: refused, the rest unaffected. (The whole
    // burst is one small write, so the server reads it at once.)
    burst.push_str(&post(
        "huge",
        &format!("<big xmlns='x'>{}</big>", "y".repeat(2000)),
    ));
    burst.push_str(&post("b6", &entry("b6")));
    burst.push_str(
        "<iq type='get' id='items'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <items node='urn:xmpp:microblog:0'/></pubsub></iq>",
    );
    jane.send(&burst).await;
    let mut answers = Vec::new();
    for _ in 0..8 {
        let r = jane.element().await;
        answers.push((
            r.attr("id").unwrap().to_owned(),
            r.attr("type").unwrap().to_owned(),
            r,
        ));
    }
    let ids: Vec<&str> = answers.iter().map(|(i, _, _)| i.as_str()).collect();
    assert_eq!(
        ids,
        ["pub-b1", "pub-b2", "pub-b3", "pub-b4", "pub-b5", "pub-huge", "pub-b6", "items"],
        "answered in the order sent"
    );
    assert_eq!(answers[5].1, "error");
    assert_eq!(
        error_conditions(&answers[5].2),
        ["not-acceptable", "payload-too-big"]
    );
    let listed: Vec<String> = answers[7]
        .2
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("id").map(str::to_owned))
        .collect();
    for i in 1..=6 {
        assert!(
            listed.contains(&format!("b{i}")),
            "b{i} stored before the query: {listed:?}"
        );
    }
    assert_eq!(
        batches.load(Ordering::SeqCst),
        1,
        "one transaction for the burst"
    );
    for i in 1..=6 {
        assert_eq!(event(&mut joe).await, (format!("b{i}"), false), "in order");
    }
    drop((jane, joe));
    srv.stop().await;
}

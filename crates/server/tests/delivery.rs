//! End to end: a publish reaches exactly the resources whose verified caps
//! carry `+notify`, through each fan-out strategy, as a headline event.

mod common;

use common::{Client, TestServer};
use stanza::ns;

use common::NOTIFY;

#[tokio::test]
async fn publish_reaches_notify_resources_through_every_strategy() {
    for &strategy in fanout::STRATEGIES {
        let srv = TestServer::start(&[("jane", "secret")], |c| {
            c.allow_plaintext_auth = true;
            c.fanout = strategy.to_owned();
        })
        .await;
        let (mut phone, _) = Client::login_plain(srv.addr, "jane", "secret", "phone").await;
        phone.announce(NOTIFY, false, None).await;
        let (mut liar, _) = Client::login_plain(srv.addr, "jane", "secret", "liar").await;
        liar.announce(NOTIFY, true, None).await;
        let (mut laptop, _) = Client::login_plain(srv.addr, "jane", "secret", "laptop").await;
        laptop.send("<presence/>").await;
        laptop.ping().await;

        laptop
            .send(
                "<iq type='set' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                 <publish node='urn:xmpp:microblog:0'><item id='8f3c'>\
                 <entry xmlns='http://www.w3.org/2005/Atom'><title>hanging out</title></entry>\
                 </item></publish></pubsub></iq>",
            )
            .await;
        assert_eq!(
            laptop.element().await.attr("type"),
            Some("result"),
            "{strategy}"
        );

        let m = phone.element().await;
        assert!(m.is("message", ns::CLIENT), "{strategy}: {m:?}");
        assert_eq!(m.attr("type"), Some("headline"));
        assert_eq!(m.attr("from"), Some("jane@example.org"));
        assert_eq!(m.attr("to"), Some("jane@example.org/phone"));
        let item = m
            .child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
            .filter(|i| i.attr("node") == Some("urn:xmpp:microblog:0"))
            .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
            .expect("an items event");
        assert_eq!(item.attr("id"), Some("8f3c"));
        assert_eq!(item.attr("publisher"), Some("jane@example.org"));
        assert_eq!(
            item.child("entry", ns::ATOM)
                .unwrap()
                .child("title", ns::ATOM)
                .unwrap()
                .text(),
            "hanging out"
        );
        // No +notify (laptop), or caps that did not verify (liar): nothing.
        laptop.ping().await;
        liar.ping().await;
        // Unavailable resources receive nothing either.
        phone.send("<presence type='unavailable'/>").await;
        phone.ping().await;
        laptop
            .send(
                "<iq type='set' id='p2'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                 <publish node='urn:xmpp:microblog:0'><item id='9'><entry xmlns='http://www.w3.org/2005/Atom'/></item>\
                 </publish></pubsub></iq>",
            )
            .await;
        assert_eq!(laptop.element().await.attr("type"), Some("result"));
        phone.ping().await;
        let _ = srv.stop().await;
    }
}

#[tokio::test]
async fn last_item_replayed_when_a_notify_resource_comes_online() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.allow_plaintext_auth = true).await;
    let (mut laptop, _) = Client::login_plain(srv.addr, "jane", "secret", "laptop").await;
    for id in ["old", "newest"] {
        laptop
            .send(&format!(
                "<iq type='set' id='{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                 <publish node='urn:xmpp:microblog:0'><item id='{id}'><entry xmlns='http://www.w3.org/2005/Atom'/></item>\
                 </publish></pubsub></iq>"
            ))
            .await;
        assert_eq!(laptop.element().await.attr("type"), Some("result"));
    }
    // The phone comes online with +notify: it gets the newest item, once,
    // marked as a replay.
    let (mut phone, _) = Client::login_plain(srv.addr, "jane", "secret", "phone").await;
    phone.announce(NOTIFY, false, Some("newest")).await;
    phone
        .send("<presence><priority>1</priority></presence>")
        .await;
    phone.ping().await;
    let _ = srv.stop().await;
}

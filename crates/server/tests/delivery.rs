//! End to end: a publish reaches exactly the resources whose verified caps
//! carry `+notify`, through each fan-out strategy, as a headline event.

mod common;

use common::{Client, TestServer};
use stanza::{ns, Element};

const NOTIFY: &str = "<feature var='urn:xmpp:microblog:0+notify'/>";
const EXODUS_VER: &str = "QgayPKawpkPSDYmwT/WM94uAlu0=";

/// Sends available presence with caps for `features`, answers the server's
/// disco#info query, and waits until the server has processed it.
async fn announce(c: &mut Client, features: &str, claim_other_ver: bool) {
    let query = format!(
        "<query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='client' type='pc' name='starling-test'/>\
         <feature var='http://jabber.org/protocol/caps'/>{features}</query>"
    );
    let real = server::caps::verification_string_hash(&Element::parse(&query).unwrap());
    let ver = if claim_other_ver {
        EXODUS_VER.to_owned()
    } else {
        real
    };
    c.send(&format!(
        "<presence><priority>1</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
         node='https://starling.test' ver='{ver}'/></presence>"
    ))
    .await;
    let iq = c.element().await;
    assert_eq!(iq.attr("type"), Some("get"), "{iq:?}");
    let q = iq
        .child("query", ns::DISCO_INFO)
        .expect("a disco#info query");
    assert_eq!(
        q.attr("node"),
        Some(format!("https://starling.test#{ver}").as_str())
    );
    let id = iq.attr("id").unwrap().to_owned();
    let from = iq.attr("from").unwrap().to_owned();
    c.send(&format!(
        "<iq type='result' id='{id}' to='{from}'>{query}</iq>"
    ))
    .await;
    c.ping().await;
}

#[tokio::test]
async fn publish_reaches_notify_resources_through_every_strategy() {
    for &strategy in fanout::STRATEGIES {
        let srv = TestServer::start(&[("jane", "secret")], |c| {
            c.allow_plaintext_auth = true;
            c.fanout = strategy.to_owned();
        })
        .await;
        let (mut phone, _) = Client::login_plain(srv.addr, "jane", "secret", "phone").await;
        announce(&mut phone, NOTIFY, false).await;
        let (mut liar, _) = Client::login_plain(srv.addr, "jane", "secret", "liar").await;
        announce(&mut liar, NOTIFY, true).await;
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

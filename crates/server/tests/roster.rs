//! Rosters and presence subscriptions (RFC 6121), and following by
//! presence: a `from`/`both` contact with `+notify` gets the owner's posts.

mod common;

use common::{error_conditions, Client, TestServer, NOTIFY};
use stanza::{ns, Element};

const ACCOUNTS: [(&str, &str); 3] = [("jane", "secret"), ("joe", "secret"), ("ann", "secret")];

async fn login(srv: &TestServer, user: &str, resource: &str) -> Client {
    let (mut c, _) = Client::login_plain(srv.addr, user, "secret", resource).await;
    c.keep_presence = true;
    c
}

/// The item of a roster push (answering it as a client must).
async fn push(c: &mut Client, contact: &str) -> Element {
    let iq = c
        .expect("a roster push", |e| {
            e.name == "iq"
                && e.attr("type") == Some("set")
                && e.child("query", ns::ROSTER).is_some()
        })
        .await;
    let id = iq.attr("id").unwrap().to_owned();
    c.send(&format!("<iq type='result' id='{id}'/>")).await;
    let item = iq
        .child("query", ns::ROSTER)
        .and_then(|q| q.child("item", ns::ROSTER))
        .unwrap()
        .clone();
    assert_eq!(item.attr("jid"), Some(contact));
    item
}

async fn presence(c: &mut Client, from: &str, ty: Option<&str>) -> Element {
    c.expect(&format!("presence {ty:?} from {from}"), |e| {
        e.name == "presence" && e.attr("from") == Some(from) && e.attr("type") == ty
    })
    .await
}

async fn roster(c: &mut Client) -> Vec<(String, String, bool)> {
    c.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let r = c.expect("the roster", |e| e.attr("id") == Some("r1")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    r.child("query", ns::ROSTER)
        .unwrap()
        .elements()
        .map(|i| {
            (
                i.attr("jid").unwrap().to_owned(),
                i.attr("subscription").unwrap().to_owned(),
                i.attr("ask") == Some("subscribe"),
            )
        })
        .collect()
}

async fn publish(c: &mut Client, id: &str) {
    c.send(&format!(
        "<iq type='set' id='pub-{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='urn:xmpp:microblog:0'><item id='{id}'>\
         <entry xmlns='http://www.w3.org/2005/Atom'><title>{id}</title></entry></item></publish></pubsub></iq>"
    ))
    .await;
    let r = c
        .expect("the publish result", |e| {
            e.attr("id") == Some(&format!("pub-{id}"))
        })
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

async fn event_id(c: &mut Client) -> String {
    let m = c.expect("an event", |e| e.name == "message").await;
    m.child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
        .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
        .and_then(|i| i.attr("id"))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn subscribe_approve_follow_by_presence_and_unsubscribe() {
    let srv = TestServer::start(&ACCOUNTS, |c| c.allow_plaintext_auth = true).await;
    let mut jane = login(&srv, "jane", "phone").await;
    jane.send("<presence/>").await;
    jane.quiet().await;
    let mut joe = login(&srv, "joe", "reader").await;
    joe.keep_presence = false;
    joe.announce(NOTIFY, false, None).await;
    joe.keep_presence = true;

    // Before any subscription, the presence access model keeps joe out.
    publish(&mut jane, "before").await;
    joe.send(
        "<iq type='get' id='h0' to='jane@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <items node='urn:xmpp:microblog:0'/></pubsub></iq>",
    )
    .await;
    let r = joe
        .expect("the items error", |e| e.attr("id") == Some("h0"))
        .await;
    assert_eq!(
        error_conditions(&r),
        ["not-authorized", "presence-subscription-required"]
    );

    // 1. joe asks: pending out, pushed to joe, routed to jane.
    joe.send("<presence to='jane@example.org' type='subscribe'/>")
        .await;
    let item = push(&mut joe, "jane@example.org").await;
    assert_eq!(
        (item.attr("subscription"), item.attr("ask")),
        (Some("none"), Some("subscribe"))
    );
    presence(&mut jane, "joe@example.org", Some("subscribe")).await;

    // 2. jane approves: jane's item is `from`, joe's `to`; joe hears the
    // approval and jane's current presence.
    jane.send("<presence to='joe@example.org' type='subscribed'/>")
        .await;
    let item = push(&mut jane, "joe@example.org").await;
    assert_eq!(item.attr("subscription"), Some("from"));
    let item = push(&mut joe, "jane@example.org").await;
    assert_eq!(
        (item.attr("subscription"), item.attr("ask")),
        (Some("to"), None)
    );
    presence(&mut joe, "jane@example.org", Some("subscribed")).await;
    presence(&mut joe, "jane@example.org/phone", None).await;
    assert_eq!(
        roster(&mut jane).await,
        [("joe@example.org".to_owned(), "from".to_owned(), false)]
    );
    assert_eq!(
        roster(&mut joe).await,
        [("jane@example.org".to_owned(), "to".to_owned(), false)]
    );

    // 3. Following by presence: joe (+notify) gets jane's post.
    publish(&mut jane, "hello").await;
    assert_eq!(event_id(&mut joe).await, "hello");
    // Jane's presence changes reach joe; joe's do not reach jane (`to`).
    jane.send("<presence><show>away</show></presence>").await;
    let p = presence(&mut joe, "jane@example.org/phone", None).await;
    assert_eq!(
        p.child("show", ns::CLIENT).map(|s| s.text().into_owned()),
        Some("away".into())
    );
    joe.send("<presence><show>dnd</show></presence>").await;
    joe.quiet().await;
    jane.quiet().await;

    // 4. joe unsubscribes: jane's item is `none`, joe gets unavailable
    // from jane, and no more posts.
    joe.send("<presence to='jane@example.org' type='unsubscribe'/>")
        .await;
    let item = push(&mut joe, "jane@example.org").await;
    assert_eq!(item.attr("subscription"), Some("none"));
    presence(&mut joe, "jane@example.org/phone", Some("unavailable")).await;
    let item = push(&mut jane, "joe@example.org").await;
    assert_eq!(item.attr("subscription"), Some("none"));
    presence(&mut jane, "joe@example.org", Some("unsubscribe")).await;
    publish(&mut jane, "after").await;
    joe.quiet().await;
    let _ = srv.stop().await;
}

#[tokio::test]
async fn both_ways_survives_a_restart_and_disconnects_are_seen() {
    let srv = TestServer::start(&ACCOUNTS, |c| c.allow_plaintext_auth = true).await;
    let mut jane = login(&srv, "jane", "a").await;
    let mut joe = login(&srv, "joe", "b").await;
    // Pre-approval: jane approves before joe asks (RFC 6121 §3.4).
    jane.send("<presence to='joe@example.org' type='subscribed'/>")
        .await;
    let item = push(&mut jane, "joe@example.org").await;
    assert_eq!(item.attr("approved"), None, "approved is not shown");
    joe.send("<presence to='jane@example.org' type='subscribe'/>")
        .await;
    // The request and the stored approval meet in one step: one push.
    let item = push(&mut joe, "jane@example.org").await;
    assert_eq!(item.attr("subscription"), Some("to"));
    assert_eq!(item.attr("ask"), None);
    let item = push(&mut jane, "joe@example.org").await;
    assert_eq!(item.attr("subscription"), Some("from"));
    // The reverse direction, while joe is offline: the request waits.
    drop(joe);
    jane.send("<presence to='joe@example.org' type='subscribe'/>")
        .await;
    let item = push(&mut jane, "joe@example.org").await;
    assert_eq!(
        (item.attr("subscription"), item.attr("ask")),
        (Some("from"), Some("subscribe"))
    );
    jane.quiet().await;
    let dir = srv.stop().await;

    let srv = TestServer::start_in(dir, &[], |c| c.allow_plaintext_auth = true).await;
    let mut joe = login(&srv, "joe", "b").await;
    joe.send("<presence/>").await;
    presence(&mut joe, "jane@example.org", Some("subscribe")).await;
    joe.send("<presence to='jane@example.org' type='subscribed'/>")
        .await;
    let item = push(&mut joe, "jane@example.org").await;
    assert_eq!(item.attr("subscription"), Some("both"));
    let mut jane = login(&srv, "jane", "a").await;
    jane.keep_presence = false;
    jane.announce(NOTIFY, false, None).await;
    jane.keep_presence = true;
    assert_eq!(
        roster(&mut jane).await,
        [("joe@example.org".to_owned(), "both".to_owned(), false)]
    );
    // joe saw jane come online, and sees her leave; the follow survived
    // the restart.
    presence(&mut joe, "jane@example.org/a", None).await;
    publish(&mut joe, "after-restart").await;
    assert_eq!(event_id(&mut jane).await, "after-restart");
    drop(jane);
    presence(&mut joe, "jane@example.org/a", Some("unavailable")).await;
    let _ = srv.stop().await;
}

#[tokio::test]
async fn roster_set_remove_and_errors() {
    let srv = TestServer::start(&ACCOUNTS, |c| c.allow_plaintext_auth = true).await;
    let mut jane = login(&srv, "jane", "a").await;
    let mut ann = login(&srv, "ann", "b").await;
    ann.send("<presence/>").await;
    ann.quiet().await;
    jane.send(
        "<iq type='set' id='s1'><query xmlns='jabber:iq:roster'>\
         <item jid='ann@example.org' name='Ann'><group>friends</group></item></query></iq>",
    )
    .await;
    let item = push(&mut jane, "ann@example.org").await;
    assert_eq!(item.attr("name"), Some("Ann"));
    assert_eq!(
        item.child("group", ns::ROSTER)
            .map(|g| g.text().into_owned()),
        Some("friends".into())
    );
    let r = jane
        .expect("the set result", |e| e.attr("id") == Some("s1"))
        .await;
    assert_eq!(r.attr("type"), Some("result"));

    // A subscription both ways, then remove: ann hears both cancellations.
    jane.send("<presence to='ann@example.org' type='subscribe'/>")
        .await;
    push(&mut jane, "ann@example.org").await;
    presence(&mut ann, "jane@example.org", Some("subscribe")).await;
    ann.send("<presence to='jane@example.org' type='subscribed'/>")
        .await;
    push(&mut ann, "jane@example.org").await;
    push(&mut jane, "ann@example.org").await;
    jane.send("<iq type='set' id='s2'><query xmlns='jabber:iq:roster'><item jid='ann@example.org' subscription='remove'/></query></iq>").await;
    let item = push(&mut jane, "ann@example.org").await;
    assert_eq!(item.attr("subscription"), Some("remove"));
    let item = push(&mut ann, "jane@example.org").await;
    assert_eq!(item.attr("subscription"), Some("none"));
    presence(&mut ann, "jane@example.org", Some("unsubscribe")).await;
    let r = jane
        .expect("the remove result", |e| e.attr("id") == Some("s2"))
        .await;
    assert_eq!(r.attr("type"), Some("result"));
    assert!(roster(&mut jane).await.is_empty());

    for (xml, cond) in [
        (
            "<iq type='set' id='e1'><query xmlns='jabber:iq:roster'><item jid='a@example.org'/><item jid='b@example.org'/></query></iq>",
            "bad-request",
        ),
        (
            "<iq type='set' id='e1'><query xmlns='jabber:iq:roster'><item jid='a@@example.org'/></query></iq>",
            "jid-malformed",
        ),
        (
            "<iq type='set' id='e1'><query xmlns='jabber:iq:roster'><item jid='nobody@example.org' subscription='remove'/></query></iq>",
            "item-not-found",
        ),
    ] {
        jane.send(xml).await;
        let r = jane.expect("an error", |e| e.attr("id") == Some("e1")).await;
        assert_eq!(error_conditions(&r), [cond], "{xml}");
    }
    // A subscription to another domain's account: our half runs (pending
    // out, pushed), and the request goes to that domain's server.
    jane.send("<presence to='x@elsewhere.example' type='subscribe' id='f'/>")
        .await;
    let item = push(&mut jane, "x@elsewhere.example").await;
    assert_eq!(
        (item.attr("subscription"), item.attr("ask")),
        (Some("none"), Some("subscribe"))
    );
    let _ = srv.stop().await;
}

//! Stream management (XEP-0198): acks, and a session that outlives its
//! connection until it is resumed or times out.

mod common;

use common::{error_conditions, Client, TestServer, DOMAIN};
use stanza::{ns, Element};

const SM: &str = "urn:xmpp:sm:3";
const ACCOUNTS: [(&str, &str); 2] = [("jane", "secret"), ("joe", "secret")];

async fn start(timeout_secs: u64) -> TestServer {
    TestServer::start(&ACCOUNTS, |c| {
        c.allow_plaintext_auth = true;
        c.limits.resumption_timeout_secs = timeout_secs;
    })
    .await
}

/// jane's open microblog node, so joe can follow it explicitly.
async fn jane_with_open_node(srv: &TestServer) -> Client {
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "phone").await;
    publish(&mut jane, "p0", true).await;
    jane
}

async fn publish(jane: &mut Client, id: &str, open: bool) {
    let options = if open {
        "<publish-options><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='pubsub#access_model'><value>open</value></field></x></publish-options>"
    } else {
        ""
    };
    let r = jane
        .iq(&format!(
            "<iq type='set' id='pub-{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='urn:xmpp:microblog:0'><item id='{id}'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>{id}</title></entry></item></publish>{options}</pubsub></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

/// joe, subscribed to jane's node, available, with resumption enabled;
/// returns the resumption id.
async fn joe_resumable(srv: &TestServer) -> (Client, String) {
    let (mut joe, _) = Client::login_plain(srv.addr, "joe", "secret", "r").await;
    let r = joe
        .iq("<iq type='set' id='s1' to='jane@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <subscribe node='urn:xmpp:microblog:0' jid='joe@example.org'/></pubsub></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    joe.send("<presence/>").await;
    joe.drain().await;
    joe.send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await;
    let e = joe.element().await;
    assert!(e.is("enabled", SM), "{e:?}");
    assert_eq!(e.attr("resume"), Some("true"));
    (joe, e.attr("id").unwrap().to_owned())
}

/// The item id of a pubsub event message.
fn event_item(m: &Element) -> Option<String> {
    m.child("event", ns::PUBSUB_EVENT)?
        .child("items", ns::PUBSUB_EVENT)?
        .child("item", ns::PUBSUB_EVENT)?
        .attr("id")
        .map(str::to_owned)
}

/// Authenticates a new connection and asks to resume `previd`.
async fn resume(srv: &TestServer, user: &str, previd: &str, h: u32) -> (Client, Element) {
    let mut c = Client::connect(srv.addr).await;
    c.open(DOMAIN).await;
    let ok = c.plain(user, "secret").await;
    assert!(ok.is("success", ns::SASL), "{ok:?}");
    let f = c.open(DOMAIN).await;
    assert!(
        f.child("sm", SM).is_some(),
        "stream management is offered: {f:?}"
    );
    c.send(&format!("<resume xmlns='{SM}' previd='{previd}' h='{h}'/>"))
        .await;
    let answer = c.element().await;
    (c, answer)
}

#[tokio::test]
async fn acks_count_handled_stanzas() {
    let srv = start(300).await;
    let (mut joe, _) = Client::login_plain(srv.addr, "joe", "secret", "r").await;
    joe.send(&format!("<enable xmlns='{SM}'/>")).await;
    let e = joe.element().await;
    assert!(e.is("enabled", SM) && e.attr("id").is_none(), "{e:?}");
    joe.send(&format!("<r xmlns='{SM}'/>")).await;
    let a = joe.element().await;
    assert_eq!((a.name.as_str(), a.attr("h")), ("a", Some("0")));
    joe.iq("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    joe.send(&format!("<r xmlns='{SM}'/>")).await;
    let a = joe.element().await;
    assert_eq!(a.attr("h"), Some("1"), "the ping was handled");
    // Enabling twice is refused; acking what was never sent ends the stream.
    joe.send(&format!("<enable xmlns='{SM}'/>")).await;
    let f = joe.element().await;
    assert!(f.is("failed", SM), "{f:?}");
    joe.send(&format!("<a xmlns='{SM}' h='5'/>")).await;
    assert_eq!(joe.stream_error().await, "undefined-condition");
    srv.stop().await;
}

#[tokio::test]
async fn posts_published_while_disconnected_arrive_after_the_resume_once() {
    let srv = start(300).await;
    let mut jane = jane_with_open_node(&srv).await;
    let (mut joe, id) = joe_resumable(&srv).await;
    publish(&mut jane, "p1", false).await;
    let m = joe.element().await;
    assert_eq!(event_item(&m).as_deref(), Some("p1"));
    // The connection drops; joe had handled p1 but not said so.
    drop(joe);
    publish(&mut jane, "p2", false).await;
    publish(&mut jane, "p3", false).await;

    // Another account cannot take joe's session.
    let (_, failed) = resume(&srv, "jane", &id, 0).await;
    assert!(failed.is("failed", SM), "{failed:?}");
    assert!(failed.child("item-not-found", ns::STANZA_ERRORS).is_some());

    let (mut joe, resumed) = resume(&srv, "joe", &id, 1).await;
    assert!(resumed.is("resumed", SM), "{resumed:?}");
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(event_item(&joe.element().await).unwrap());
    }
    assert_eq!(got, ["p2", "p3"]);
    // Nothing more, and the session works on: a ping answers.
    joe.quiet().await;
    publish(&mut jane, "p4", false).await;
    assert_eq!(event_item(&joe.element().await).as_deref(), Some("p4"));
    // A resumption id serves once.
    let (_, again) = resume(&srv, "joe", &id, 0).await;
    assert!(again.is("failed", SM), "{again:?}");
    srv.stop().await;
}

#[tokio::test]
async fn after_the_timeout_the_session_ends_and_messages_bounce() {
    let srv = start(1).await;
    let mut jane = jane_with_open_node(&srv).await;
    let (joe, id) = joe_resumable(&srv).await;
    drop(joe);
    // Sent while joe is detached: queued for him, never delivered.
    jane.send("<message to='joe@example.org/r' id='m1' type='chat'><body>hi</body></message>")
        .await;
    let bounce = jane
        .expect("the bounce", |e| {
            e.name == "message" && e.attr("id") == Some("m1")
        })
        .await;
    assert_eq!(error_conditions(&bounce), ["service-unavailable"]);
    let (_, failed) = resume(&srv, "joe", &id, 0).await;
    assert!(failed.is("failed", SM), "{failed:?}");
    srv.stop().await;
}

/// A client often comes back before the server saw its old connection
/// die: the resumption takes the session from the old connection.
#[tokio::test]
async fn a_resumption_takes_the_session_from_a_connection_not_yet_dead() {
    let srv = start(300).await;
    let mut jane = jane_with_open_node(&srv).await;
    let (mut old, id) = joe_resumable(&srv).await;
    publish(&mut jane, "p1", false).await;
    assert_eq!(event_item(&old.element().await).as_deref(), Some("p1"));
    let (mut joe, resumed) = resume(&srv, "joe", &id, 0).await;
    assert!(resumed.is("resumed", SM), "{resumed:?}");
    // Not acknowledged, so sent again on the new connection.
    assert_eq!(event_item(&joe.element().await).as_deref(), Some("p1"));
    publish(&mut jane, "p2", false).await;
    assert_eq!(event_item(&joe.element().await).as_deref(), Some("p2"));
    // The old connection was let go.
    assert!(old.next().await.is_none(), "the old connection is closed");
    srv.stop().await;
}

/// A session whose queue overflowed while it was detached is not
/// resumable: its client reads what it missed from history instead.
#[tokio::test]
async fn a_session_that_overflowed_is_not_resumable() {
    let srv = TestServer::start(&ACCOUNTS, |c| {
        c.allow_plaintext_auth = true;
        c.limits.outbound_queue = 4;
    })
    .await;
    let mut jane = jane_with_open_node(&srv).await;
    let (joe, id) = joe_resumable(&srv).await;
    drop(joe);
    // More posts than the detached session's queue holds.
    for i in 1..=8 {
        publish(&mut jane, &format!("o{i}"), false).await;
    }
    let (_, failed) = resume(&srv, "joe", &id, 0).await;
    assert!(failed.is("failed", SM), "{failed:?}");
    assert!(failed.child("item-not-found", ns::STANZA_ERRORS).is_some());
    srv.stop().await;
}

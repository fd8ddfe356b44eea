//! PEP publish and items retrieval against `server::run` on port 0.

mod common;

use common::{error_conditions, Client, TestServer};
use stanza::{ns, Element};

const MB: &str = "urn:xmpp:microblog:0";

fn entry(title: &str) -> String {
    format!(
        "<entry xmlns='http://www.w3.org/2005/Atom'><title type='text'>{title}</title>\
         <id>tag:example.org,2026:{title}</id><published>2026-11-24T10:00:00Z</published></entry>"
    )
}

async fn publish(c: &mut Client, id: Option<&str>, payload: &str, options: &str) -> Element {
    let id_attr = id.map_or(String::new(), |i| format!(" id='{i}'"));
    c.send(&format!(
        "<iq type='set' id='pub'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='{MB}'><item{id_attr}>{payload}</item></publish>{options}</pubsub></iq>"
    ))
    .await;
    c.element().await
}

fn options(access: &str) -> String {
    format!(
        "<publish-options><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='pubsub#access_model'><value>{access}</value></field></x></publish-options>"
    )
}

async fn items(c: &mut Client, owner: &str, inner: &str) -> Element {
    c.send(&format!(
        "<iq type='get' id='it' to='{owner}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>{inner}</pubsub></iq>"
    ))
    .await;
    c.element().await
}

fn item_ids(reply: &Element) -> Vec<String> {
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    reply
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .map(|i| {
            i.elements()
                .map(|e| e.attr("id").unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn publish_then_fetch_history() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.allow_plaintext_auth = true).await;
    let (mut c, _) = Client::login_plain(srv.addr, "jane", "secret", "phone").await;
    let r = publish(&mut c, Some("8f3c"), &entry("park"), "").await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let item = r
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("publish", ns::PUBSUB))
        .and_then(|p| p.child("item", ns::PUBSUB))
        .unwrap();
    assert_eq!(item.attr("id"), Some("8f3c"));
    // No id: the server makes one and says which.
    let r = publish(&mut c, None, &entry("lake"), "").await;
    let made = r
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("publish", ns::PUBSUB))
        .and_then(|p| p.child("item", ns::PUBSUB))
        .and_then(|i| i.attr("id"))
        .unwrap()
        .to_owned();
    assert!(!made.is_empty());
    publish(&mut c, Some("x3"), &entry("hill"), "").await;
    // Republishing an id replaces it and makes it the newest.
    publish(&mut c, Some("8f3c"), &entry("park again"), "").await;
    let all = items(&mut c, "jane@example.org", &format!("<items node='{MB}'/>")).await;
    assert_eq!(item_ids(&all), [made.as_str(), "x3", "8f3c"]);
    let newest = items(
        &mut c,
        "jane@example.org",
        &format!("<items node='{MB}' max_items='2'/>"),
    )
    .await;
    assert_eq!(item_ids(&newest), ["x3", "8f3c"]);
    let one = items(
        &mut c,
        "jane@example.org",
        &format!("<items node='{MB}'><item id='x3'/></items>"),
    )
    .await;
    assert_eq!(item_ids(&one), ["x3"]);
    // The payload comes back as published.
    let entry_el = all
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .and_then(|i| i.elements().last())
        .and_then(|i| i.child("entry", ns::ATOM))
        .unwrap();
    assert_eq!(
        entry_el.child("title", ns::ATOM).unwrap().text(),
        "park again"
    );
    let missing = items(
        &mut c,
        "jane@example.org",
        "<items node='urn:example:none'/>",
    )
    .await;
    assert_eq!(error_conditions(&missing), ["item-not-found"]);
    let _ = srv.stop().await;
}

#[tokio::test]
async fn entry_using_a_prefix_declared_on_pubsub_is_stored_complete() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.allow_plaintext_auth = true).await;
    let (mut c, _) = Client::login_plain(srv.addr, "jane", "secret", "phone").await;
    c.send(&format!(
        "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub' xmlns:a='http://www.w3.org/2005/Atom'>\
         <publish node='{MB}'><item id='pre'><a:entry><a:title>prefixed</a:title></a:entry></item></publish></pubsub></iq>"
    ))
    .await;
    assert_eq!(c.element().await.attr("type"), Some("result"));
    let all = items(&mut c, "jane@example.org", &format!("<items node='{MB}'/>")).await;
    let entry = all
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .and_then(|i| i.first_element())
        .and_then(|i| i.child("entry", ns::ATOM))
        .expect("the entry keeps its Atom namespace");
    assert_eq!(entry.child("title", ns::ATOM).unwrap().text(), "prefixed");
    let _ = srv.stop().await;
}

#[tokio::test]
async fn access_models_and_publish_options() {
    let srv = TestServer::start(&[("jane", "secret"), ("joe", "secret")], |c| {
        c.allow_plaintext_auth = true
    })
    .await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    let (mut joe, _) = Client::login_plain(srv.addr, "joe", "secret", "b").await;
    // Default PEP access is presence: without a subscription, refused.
    publish(&mut jane, Some("1"), &entry("one"), "").await;
    let r = items(
        &mut joe,
        "jane@example.org",
        &format!("<items node='{MB}'/>"),
    )
    .await;
    assert_eq!(
        error_conditions(&r),
        ["not-authorized", "presence-subscription-required"]
    );
    // publish-options that disagree with the node: conflict.
    let r = publish(&mut jane, Some("2"), &entry("two"), &options("open")).await;
    assert_eq!(error_conditions(&r), ["conflict", "precondition-not-met"]);
    // A new node created open by its first publish is readable by anyone.
    jane.send(&format!(
        "<iq type='set' id='o'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='urn:example:open'><item id='o1'>{}</item></publish>{}</pubsub></iq>",
        entry("open"),
        options("open")
    ))
    .await;
    assert_eq!(jane.element().await.attr("type"), Some("result"));
    let r = items(
        &mut joe,
        "jane@example.org",
        "<items node='urn:example:open'/>",
    )
    .await;
    assert_eq!(item_ids(&r), ["o1"]);
    // Nobody publishes to someone else's PEP service.
    joe.send(&format!(
        "<iq type='set' id='f' to='jane@example.org'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='{MB}'><item>{}</item></publish></pubsub></iq>",
        entry("forged")
    ))
    .await;
    assert_eq!(error_conditions(&joe.element().await), ["forbidden"]);
    let _ = srv.stop().await;
}

#[tokio::test]
async fn published_items_survive_a_restart() {
    let srv = TestServer::start(&[("jane", "secret")], |c| c.allow_plaintext_auth = true).await;
    let (mut c, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    for i in 0..5 {
        let r = publish(
            &mut c,
            Some(&format!("p{i}")),
            &entry(&format!("post {i}")),
            "",
        )
        .await;
        assert_eq!(r.attr("type"), Some("result"));
    }
    drop(c);
    let dir = srv.stop().await;
    let srv = TestServer::start_in(dir, &[], |c| c.allow_plaintext_auth = true).await;
    let (mut c, _) = Client::login_plain(srv.addr, "jane", "secret", "a").await;
    let all = items(&mut c, "jane@example.org", &format!("<items node='{MB}'/>")).await;
    assert_eq!(item_ids(&all), ["p0", "p1", "p2", "p3", "p4"]);
    let _ = srv.stop().await;
}

//! What the server does when the store fails, or when another change
//! commits between a request's decision and its write: through a
//! [`server::store::hooked::Hooked`] store.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{error_conditions, Client, TestServer, DOMAIN};
use server::store::hooked::Hooked;
use server::StoreError;
use stanza::{BareJid, Element};

const ACCOUNTS: [(&str, &str); 2] = [("jane", "secret"), ("joe", "secret")];

async fn login(srv: &TestServer, user: &str) -> Client {
    let (mut c, _) = Client::login_plain(srv.addr, user, "secret", "r").await;
    c.keep_presence = true;
    c.send("<presence/>").await;
    c.drain().await;
    c
}

fn bare(user: &str) -> BareJid {
    BareJid::new(&format!("{user}@{DOMAIN}")).unwrap()
}

/// Fails every `call` from now on.
fn fail(hooked: &Hooked, call: &'static str) {
    hooked.set(move |c, _| {
        if c == call {
            Err(Hooked::injected())
        } else {
            Ok(())
        }
    });
}

/// Runs `change` on the inner store once, just before the first `call`:
/// as if another request had committed it while this one was deciding.
fn before_first(
    hooked: &Hooked,
    call: &'static str,
    change: impl Fn(&dyn server::Store) -> Result<(), StoreError> + Send + Sync + 'static,
) {
    let done = AtomicBool::new(false);
    hooked.set(move |c, inner| {
        if c == call && !done.swap(true, Ordering::SeqCst) {
            change(inner)?;
        }
        Ok(())
    });
}

/// Every stanza up to and including the one `last` matches.
async fn until(c: &mut Client, last: impl Fn(&Element) -> bool) -> Vec<Element> {
    let mut seen = Vec::new();
    for _ in 0..32 {
        let e = c.element().await;
        let end = last(&e);
        seen.push(e);
        if end {
            return seen;
        }
    }
    panic!("no end stanza in {seen:?}");
}

/// The JIDs in `c`'s roster.
async fn roster_of(c: &mut Client) -> Vec<String> {
    let r = c
        .iq("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    r.child("query", stanza::ns::ROSTER)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("jid").map(str::to_owned))
        .collect()
}

fn presences(seen: &[Element]) -> Vec<&Element> {
    seen.iter()
        .filter(|e| e.name == "presence" && e.attr("from") != e.attr("to"))
        .collect()
}

#[tokio::test]
async fn a_failed_access_refresh_fails_the_request() {
    let (srv, hooked) =
        TestServer::start_hooked(&ACCOUNTS, |c| c.allow_plaintext_auth = true).await;
    let mut jane = login(&srv, "jane").await;
    let r = jane
        .iq("<iq type='set' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='urn:xmpp:microblog:0'><item id='a'><entry xmlns='http://www.w3.org/2005/Atom'/></item></publish>\
             </pubsub></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");

    // The refresh reads the owner's nodes first; failing that read must
    // fail each request that changes who may read them.
    fail(&hooked, "nodes_of");
    jane.send(
        "<iq type='set' id='set'><query xmlns='jabber:iq:roster'>\
         <item jid='joe@example.org' name='Joe'/></query></iq>",
    )
    .await;
    let seen = until(&mut jane, |e| e.attr("id") == Some("set")).await;
    assert_eq!(
        error_conditions(seen.last().unwrap()),
        ["internal-server-error"]
    );
    let r = jane
        .iq("<iq type='set' id='cfg'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>\
             <configure node='urn:xmpp:microblog:0'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
             <field var='pubsub#access_model'><value>roster</value></field></x></configure></pubsub></iq>")
        .await;
    assert_eq!(error_conditions(&r), ["internal-server-error"]);
    jane.send(
        "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'>\
         <item jid='joe@example.org' subscription='remove'/></query></iq>",
    )
    .await;
    let seen = until(&mut jane, |e| e.attr("id") == Some("rm")).await;
    assert_eq!(
        error_conditions(seen.last().unwrap()),
        ["internal-server-error"]
    );

    // With the store well again, the same requests succeed.
    hooked.clear();
    jane.send(
        "<iq type='set' id='set2'><query xmlns='jabber:iq:roster'>\
         <item jid='joe@example.org' name='Joe'/></query></iq>",
    )
    .await;
    let seen = until(&mut jane, |e| e.attr("id") == Some("set2")).await;
    assert_eq!(seen.last().unwrap().attr("type"), Some("result"));
    srv.stop().await;
}

/// jane and joe are `both`; just before jane's `request` writes (its store
/// `call`), joe's own removal of jane commits. jane's server must settle
/// from the state its transaction saw (no subscription left either way), so
/// neither side is sent an `unavailable` for a subscription already gone.
/// `answer` is the id of the iq that answers (or follows) the request.
async fn race_with_joe_removing_jane(call: &'static str, request: &str, answer: &str) {
    let (srv, hooked) =
        TestServer::start_hooked(&ACCOUNTS, |c| c.allow_plaintext_auth = true).await;
    let mut jane = login(&srv, "jane").await;
    let mut joe = login(&srv, "joe").await;
    Client::befriend(&mut jane, "jane@example.org", &mut joe, "joe@example.org").await;

    before_first(&hooked, call, |inner| {
        inner.roster_remove(&bare("joe"), &bare("jane"), true)?;
        Ok(())
    });
    jane.send(request).await;
    let seen = until(&mut jane, |e| e.attr("id") == Some(answer)).await;
    assert_eq!(seen.last().unwrap().attr("type"), Some("result"));
    assert!(presences(&seen).is_empty(), "jane got {seen:?}");
    // Anything the request sent joe is queued before this message.
    jane.send("<message to='joe@example.org/r' id='m'><body>after</body></message>")
        .await;
    let seen = until(&mut joe, |e| e.name == "message").await;
    assert!(presences(&seen).is_empty(), "joe got {seen:?}");
    assert!(roster_of(&mut joe).await.is_empty(), "the race ran");
    srv.stop().await;
}

#[tokio::test]
async fn a_removal_settles_from_the_state_its_transaction_saw() {
    race_with_joe_removing_jane(
        "roster_remove",
        "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'>\
         <item jid='joe@example.org' subscription='remove'/></query></iq>",
        "rm",
    )
    .await;
}

/// The same race for a subscription stanza, which has no answer: a ping
/// behind it marks where its effects end.
#[tokio::test]
async fn an_unsubscribe_settles_from_the_state_its_transaction_saw() {
    race_with_joe_removing_jane(
        "subscription",
        "<presence to='joe@example.org' type='unsubscribe'/>\
         <iq type='get' id='barrier'><ping xmlns='urn:xmpp:ping'/></iq>",
        "barrier",
    )
    .await;
}

/// A subscription that commits just before a node's deletion goes with the
/// node: the deletion reads the subscribers in its own transaction, so
/// nothing lingers without its node.
#[test]
fn a_node_deletion_takes_a_subscription_that_raced_it() {
    use server::store::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let hooked = Hooked::new(Arc::new(server::Redb::open(dir.path()).unwrap()));
    let node = "urn:xmpp:microblog:0";
    let req = server::store::PublishRequest {
        owner: bare("jane"),
        node: node.into(),
        item: server::pubsub::StoredItem {
            id: "a".into(),
            publisher: "jane@example.org".into(),
            payload: "<entry xmlns='http://www.w3.org/2005/Atom'/>".into(),
            published_ms: 1,
        },
        options: None,
        max_nodes: 10,
    };
    assert!(hooked.publish_batch(&[req]).unwrap()[0].is_ok());
    let joe = stanza::Jid::new("joe@example.org/r").unwrap();
    let j = joe.clone();
    before_first(&hooked, "delete_node", move |inner| {
        inner.subscribe(&bare("jane"), node, &j)
    });
    let removed = hooked.delete_node(&bare("jane"), node).unwrap().unwrap();
    assert_eq!(removed, vec![joe]);
    assert!(hooked.subscriptions_of(&bare("joe")).unwrap().is_empty());
    assert!(hooked.all_subscriptions().unwrap().is_empty());
}

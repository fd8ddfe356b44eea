//! What a hostile client tried, against the `starling` binary (the release
//! build in CI, through `STARLING_BIN`): each test fails on the behaviour it
//! was written for, and asserts counts, bytes and states, never speed.
//! Settings are made small so the limits are reached quickly; waits are
//! bounded and generous, for CI's 2 shared cores.

//!
//! # Layout
//! - `login`: before the bind (handshake deadline, pre-auth size, SCRAM
//!   probes, registration limits, login back-off, password change);
//! - `memory`: what one client can make the server hold (replies, slow
//!   readers, caps state, quotas);
//! - `privacy`: what one user can learn or keep of another (disco, blocks,
//!   account deletion);
//! - `xml`: characters XML forbids.

#[path = "../common/mod.rs"]
mod common;

mod login;
mod memory;
mod privacy;
mod xml;

use common::binary::Binary;
use common::Client;
use stanza::{ns, Element};

const NODE: &str = "urn:xmpp:microblog:0";

/// Publishes item `id` with a title of `size` bytes to the microblog node.
pub(crate) async fn publish(c: &mut Client, id: &str, size: usize) {
    let title = "x".repeat(size);
    let r = c
        .iq(&format!(
            "<iq type='set' id='pub-{id}'><pubsub xmlns='{}'><publish node='{NODE}'>\
             <item id='{id}'><entry xmlns='http://www.w3.org/2005/Atom'><title>{title}</title>\
             </entry></item></publish></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

/// The ids of the items in an items reply, and its RSM `<first index>`.
pub(crate) fn item_ids(reply: &Element) -> (Vec<String>, Option<String>) {
    assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
    let pubsub = reply.child("pubsub", ns::PUBSUB).unwrap();
    let ids = pubsub
        .child("items", ns::PUBSUB)
        .unwrap()
        .elements()
        .filter_map(|i| i.attr("id").map(str::to_owned))
        .collect();
    let index = pubsub
        .child("set", ns::RSM)
        .and_then(|s| s.child("first", ns::RSM))
        .and_then(|f| f.attr("index").map(str::to_owned));
    (ids, index)
}

pub(crate) const HEADER: &str =
    "<?xml version='1.0'?><stream:stream to='example.org' version='1.0' \
    xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Waits (bounded) until `metric` reads `want`; returns what it read last.
pub(crate) async fn metric_becomes(srv: &Binary, metric: &str, want: f64, secs: u64) -> f64 {
    let mut got = srv.metric(metric);
    for _ in 0..secs * 10 {
        if got == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        got = srv.metric(metric);
    }
    got
}

/// Sends an iq and reads past pushes to its answer.
pub(crate) async fn answer(c: &mut Client, xml: &str, id: &str) -> Element {
    c.send(xml).await;
    loop {
        let e = c.element().await;
        if e.name == "iq" && e.attr("id") == Some(id) {
            return e;
        }
    }
}

/// Publishes item `id` (title `title`) to the microblog node with the
/// given access model in its publish-options; asserts the result.
pub(crate) async fn publish_with_access(c: &mut Client, id: &str, title: &str, access: &str) {
    let r = c
        .iq(&format!(
            "<iq type='set' id='pub-{id}'><pubsub xmlns='{}'><publish node='{NODE}'><item id='{id}'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>{title}</title></entry></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#access_model'><value>{access}</value></field></x></publish-options>\
             </pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

/// The answer to an items request on the client's own microblog node.
pub(crate) async fn own_items(c: &mut Client) -> Element {
    c.iq(&format!(
        "<iq type='get' id='items'><pubsub xmlns='{}'><items node='{NODE}'/></pubsub></iq>",
        ns::PUBSUB
    ))
    .await
}

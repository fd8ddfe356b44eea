//! What a hostile client tried, against the `starling` binary (the release
//! build in CI, through `STARLING_BIN`): each test fails on the behaviour it
//! was written for, and asserts counts, bytes and states, never speed.
//! Settings are made small so the limits are reached quickly; waits are
//! bounded and generous, for CI's 2 shared cores.

mod common;

use common::binary::Binary;
use common::Client;
use stanza::{ns, Element};

const NODE: &str = "urn:xmpp:microblog:0";

/// Publishes item `id` with a title of `size` bytes to the microblog node.
async fn publish(c: &mut Client, id: &str, size: usize) {
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
fn item_ids(reply: &Element) -> (Vec<String>, Option<String>) {
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

/// §2.1: repeated ids are answered once, and every reply is capped by
/// count and by bytes, whatever the request asks for.
#[tokio::test]
async fn replies_are_deduplicated_and_capped() {
    let srv = Binary::start(
        &[("jane", "pw")],
        "[limits]\nmax_stanza_bytes = 4096\nmax_reply_items = 5\nmax_reply_bytes = 4096\n",
    );
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    for i in 0..8 {
        publish(&mut jane, &format!("s{i}"), 100).await;
    }
    // 1. The same id 200 times: one item.
    let repeated = "<item id='s1'/>".repeat(200);
    let r = jane
        .iq(&format!(
            "<iq type='get' id='dup'><pubsub xmlns='{}'><items node='{NODE}'>{repeated}</items>\
             </pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(item_ids(&r).0, ["s1"]);
    // 2. No max_items, a large max_items, and a large RSM page: the count cap.
    for (id, attrs, set) in [
        ("all", "", ""),
        ("max", " max_items='1000'", ""),
        (
            "rsm",
            "",
            "<set xmlns='http://jabber.org/protocol/rsm'><max>1000</max><before/></set>",
        ),
    ] {
        let r = jane
            .iq(&format!(
                "<iq type='get' id='{id}'><pubsub xmlns='{}'><items node='{NODE}'{attrs}/>{set}\
                 </pubsub></iq>",
                ns::PUBSUB
            ))
            .await;
        assert_eq!(item_ids(&r).0, ["s3", "s4", "s5", "s6", "s7"], "{id}");
    }
    // 3. Large items: the byte cap cuts the reply short, newest kept; an
    // RSM page says where it starts so the client can page on.
    for i in 0..4 {
        publish(&mut jane, &format!("b{i}"), 1500).await;
    }
    let r = jane
        .iq(&format!(
            "<iq type='get' id='big'><pubsub xmlns='{}'><items node='{NODE}'/></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(item_ids(&r).0, ["b2", "b3"]);
    let r = jane
        .iq(&format!(
            "<iq type='get' id='bigrsm'><pubsub xmlns='{}'><items node='{NODE}'/>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>5</max><before/></set></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(
        item_ids(&r),
        (vec!["b2".into(), "b3".into()], Some("10".into()))
    );
    let ids: String = (0..4).map(|i| format!("<item id='b{i}'/>")).collect();
    let r = jane
        .iq(&format!(
            "<iq type='get' id='byid'><pubsub xmlns='{}'><items node='{NODE}'>{ids}</items>\
             </pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(item_ids(&r).0, ["b0", "b1"]);
    srv.stop();
}

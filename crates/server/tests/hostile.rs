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

const HEADER: &str = "<?xml version='1.0'?><stream:stream to='example.org' version='1.0' \
    xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Waits (bounded) until `metric` reads `want`; returns what it read last.
async fn metric_becomes(srv: &Binary, metric: &str, want: f64, secs: u64) -> f64 {
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

/// §2.3: a client that asks for answers before logging in and never reads
/// them is disconnected at the handshake deadline all the same.
#[tokio::test]
async fn unread_answers_do_not_extend_the_handshake() {
    use tokio::io::AsyncWriteExt;
    let srv = Binary::start(&[], "[limits]\nhandshake_timeout_secs = 2\n");
    // A small receive window, so the server's answers back up quickly.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut tcp = sock.connect(srv.addr).await.unwrap();
    tcp.write_all(HEADER.as_bytes()).await.unwrap();
    // Registration-form requests: each gets an answer the server must write.
    let ask = "<iq type='get' id='r'><query xmlns='jabber:iq:register'/></iq>".repeat(100);
    // Write until the server stops reading (its answers are stuck), for
    // at most 1.5 s.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(1500), async {
        loop {
            if tcp.write_all(ask.as_bytes()).await.is_err() {
                break;
            }
        }
    })
    .await;
    // The deadline was 2 s; 20 s is a generous bound for a loaded machine.
    assert_eq!(metric_becomes(&srv, "connections", 0.0, 20).await, 0.0);
    drop(tcp);
    srv.stop();
}

/// §2.11: before authentication the stanza limit is the small pre-auth one.
#[tokio::test]
async fn pre_auth_stanzas_are_small() {
    let srv = Binary::start(
        &[("jane", "pw")],
        "[limits]\npre_auth_max_stanza_bytes = 2048\n",
    );
    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    let big = format!(
        "<iq type='get' id='r'><query xmlns='jabber:iq:register'><x>{}</x></query></iq>",
        "a".repeat(3000)
    );
    c.send(&big).await;
    assert_eq!(c.stream_error().await, "policy-violation");
    // After authentication the same stanza is fine.
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    let r = jane.iq(&big.replace("<iq ", "<iq to='example.org' ")).await;
    assert_eq!(r.attr("id"), Some("r"));
    srv.stop();
}

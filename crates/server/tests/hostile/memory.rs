//! What one client can make the server hold.

use crate::common::binary::Binary;
use crate::common::{self, Client};
use crate::{answer, item_ids, metric_becomes, publish, NODE};
use stanza::{ns, Element};

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

/// Logs in with a 4 KiB receive window, then never reads: the server's
/// writes back up at once instead of filling megabytes of socket buffers.
async fn login_not_reading(srv: &Binary, user: &str) -> Client {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut c = Client::from_tcp(sock.connect(srv.addr).await.unwrap());
    c.open(common::DOMAIN).await;
    let ok = c.plain(user, "pw").await;
    assert!(ok.is("success", ns::SASL), "{ok:?}");
    c.bind(Some("r")).await;
    c
}

/// Sends `n` chat messages of `size` bytes to `to`.
async fn flood(c: &mut Client, to: &str, n: usize, size: usize) {
    let body = "x".repeat(size);
    for i in 0..n {
        if c.try_send(&format!(
            "<message to='{to}' type='chat' id='m{i}'><body>{body}</body></message>"
        ))
        .await
        .is_err()
        {
            break;
        }
    }
}

/// Joe logs in and never reads; jane sends him `n` messages of 100 KiB
/// under `limits`; returns once joe's session is gone (bounded wait).
async fn flood_unread_session(limits: &str, n: usize) -> Binary {
    let srv = Binary::start(&[("jane", "pw"), ("joe", "pw")], limits);
    let joe = login_not_reading(&srv, "joe").await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    flood(&mut jane, "joe@example.org/r", n, 100 * 1024).await;
    // Messages after joe left bounce; read past them.
    jane.drain().await;
    assert_eq!(
        metric_becomes(&srv, "sessions", 1.0, 30).await,
        1.0,
        "joe is gone"
    );
    drop(joe);
    srv
}

/// §2.2: a session that never reads is disconnected once its queue holds
/// `outbound_queue_bytes`, however few frames that is (300 × 100 KiB would
/// be 30 MiB held for it).
#[tokio::test]
async fn slow_readers_are_bounded_in_bytes() {
    let srv = flood_unread_session(
        "[limits]\nmax_stanza_bytes = 131072\noutbound_queue_bytes = 1048576\n\
         write_stall_timeout_secs = 600\n",
        300,
    )
    .await;
    assert_eq!(
        srv.metric("queue_drops_total"),
        1.0,
        "one overflow disconnect"
    );
    srv.stop();
}

/// §2.2: a write that makes no progress for `write_stall_timeout_secs`
/// ends the session even while its queue is under its bounds.
#[tokio::test]
async fn stalled_writes_end_the_session() {
    let srv = flood_unread_session(
        "[limits]\nmax_stanza_bytes = 131072\noutbound_queue_bytes = 67108864\n\
         write_stall_timeout_secs = 1\n",
        100,
    )
    .await;
    assert_eq!(srv.metric("queue_drops_total"), 1.0, "one write stall");
    srv.stop();
}

/// A disco#info answer naming client `i`, and its caps `ver`.
fn caps_answer(i: usize) -> (String, String) {
    let query = format!(
        "<query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='client' type='pc' name='client {i}'/>\
         <feature var='http://jabber.org/protocol/caps'/></query>"
    );
    let ver = server::caps::verification_string_hash(&Element::parse(&query).unwrap());
    (query, ver)
}

fn caps_presence(ver: &str) -> String {
    format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
         node='https://hostile.test' ver='{ver}'/></presence>"
    )
}

/// Reads up to the answer of a ping; returns the caps queries seen.
async fn caps_queries(c: &mut Client) -> Vec<Element> {
    c.send("<iq type='get' id='fence'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut out = Vec::new();
    loop {
        let e = c.element().await;
        if e.attr("id") == Some("fence") {
            return out;
        }
        if e.name == "iq" && e.child("query", ns::DISCO_INFO).is_some() {
            out.push(e);
        }
    }
}

/// §2.6: unanswered caps queries are bounded per session, long `ver`s are
/// not asked about, and the verified cache is bounded.
#[tokio::test]
async fn caps_state_is_bounded() {
    let srv = Binary::start(
        &[("jane", "pw")],
        "[limits]\nmax_caps_queries = 4\ncaps_cache_entries = 3\n",
    );
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    // 50 unknown vers, never answered: 4 questions, not 50.
    for i in 0..50 {
        jane.send(&caps_presence(&format!("{i:0>27}="))).await;
    }
    jane.send(&caps_presence(&"v".repeat(5000))).await;
    assert_eq!(caps_queries(&mut jane).await.len(), 4);
    // Answers free the slots: each of 6 real clients is asked and verified,
    // and the cache keeps 3.
    let (mut joe, _) = Client::login_plain(srv.addr, "jane", "pw", "b").await;
    for i in 0..6 {
        let (query, ver) = caps_answer(i);
        joe.send(&caps_presence(&ver)).await;
        let asked = caps_queries(&mut joe).await;
        assert_eq!(asked.len(), 1, "client {i}");
        let (id, from) = (asked[0].attr("id").unwrap(), asked[0].attr("from").unwrap());
        joe.send(&format!(
            "<iq type='result' id='{id}' to='{from}'>{query}</iq>"
        ))
        .await;
        joe.ping().await;
    }
    assert_eq!(srv.metric("caps_cache_entries"), 3.0);
    srv.stop();
}

/// Publishes one item to `node` (payload of `size` bytes); returns the reply.
async fn publish_to(c: &mut Client, node: &str, size: usize) -> Element {
    c.iq(&format!(
        "<iq type='set' id='pub-{node}'><pubsub xmlns='{}'><publish node='{node}'><item>\
         <entry xmlns='http://www.w3.org/2005/Atom'><title>{}</title></entry></item>\
         </publish></pubsub></iq>",
        ns::PUBSUB,
        "x".repeat(size)
    ))
    .await
}

/// §2.10: every per-account quota answers with its stanza error.
#[tokio::test]
async fn quotas_hold() {
    let accounts = [("jane", "pw"), ("bob", "pw"), ("kim", "pw"), ("lee", "pw")];
    let srv = Binary::start(
        &accounts,
        "[limits]\nmax_nodes_per_account = 2\nmax_item_bytes = 2048\nmax_roster_items = 2\n\
         max_pending_requests = 1\nmax_blocklist_items = 2\nmax_resources_per_account = 2\n\
         max_directed_presences = 2\n",
    );
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    // Nodes and item size.
    for node in ["n1", "n2"] {
        assert_eq!(
            publish_to(&mut jane, node, 10).await.attr("type"),
            Some("result")
        );
    }
    let r = publish_to(&mut jane, "n3", 10).await;
    assert_eq!(
        common::error_conditions(&r),
        ["policy-violation", "text", "max-nodes-exceeded"]
    );
    let r = publish_to(&mut jane, "n1", 3000).await;
    assert_eq!(
        common::error_conditions(&r),
        ["not-acceptable", "payload-too-big"]
    );
    // Roster size.
    let (mut bob, _) = Client::login_plain(srv.addr, "bob", "pw", "a").await;
    let mut answers = Vec::new();
    for i in 0..3 {
        let r = answer(
            &mut bob,
            &format!(
                "<iq type='set' id='r{i}'><query xmlns='jabber:iq:roster'>\
                 <item jid='c{i}@example.org'/></query></iq>"
            ),
            &format!("r{i}"),
        )
        .await;
        answers.push(r.attr("type").unwrap_or("").to_owned());
    }
    assert_eq!(answers, ["result", "result", "error"]);
    // Pending requests: kim's waits; lee's bounces.
    let (mut kim, _) = Client::login_plain(srv.addr, "kim", "pw", "a").await;
    kim.send("<presence to='jane@example.org' type='subscribe'/>")
        .await;
    kim.drain().await;
    let (mut lee, _) = Client::login_plain(srv.addr, "lee", "pw", "a").await;
    lee.keep_presence = true;
    lee.send("<presence to='jane@example.org' type='subscribe' id='s'/>")
        .await;
    let e = lee
        .expect("the bounce", |e| {
            e.name == "presence" && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(common::error_conditions(&e)[0], "policy-violation");
    lee.keep_presence = false;
    // Block list size.
    let block = |jids: &[&str], id: &str| {
        let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
        format!("<iq type='set' id='{id}'><block xmlns='urn:xmpp:blocking'>{items}</block></iq>")
    };
    jane.send(&block(&["x1@example.org", "x2@example.org"], "b1"))
        .await;
    jane.drain().await;
    let r = answer(&mut jane, &block(&["x3@example.org"], "b2"), "b2").await;
    assert_eq!(common::error_conditions(&r)[0], "policy-violation");
    // Resources.
    let _b = Client::login_plain(srv.addr, "jane", "pw", "b").await;
    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    assert!(c.plain("jane", "pw").await.is("success", ns::SASL));
    c.open(common::DOMAIN).await;
    let r = c
        .iq(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>c</resource></bind></iq>",
        )
        .await;
    assert_eq!(common::error_conditions(&r)[0], "resource-constraint");
    // Directed presences.
    jane.keep_presence = true;
    for to in ["d1@example.org", "d2@example.org"] {
        jane.send(&format!("<presence to='{to}'/>")).await;
    }
    jane.send("<presence to='d3@example.org' id='d3'/>").await;
    let e = jane
        .expect("the bounce", |e| {
            e.name == "presence" && e.attr("type") == Some("error")
        })
        .await;
    assert_eq!(e.attr("id"), Some("d3"));
    assert_eq!(common::error_conditions(&e)[0], "policy-violation");
    srv.stop();
}

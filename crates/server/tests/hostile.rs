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

/// Sends a SCRAM-SHA-1 client-first for `user`; returns the server-first
/// message's salt and iteration count.
async fn scram_first(c: &mut Client, user: &str) -> (String, String) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let first = b64.encode(format!("n,,n={user},r=hostilenonce"));
    c.send(&format!(
        "<auth xmlns='{}' mechanism='SCRAM-SHA-1'>{first}</auth>",
        ns::SASL
    ))
    .await;
    let ch = c.element().await;
    assert!(ch.is("challenge", ns::SASL), "{ch:?}");
    let server_first = String::from_utf8(b64.decode(ch.text().trim()).unwrap()).unwrap();
    let field = |k: &str| {
        server_first
            .split(',')
            .find_map(|f| f.strip_prefix(k))
            .unwrap()
            .to_owned()
    };
    (field("s="), field("i="))
}

/// §2.4 and §2.7: SCRAM for an unknown user costs no PBKDF2, its abort is
/// a counted failure, and its salt is as stable as a real account's.
#[tokio::test]
async fn scram_probes_are_cheap_counted_and_tell_nothing() {
    let srv = Binary::start(
        &[("jane", "pw")],
        "[limits]\nlogin_backoff_base_ms = 10\nlogin_backoff_max_secs = 1\n",
    );
    let before = srv.metric("pbkdf2_derivations_total");
    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    let mut salts = Vec::new();
    for _ in 0..3 {
        salts.push(scram_first(&mut c, "nobody").await);
        c.send(&format!("<abort xmlns='{}'/>", ns::SASL)).await;
        if salts.len() < 3 {
            let f = c.element().await;
            assert!(f.child("aborted", ns::SASL).is_some(), "{f:?}");
        }
    }
    // Three aborts are three failures: the stream ends like any other
    // connection that failed max_auth_failures (3) times.
    assert_eq!(c.stream_error().await, "policy-violation");
    assert_eq!(srv.metric("auth_failures_total"), 3.0);
    assert_eq!(
        srv.metric("pbkdf2_derivations_total"),
        before,
        "no PBKDF2 for an unknown user"
    );
    // The same name gets the same salt and iteration count every time, on
    // any connection; another name another salt; a real account its own.
    assert!(salts.windows(2).all(|w| w[0] == w[1]), "{salts:?}");
    let mut d = Client::connect(srv.addr).await;
    d.open(common::DOMAIN).await;
    assert_eq!(scram_first(&mut d, "nobody").await, salts[0]);
    d.send(&format!("<abort xmlns='{}'/>", ns::SASL)).await;
    d.element().await;
    let other = scram_first(&mut d, "somebody").await;
    assert_ne!(other.0, salts[0].0);
    assert_eq!(other.1, salts[0].1, "the same iteration count");
    d.send(&format!("<abort xmlns='{}'/>", ns::SASL)).await;
    d.element().await;
    let real = scram_first(&mut d, "jane").await;
    assert_eq!(real.1, salts[0].1);
    assert_eq!(real.0.len(), salts[0].0.len(), "salts of one length");
    srv.stop();
}

/// §2.4: in-band registration is limited per address (and overall).
#[tokio::test]
async fn registrations_are_rate_limited() {
    let srv = Binary::start(
        &[],
        "allow_registration = true\n[limits]\nlimit_loopback = true\n\
         registration_period_per_ip_secs = 3600\nregistration_burst_per_ip = 2\n",
    );
    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    let mut answers = Vec::new();
    for i in 0..5 {
        let r = c
            .iq(&format!(
                "<iq type='set' id='reg{i}'><query xmlns='jabber:iq:register'>\
                 <username>user{i}</username><password>pw</password></query></iq>"
            ))
            .await;
        answers.push(if r.attr("type") == Some("result") {
            "ok".to_owned()
        } else {
            common::error_conditions(&r)[0].clone()
        });
    }
    assert_eq!(
        answers,
        [
            "ok",
            "ok",
            "resource-constraint",
            "resource-constraint",
            "resource-constraint"
        ]
    );
    assert_eq!(srv.metric("registrations_total"), 2.0);
    srv.stop();
}

/// §2.8: failures are remembered per account across connections: a
/// second connection does not get a fresh guess while the first one's
/// back-off runs, yet the right password still works (no lock-out).
#[tokio::test]
async fn login_back_off_spans_connections_without_locking_out() {
    use base64::Engine as _;
    let srv = Binary::start(
        &[("jane", "pw")],
        "[limits]\nlogin_backoff_base_ms = 1500\nlogin_backoff_max_secs = 3\n",
    );
    let mut first = Client::connect(srv.addr).await;
    first.open(common::DOMAIN).await;
    let mut second = Client::connect(srv.addr).await;
    second.open(common::DOMAIN).await;
    let plain = |pass: &str| {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("\0jane\0{pass}"));
        format!("<auth xmlns='{}' mechanism='PLAIN'>{b}</auth>", ns::SASL)
    };
    first.send(&plain("wrong")).await;
    // The failure is recorded before its answer is held back by the delay.
    assert_eq!(
        metric_becomes(&srv, "auth_failures_total", 1.0, 20).await,
        1.0
    );
    second.send(&plain("pw")).await;
    let ok = second.element().await;
    assert!(ok.is("success", ns::SASL), "{ok:?}");
    assert_eq!(
        srv.metric("rate_limited_total"),
        1.0,
        "the second attempt waited"
    );
    let f = first.element().await;
    assert!(f.child("not-authorized", ns::SASL).is_some(), "{f:?}");
    assert_eq!(srv.metric("auth_failures_total"), 1.0);
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

/// §2.2: a session that never reads is disconnected once its queue holds
/// `outbound_queue_bytes`, however few frames that is.
#[tokio::test]
async fn slow_readers_are_bounded_in_bytes() {
    let srv = Binary::start(
        &[("jane", "pw"), ("joe", "pw")],
        "[limits]\nmax_stanza_bytes = 131072\noutbound_queue_bytes = 1048576\n\
         write_stall_timeout_secs = 600\n",
    );
    let joe = login_not_reading(&srv, "joe").await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    // 300 × 100 KiB would be 30 MiB held for joe.
    flood(&mut jane, "joe@example.org/r", 300, 100 * 1024).await;
    // Messages after joe left bounce; read past them.
    jane.drain().await;
    assert_eq!(
        metric_becomes(&srv, "queue_drops_total", 1.0, 30).await,
        1.0,
        "one overflow disconnect"
    );
    assert_eq!(
        metric_becomes(&srv, "sessions", 1.0, 30).await,
        1.0,
        "joe is gone"
    );
    drop(joe);
    srv.stop();
}

/// §2.2: a write that makes no progress for `write_stall_timeout_secs`
/// ends the session even while its queue is under its bounds.
#[tokio::test]
async fn stalled_writes_end_the_session() {
    let srv = Binary::start(
        &[("jane", "pw"), ("joe", "pw")],
        "[limits]\nmax_stanza_bytes = 131072\noutbound_queue_bytes = 67108864\n\
         write_stall_timeout_secs = 1\n",
    );
    let joe = login_not_reading(&srv, "joe").await;
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    flood(&mut jane, "joe@example.org/r", 100, 100 * 1024).await;
    jane.drain().await;
    assert_eq!(
        metric_becomes(&srv, "sessions", 1.0, 30).await,
        1.0,
        "joe is gone"
    );
    assert_eq!(srv.metric("queue_drops_total"), 1.0, "one write stall");
    drop(joe);
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

async fn disco(c: &mut Client, to: &str, what: &str) -> Element {
    let r = c
        .iq(&format!(
            "<iq type='get' id='disco-{what}' to='{to}'>\
             <query xmlns='http://jabber.org/protocol/disco#{what}'/></iq>"
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    r.first_element().unwrap().clone()
}

/// §2.7 and §2.12: disco#info tells a stranger nothing about whether an
/// account exists, and a blocked user sees what a stranger to a missing
/// account sees.
#[tokio::test]
async fn disco_tells_strangers_nothing() {
    let srv = Binary::start(&[("jane", "pw"), ("mal", "pw"), ("eve", "pw")], "");
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    let r = jane
        .iq(&format!(
            "<iq type='set' id='pub'><pubsub xmlns='{}'><publish node='{NODE}'><item id='1'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>hi</title></entry></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#access_model'><value>open</value></field></x></publish-options>\
             </pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let (mut eve, _) = Client::login_plain(srv.addr, "eve", "pw", "a").await;
    let real = disco(&mut eve, "jane@example.org", "info").await;
    let missing = disco(&mut eve, "nobody@example.org", "info").await;
    assert_eq!(real, missing, "the same answer, existing or not");
    assert_eq!(
        disco(&mut eve, "jane@example.org", "items")
            .await
            .elements()
            .count(),
        1
    );
    assert_eq!(
        disco(&mut eve, "nobody@example.org", "items")
            .await
            .elements()
            .count(),
        0
    );
    // Jane blocks mal: to mal she looks like a missing account.
    // (The block push to jane's resource comes first; drain reads past it.)
    jane.send("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='mal@example.org'/></block></iq>")
        .await;
    jane.drain().await;
    let (mut mal, _) = Client::login_plain(srv.addr, "mal", "pw", "a").await;
    assert_eq!(disco(&mut mal, "jane@example.org", "info").await, missing);
    assert_eq!(
        disco(&mut mal, "jane@example.org", "items")
            .await
            .elements()
            .count(),
        0
    );
    srv.stop();
}

/// §2.12: a pending subscription request from someone the user blocked is
/// not replayed at the user's next login.
#[tokio::test]
async fn pending_requests_do_not_cross_a_block() {
    let srv = Binary::start(&[("jane", "pw"), ("mal", "pw"), ("kim", "pw")], "");
    for who in ["mal", "kim"] {
        let (mut c, _) = Client::login_plain(srv.addr, who, "pw", "a").await;
        c.send("<presence to='jane@example.org' type='subscribe'/>")
            .await;
        c.drain().await;
    }
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    jane.send("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='mal@example.org'/></block></iq>")
        .await;
    jane.drain().await;
    jane.keep_presence = true;
    jane.send("<presence/>").await;
    jane.send("<iq type='get' id='fence'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let mut requests = Vec::new();
    loop {
        let e = jane.element().await;
        if e.attr("id") == Some("fence") {
            break;
        }
        if e.name == "presence" && e.attr("type") == Some("subscribe") {
            requests.push(e.attr("from").unwrap_or("").to_owned());
        }
    }
    assert_eq!(requests, ["kim@example.org"]);
    srv.stop();
}

/// §2.12: a password change ends the account's other sessions.
#[tokio::test]
async fn a_password_change_ends_the_other_sessions() {
    let srv = Binary::start(&[("jane", "old")], "");
    let (mut a, _) = Client::login_plain(srv.addr, "jane", "old", "a").await;
    let (mut b, _) = Client::login_plain(srv.addr, "jane", "old", "b").await;
    let r = a
        .iq("<iq type='set' id='pw'><query xmlns='jabber:iq:register'>\
             <username>jane</username><password>new</password></query></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    assert_eq!(b.stream_error().await, "reset");
    a.ping().await;
    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    assert!(c
        .plain("jane", "old")
        .await
        .child("not-authorized", ns::SASL)
        .is_some());
    let (mut d, _) = Client::login_plain(srv.addr, "jane", "new", "d").await;
    d.ping().await;
    srv.stop();
}

/// Gives jane private items, a roster contact (bob, both ways), a block, a
/// pending request (from kim) and a subscription to bob's node.
async fn populate_jane(srv: &Binary) -> (Client, Client) {
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "a").await;
    let (mut bob, _) = Client::login_plain(srv.addr, "bob", "pw", "a").await;
    Client::befriend(&mut jane, "jane@example.org", &mut bob, "bob@example.org").await;
    let r = jane
        .iq(&format!(
            "<iq type='set' id='pub'><pubsub xmlns='{}'><publish node='{NODE}'><item id='secret'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>private</title></entry></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#access_model'><value>whitelist</value></field></x></publish-options>\
             </pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    jane.send("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='mal@example.org'/></block></iq>")
        .await;
    jane.drain().await;
    let (mut kim, _) = Client::login_plain(srv.addr, "kim", "pw", "a").await;
    kim.send("<presence to='jane@example.org' type='subscribe'/>")
        .await;
    kim.drain().await;
    publish(&mut bob, "b1", 10).await;
    let r = jane
        .iq(&format!(
            "<iq type='set' id='sub' to='bob@example.org'><pubsub xmlns='{}'>\
             <subscribe node='{NODE}' jid='jane@example.org'/></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    jane.drain().await;
    bob.drain().await;
    (jane, bob)
}

/// Registers jane again and checks she inherited nothing; checks bob
/// was told and kept nothing of the old jane.
async fn new_jane_inherits_nothing(srv: &Binary, bob: &mut Client) {
    // Bob heard the old jane leave: unavailable, unsubscribed, and a
    // roster push removing her.
    bob.keep_presence = true;
    let mut heard = Vec::new();
    bob.send("<iq type='get' id='fence'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let e = bob.element().await;
        if e.attr("id") == Some("fence") {
            break;
        }
        if e.name == "presence" && e.attr("from") == Some("jane@example.org") {
            heard.push(e.attr("type").unwrap_or("").to_owned());
        }
        if let Some(item) = e.child("query", ns::ROSTER).and_then(|q| q.first_element()) {
            heard.push(format!(
                "roster {}",
                item.attr("subscription").unwrap_or("")
            ));
        }
    }
    for want in [
        "unavailable",
        "unsubscribed",
        "unsubscribe",
        "roster remove",
    ] {
        assert!(heard.iter().any(|h| h == want), "{want} in {heard:?}");
    }
    let roster = bob
        .iq("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    assert_eq!(
        roster
            .child("query", ns::ROSTER)
            .unwrap()
            .elements()
            .count(),
        0
    );
    bob.keep_presence = false;

    let mut c = Client::connect(srv.addr).await;
    c.open(common::DOMAIN).await;
    let r = c
        .iq("<iq type='set' id='reg'><query xmlns='jabber:iq:register'>\
             <username>jane</username><password>new</password></query></iq>")
        .await;
    assert_eq!(
        r.attr("type"),
        Some("result"),
        "the name is free again: {r:?}"
    );
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "new", "a").await;
    let r = jane
        .iq(&format!(
            "<iq type='get' id='items'><pubsub xmlns='{}'><items node='{NODE}'/></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(
        common::error_conditions(&r),
        ["item-not-found"],
        "old items gone"
    );
    let roster = jane
        .iq("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    assert_eq!(
        roster
            .child("query", ns::ROSTER)
            .unwrap()
            .elements()
            .count(),
        0
    );
    let blocks = jane
        .iq("<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    assert_eq!(blocks.first_element().unwrap().elements().count(), 0);
    let subs = jane
        .iq(&format!(
            "<iq type='get' id='subs' to='bob@example.org'><pubsub xmlns='{}'><subscriptions/></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    let n = subs
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("subscriptions", ns::PUBSUB))
        .map_or(0, |s| s.elements().count());
    assert_eq!(n, 0, "old subscriptions gone: {subs:?}");
    // No pending request from kim comes to the new jane.
    jane.keep_presence = true;
    jane.send("<presence/>").await;
    jane.send("<iq type='get' id='fence'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let e = jane.element().await;
        if e.attr("id") == Some("fence") {
            break;
        }
        assert_ne!(e.attr("type"), Some("subscribe"), "{e:?}");
    }
    // Bob's new posts do not reach the new jane through the old follow.
    publish(bob, "b2", 10).await;
    jane.send("<iq type='get' id='fence2'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let e = jane.element().await;
    assert_eq!(
        e.attr("id"),
        Some("fence2"),
        "nothing before the fence: {e:?}"
    );
}

const DELETION_CONFIG: &str = "allow_registration = true\n";

/// §2.5: XEP-0077 `<remove/>` deletes everything the account owned.
#[tokio::test]
async fn in_band_removal_leaves_nothing_behind() {
    let srv = Binary::start(
        &[("jane", "pw"), ("bob", "pw"), ("kim", "pw"), ("mal", "pw")],
        DELETION_CONFIG,
    );
    let (mut jane, mut bob) = populate_jane(&srv).await;
    jane.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    let r = jane.element().await;
    assert_eq!(
        (r.attr("type"), r.attr("id")),
        (Some("result"), Some("rm")),
        "{r:?}"
    );
    assert_eq!(jane.stream_error().await, "not-authorized");
    new_jane_inherits_nothing(&srv, &mut bob).await;
    srv.stop();
}

/// §2.5: `starling deluser` works while the server runs (through its
/// control socket), with the same effect.
#[tokio::test]
async fn deluser_on_a_running_server_leaves_nothing_behind() {
    let srv = Binary::start(
        &[("jane", "pw"), ("bob", "pw"), ("kim", "pw"), ("mal", "pw")],
        DELETION_CONFIG,
    );
    let (mut jane, mut bob) = populate_jane(&srv).await;
    let out = std::process::Command::new(common::binary::path())
        .args([
            "--data-dir",
            srv.dir.path().to_str().unwrap(),
            "--domain",
            common::DOMAIN,
        ])
        .args(["deluser", "jane@example.org"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("running server"), "{err}");
    assert_eq!(jane.stream_error().await, "not-authorized");
    new_jane_inherits_nothing(&srv, &mut bob).await;
    // A second deletion names the problem.
    let out = std::process::Command::new(common::binary::path())
        .args([
            "--data-dir",
            srv.dir.path().to_str().unwrap(),
            "--domain",
            common::DOMAIN,
        ])
        .args(["deluser", "nobody@example.org"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account"));
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

/// Sends an iq and reads past pushes to its answer.
async fn answer(c: &mut Client, xml: &str, id: &str) -> Element {
    c.send(xml).await;
    loop {
        let e = c.element().await;
        if e.name == "iq" && e.attr("id") == Some(id) {
            return e;
        }
    }
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

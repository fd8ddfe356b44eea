//! Federation (#12): two servers, a.example and b.example, each on its own
//! loopback address with s2s on 5269, joined through the static host map.
//! Each test has its own pair of addresses (127.0.N.2 and 127.0.N.3), so
//! the tests run side by side.

mod common;

use std::time::Duration;

use common::{error_conditions, Client, TestServer};
use server::Config;
use stanza::{ns, Element};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NODE: &str = "urn:xmpp:microblog:0";

fn s2s_addr(net: u8, host: u8) -> String {
    format!("127.0.{net}.{host}:5269")
}

/// a.example on 127.0.`net`.2, b.example on 127.0.`net`.3, each with
/// jane/joe accounts, `tweak` applied to both.
async fn pair(net: u8, tweak: impl Fn(&mut Config)) -> (TestServer, TestServer) {
    if std::env::var_os("FEDERATION_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("server=debug")
            .with_test_writer()
            .try_init();
    }
    let start = |domain: &'static str, host: u8| {
        let tweak = &tweak;
        async move {
            let accounts = [
                ("jane", "secret"),
                ("joe", "secret"),
                ("kim", "secret"),
                ("lee", "secret"),
            ];
            TestServer::start(&accounts, |c| {
                c.domains = vec![domain.into()];
                c.allow_plaintext_auth = true;
                c.s2s.listen = vec![s2s_addr(net, host).parse().unwrap()];
                c.s2s.hosts = [
                    ("a.example".to_owned(), s2s_addr(net, 2)),
                    ("b.example".to_owned(), s2s_addr(net, 3)),
                ]
                .into_iter()
                .collect();
                tweak(c);
            })
            .await
        }
    };
    (start("a.example", 2).await, start("b.example", 3).await)
}

/// Waits up to 10 s for the next stanza: federation connects on demand.
async fn next(c: &mut Client) -> Element {
    tokio::time::timeout(Duration::from_secs(10), c.element())
        .await
        .expect("a stanza within 10 s")
}

fn open_options() -> &'static str {
    "<publish-options><x xmlns='jabber:x:data' type='submit'>\
     <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
     <field var='pubsub#access_model'><value>open</value></field></x></publish-options>"
}

async fn publish(c: &mut Client, id: &str) {
    let r = c
        .iq(&format!(
            "<iq type='set' id='pub-{id}'><pubsub xmlns='{}'>\
             <publish node='{NODE}'><item id='{id}'><entry xmlns='http://www.w3.org/2005/Atom'>\
             <title>{id}</title></entry></item></publish>{}</pubsub></iq>",
            ns::PUBSUB,
            open_options()
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
}

/// Sends `c`'s subscribe (as `jid`) to jane@a.example's microblog node.
async fn subscribe(c: &mut Client, jid: &str) {
    c.send(&format!(
        "<iq type='set' id='sub' to='jane@a.example'><pubsub xmlns='{}'>\
         <subscribe node='{NODE}' jid='{jid}'/></pubsub></iq>",
        ns::PUBSUB
    ))
    .await;
}

fn event_item(m: &Element) -> Option<String> {
    m.child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
        .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
        .and_then(|i| i.attr("id"))
        .map(str::to_owned)
}

#[tokio::test]
async fn messages_cross_both_ways_over_tls_and_dialback() {
    let (a, b) = pair(1, |_| {}).await;
    let (mut jane, jane_jid) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    let (mut joe, joe_jid) = Client::login_at(b.addr, "b.example", "joe", "secret", "phone").await;
    for c in [&mut jane, &mut joe] {
        c.send("<presence/>").await;
        c.drain().await;
    }
    jane.send(&format!(
        "<message to='{joe_jid}' type='chat' id='m1'><body>hello from a</body></message>"
    ))
    .await;
    let m = next(&mut joe).await;
    assert_eq!(m.name, "message", "{m:?}");
    assert_eq!(m.attr("from"), Some(jane_jid.as_str()));
    assert_eq!(m.attr("to"), Some(joe_jid.as_str()));
    assert_eq!(
        m.child("body", ns::CLIENT).map(|b| b.text().into_owned()),
        Some("hello from a".into())
    );
    // And back, to the bare JID: the available resource gets it.
    joe.send("<message to='jane@a.example' type='chat' id='m2'><body>hi from b</body></message>")
        .await;
    let m = next(&mut jane).await;
    assert_eq!(m.attr("from"), Some(joe_jid.as_str()), "{m:?}");
    // An iq to a resource on the other server, and its answer.
    joe.send(&format!(
        "<iq type='get' id='v1' to='{jane_jid}'><query xmlns='jabber:iq:version'/></iq>"
    ))
    .await;
    let q = next(&mut jane).await;
    assert_eq!(
        (q.name.as_str(), q.attr("from")),
        ("iq", Some(joe_jid.as_str()))
    );
    jane.send(&format!(
        "<iq type='result' id='v1' to='{joe_jid}'><query xmlns='jabber:iq:version'><name>t</name></query></iq>"
    ))
    .await;
    let r = next(&mut joe).await;
    assert_eq!((r.attr("type"), r.attr("id")), (Some("result"), Some("v1")));
    // Nobody there: the remote server answers service-unavailable.
    jane.send("<message to='nobody@b.example' type='chat' id='m3'><body>?</body></message>")
        .await;
    let e = next(&mut jane).await;
    assert_eq!(error_conditions(&e)[0], "service-unavailable", "{e:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_remote_subscriber_gets_posts_history_and_no_more_after_unsubscribing() {
    let (a, b) = pair(2, |_| {}).await;
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    publish(&mut jane, "first").await;
    let (mut joe, joe_jid) = Client::login_at(b.addr, "b.example", "joe", "secret", "movim").await;
    joe.send("<presence/>").await;
    joe.drain().await;

    // Subscribe across domains, with the full JID as Movim does.
    subscribe(&mut joe, &joe_jid).await;
    let mut got_result = false;
    let mut got_last = false;
    while !(got_result && got_last) {
        let s = next(&mut joe).await;
        if s.name == "iq" {
            assert_eq!(s.attr("type"), Some("result"), "{s:?}");
            assert_eq!(s.attr("from"), Some("jane@a.example"));
            got_result = true;
        } else {
            // The last item, replayed with a delay.
            assert_eq!(event_item(&s).as_deref(), Some("first"), "{s:?}");
            assert!(s.child("delay", ns::DELAY).is_some(), "{s:?}");
            got_last = true;
        }
    }

    // A post reaches the remote subscriber in real time.
    publish(&mut jane, "second").await;
    let m = next(&mut joe).await;
    assert_eq!(m.attr("type"), Some("headline"), "{m:?}");
    assert_eq!(m.attr("from"), Some("jane@a.example"));
    assert_eq!(event_item(&m).as_deref(), Some("second"));

    // History with RSM, from the remote requester: the last page.
    let page = joe
        .iq(&format!(
            "<iq type='get' id='hist' to='jane@a.example'><pubsub xmlns='{}'><items node='{NODE}'/>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>1</max><before/></set></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(page.attr("type"), Some("result"), "{page:?}");
    let items: Vec<_> = page
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .map(|i| {
            i.elements()
                .filter_map(|it| it.attr("id").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(items, ["second"], "{page:?}");

    // A retract crosses too.
    let r = jane
        .iq(&format!(
            "<iq type='set' id='rt'><pubsub xmlns='{}'>\
             <retract node='{NODE}' notify='true'><item id='first'/></retract></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let m = next(&mut joe).await;
    let retracted = m
        .child("event", ns::PUBSUB_EVENT)
        .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
        .and_then(|i| i.child("retract", ns::PUBSUB_EVENT))
        .and_then(|r| r.attr("id"));
    assert_eq!(retracted, Some("first"), "{m:?}");

    // Unsubscribe; the next post does not come.
    let r = joe
        .iq(&format!(
            "<iq type='set' id='unsub' to='jane@a.example'><pubsub xmlns='{}'>\
             <unsubscribe node='{NODE}' jid='{joe_jid}'/></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    publish(&mut jane, "third").await;
    // A round trip across both servers after the post: had the post gone
    // out, it would have arrived before this answer (one stream, in order).
    let r = joe
        .iq("<iq type='get' id='p' to='jane@a.example'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    a.stop().await;
    b.stop().await;
}

/// A raw server stream to `addr` claiming to be `from`, without TLS.
async fn raw_stream(addr: &str, from: &str, to: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
             xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
             from='{from}' to='{to}' version='1.0'>"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_until(&mut s, "</stream:features>").await;
    let id = head
        .split("id='")
        .nth(1)
        .or_else(|| head.split("id=\"").nth(1))
        .and_then(|r| r.split(['\'', '"']).next())
        .expect("a stream id")
        .to_owned();
    (s, id)
}

async fn read_until(s: &mut TcpStream, marker: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&got).contains(marker) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before {marker:?}: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {marker:?} in {}", String::from_utf8_lossy(&got)));
    String::from_utf8(got).unwrap()
}

fn plain_s2s(c: &mut Config) {
    c.s2s.require_tls = false;
}

#[tokio::test]
async fn a_forged_dialback_key_is_refused() {
    let (a, b) = pair(3, plain_s2s).await;
    let (mut s, _) = raw_stream(&s2s_addr(3, 3), "a.example", "b.example").await;
    s.write_all(b"<db:result from='a.example' to='b.example'>00deadbeef</db:result>")
        .await
        .unwrap();
    // b.example asks a.example, which says the key is not its own.
    let answer = read_until(&mut s, "</stream:stream>").await;
    assert!(
        answer.contains("type='invalid'") || answer.contains("type=\"invalid\""),
        "{answer}"
    );
    assert!(answer.contains("not-authorized"), "{answer}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn stanzas_from_unverified_domains_are_refused() {
    let (a, b) = pair(4, plain_s2s).await;
    // Before any dialback.
    let (mut s, _) = raw_stream(&s2s_addr(4, 3), "a.example", "b.example").await;
    s.write_all(
        b"<message from='jane@a.example/x' to='joe@b.example'><body>spoof</body></message>",
    )
    .await
    .unwrap();
    let answer = read_until(&mut s, "</stream:stream>").await;
    assert!(answer.contains("invalid-from"), "{answer}");

    // Verified as a.example with the real key, then a stanza claiming to
    // come from another domain.
    let secret: [u8; 32] = std::fs::read(a.dir.path().join("server.secret"))
        .unwrap()
        .try_into()
        .unwrap();
    let (mut s, id) = raw_stream(&s2s_addr(4, 3), "a.example", "b.example").await;
    let key = stanza::xep::dialback::key(&secret, "b.example", "a.example", &id);
    s.write_all(format!("<db:result from='a.example' to='b.example'>{key}</db:result>").as_bytes())
        .await
        .unwrap();
    let answer = read_until(&mut s, "type='valid'").await;
    assert!(answer.contains("jabber:server:dialback"), "{answer}");
    s.write_all(
        b"<message from='mallory@c.example/x' to='joe@b.example'><body>spoof</body></message>",
    )
    .await
    .unwrap();
    let answer = read_until(&mut s, "</stream:stream>").await;
    assert!(answer.contains("invalid-from"), "{answer}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn an_unreachable_domain_bounces() {
    // c.example: nothing listens. d.example: a socket that accepts and
    // never speaks, so only the connect timeout ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.5.4:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let (a, b) = pair(5, |c| {
        c.s2s.hosts.insert("c.example".into(), s2s_addr(5, 9));
        c.s2s.hosts.insert("d.example".into(), silent_addr.clone());
        c.s2s.connect_timeout_secs = 1;
    })
    .await;
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    jane.send("<message to='x@c.example' type='chat' id='c1'><body>?</body></message>")
        .await;
    let e = next(&mut jane).await;
    assert_eq!(e.attr("id"), Some("c1"));
    assert_eq!(error_conditions(&e)[0], "remote-server-not-found", "{e:?}");
    jane.send("<iq to='x@d.example' type='get' id='d1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let e = next(&mut jane).await;
    assert_eq!(e.attr("id"), Some("d1"));
    assert_eq!(error_conditions(&e)[0], "remote-server-timeout", "{e:?}");
    drop(silent);
    a.stop().await;
    b.stop().await;
}

/// A client's disco#info answer with `+notify` for microblogs, and the
/// presence that advertises it with caps.
fn notify_caps() -> (String, String) {
    let query = "<query xmlns='http://jabber.org/protocol/disco#info'>\
                 <identity category='client' type='pc' name='federation-test'/>\
                 <feature var='http://jabber.org/protocol/caps'/>\
                 <feature var='urn:xmpp:microblog:0+notify'/></query>"
        .to_owned();
    let ver = server::caps::verification_string_hash(&Element::parse(&query).unwrap());
    let presence = format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' \
         node='https://starling.test' ver='{ver}'/></presence>"
    );
    (presence, query)
}

/// Reads until `pred` matches (10 s at most), answering every disco#info
/// question with `query` on the way and skipping everything else.
async fn until(
    c: &mut Client,
    query: &str,
    what: &str,
    pred: impl Fn(&Element) -> bool,
) -> Element {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = c.element().await;
            if std::env::var_os("FEDERATION_LOG").is_some() {
                eprintln!("{what}: got {e:?}");
            }
            if pred(&e) {
                return e;
            }
            let disco = e.name == "iq"
                && e.attr("type") == Some("get")
                && e.child("query", ns::DISCO_INFO).is_some();
            if disco {
                let (id, from) = (e.attr("id").unwrap(), e.attr("from").unwrap());
                c.send(&format!(
                    "<iq type='result' id='{id}' to='{from}'>{query}</iq>"
                ))
                .await;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within 10 s"))
}

/// Sends an iq and waits for its answer, skipping (and answering) the rest.
async fn ask(c: &mut Client, query: &str, xml: &str) -> Element {
    let id = Element::parse_in(xml, &common::stream_ctx())
        .ok()
        .and_then(|e| e.attr("id").map(str::to_owned))
        .expect("an iq with an id");
    c.send(xml).await;
    until(c, query, &format!("the answer to {id}"), |e| {
        e.name == "iq" && e.attr("id") == Some(id.as_str()) && e.attr("type") != Some("get")
    })
    .await
}

fn is_presence(from_prefix: &'static str, ty: Option<&'static str>) -> impl Fn(&Element) -> bool {
    move |e| {
        e.name == "presence"
            && e.attr("type") == ty
            && e.attr("from").is_some_and(|f| f.starts_with(from_prefix))
    }
}

/// `x` asks to follow `y` by presence and `y` approves: `y` sees the
/// request, `x` the approval and then `y`'s presence (from `y_full`).
async fn follow_one_way(
    (x, x_bare): (&mut Client, &'static str),
    (y, y_full): (&mut Client, &'static str),
    query: &str,
) {
    let y_bare = y_full.split('/').next().unwrap();
    x.send(&format!("<presence to='{y_bare}' type='subscribe'/>"))
        .await;
    until(
        y,
        query,
        "the request",
        is_presence(x_bare, Some("subscribe")),
    )
    .await;
    y.send(&format!("<presence to='{x_bare}' type='subscribed'/>"))
        .await;
    until(
        x,
        query,
        "the approval",
        is_presence(y_bare, Some("subscribed")),
    )
    .await;
    until(x, query, "the presence", is_presence(y_full, None)).await;
}

#[tokio::test]
async fn a_mutual_presence_follow_across_domains_delivers_posts_by_caps() {
    let (a, b) = pair(6, |_| {}).await;
    let (presence, query) = notify_caps();
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    let (mut joe, _) = Client::login_at(b.addr, "b.example", "joe", "secret", "phone").await;
    jane.keep_presence = true;
    joe.keep_presence = true;
    jane.send(&presence).await;
    joe.send(&presence).await;

    // Joe asks to follow Jane; Jane approves; and the reverse. Each
    // approval brings the approver's presence (RFC 6121 §3.1.5).
    follow_one_way(
        (&mut joe, "joe@b.example"),
        (&mut jane, "jane@a.example/web"),
        &query,
    )
    .await;
    follow_one_way(
        (&mut jane, "jane@a.example"),
        (&mut joe, "joe@b.example/phone"),
        &query,
    )
    .await;

    // Both rosters say `both`.
    for (c, contact) in [(&mut jane, "joe@b.example"), (&mut joe, "jane@a.example")] {
        c.send("<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>")
            .await;
        let r = until(c, &query, "the roster", |e| e.attr("id") == Some("r")).await;
        let item = r
            .child("query", ns::ROSTER)
            .and_then(|q| q.elements().find(|i| i.attr("jid") == Some(contact)))
            .unwrap_or_else(|| panic!("{contact} in {r:?}"));
        assert_eq!(item.attr("subscription"), Some("both"), "{r:?}");
    }

    // a.example learned joe's +notify from his caps, asked over s2s (the
    // `until` above answered). A post (default access model: presence)
    // reaches him.
    let r = ask(
        &mut jane,
        &query,
        &format!(
            "<iq type='set' id='p1'><pubsub xmlns='{}'><publish node='{NODE}'><item id='hello'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>hello</title></entry></item>\
             </publish></pubsub></iq>",
            ns::PUBSUB
        ),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let m = until(&mut joe, &query, "the post", |e| event_item(e).is_some()).await;
    assert_eq!(event_item(&m).as_deref(), Some("hello"));
    assert_eq!(m.attr("from"), Some("jane@a.example"));
    assert_eq!(m.attr("to"), Some("joe@b.example/phone"));
    assert!(m.child("delay", ns::DELAY).is_none(), "a live post: {m:?}");

    // Joe goes offline and comes back: his server tells a.example, which
    // replays the last item to the new resource.
    joe.send("<presence type='unavailable'/>").await;
    until(
        &mut jane,
        &query,
        "joe leaving",
        is_presence("joe@b.example/phone", Some("unavailable")),
    )
    .await;
    joe.send(&presence).await;
    let m = until(&mut joe, &query, "the replay", |e| event_item(e).is_some()).await;
    assert_eq!(event_item(&m).as_deref(), Some("hello"));
    assert!(m.child("delay", ns::DELAY).is_some(), "a replay: {m:?}");

    // Jane removes Joe: both subscriptions end, and posts stop.
    let r = ask(
        &mut jane,
        &query,
        "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='joe@b.example' subscription='remove'/></query></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    until(
        &mut joe,
        &query,
        "jane unsubscribed",
        is_presence("jane@a.example", Some("unsubscribed")),
    )
    .await;
    let r = ask(
        &mut jane,
        &query,
        &format!(
            "<iq type='set' id='p2'><pubsub xmlns='{}'><publish node='{NODE}'><item id='after'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>after</title></entry></item>\
             </publish></pubsub></iq>",
            ns::PUBSUB
        ),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // A message after the post on the same stream: the post would come
    // first, had it been sent.
    jane.send("<message to='joe@b.example/phone' type='chat' id='marker'><body>m</body></message>")
        .await;
    let m = until(&mut joe, &query, "the marker", |e| {
        e.name == "message" && (e.attr("id") == Some("marker") || event_item(e).is_some())
    })
    .await;
    assert_eq!(
        m.attr("id"),
        Some("marker"),
        "no post after the removal: {m:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn blocking_applies_to_remote_jids() {
    let (a, b) = pair(7, |_| {}).await;
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    publish(&mut jane, "first").await;
    let (mut joe, joe_jid) = Client::login_at(b.addr, "b.example", "joe", "secret", "movim").await;
    joe.send("<presence/>").await;
    joe.drain().await;
    jane.send("<presence/>").await;
    jane.drain().await;
    subscribe(&mut joe, "joe@b.example").await;
    let r = until(&mut joe, "", "the subscription", |e| {
        e.attr("id") == Some("sub")
    })
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");

    let r = ask(
        &mut jane,
        "",
        "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='joe@b.example'/></block></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // Joe's message to Jane is refused by her server, as if she were not
    // there.
    joe.send("<message to='jane@a.example' type='chat' id='m1'><body>hi</body></message>")
        .await;
    let e = until(&mut joe, "", "the refusal", |e| e.attr("id") == Some("m1")).await;
    assert_eq!(error_conditions(&e)[0], "service-unavailable", "{e:?}");
    // Jane's posts no longer reach him; a message from a third account on
    // a.example, sent after the post, comes first.
    publish(&mut jane, "second").await;
    let (mut kim, _) = Client::login_at(a.addr, "a.example", "joe", "secret", "kim").await;
    kim.send(&format!(
        "<message to='{joe_jid}' type='chat' id='marker'><body>m</body></message>"
    ))
    .await;
    let m = until(&mut joe, "", "the marker", |e| e.name == "message").await;
    assert_eq!(m.attr("id"), Some("marker"), "nothing from jane: {m:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn two_starling_processes_federate() {
    let extra = |host: u8| {
        format!(
            "s2s.listen = ['{}']\ns2s.require_tls = false\n\
             s2s.hosts = {{ 'a.example' = '{}', 'b.example' = '{}' }}\n",
            s2s_addr(8, host),
            s2s_addr(8, 2),
            s2s_addr(8, 3)
        )
    };
    let accounts = [("jane", "secret"), ("joe", "secret")];
    let start = |domain: &'static str, host: u8| {
        let e = extra(host);
        tokio::task::spawn_blocking(move || {
            common::binary::Binary::start_as(domain, tempfile::tempdir().unwrap(), &accounts, &e)
        })
    };
    let a = start("a.example", 2).await.unwrap();
    let b = start("b.example", 3).await.unwrap();
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    publish(&mut jane, "first").await;
    let (mut joe, joe_jid) = Client::login_at(b.addr, "b.example", "joe", "secret", "movim").await;
    subscribe(&mut joe, &joe_jid).await;
    let r = until(&mut joe, "", "the subscription", |e| {
        e.attr("id") == Some("sub")
    })
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let m = until(&mut joe, "", "the last item", |e| event_item(e).is_some()).await;
    assert_eq!(event_item(&m).as_deref(), Some("first"));
    publish(&mut jane, "second").await;
    let m = until(&mut joe, "", "the post", |e| event_item(e).is_some()).await;
    assert_eq!(event_item(&m).as_deref(), Some("second"));
    // Both processes count the stream and the stanzas per remote domain.
    assert!(
        a.metric("s2s_stanzas_total") >= 2.0,
        "a.example's s2s counters"
    );
    assert!(b.metric("s2s_streams") >= 1.0, "b.example's s2s streams");
    // History across the processes.
    let page = joe
        .iq(&format!(
            "<iq type='get' id='hist' to='jane@a.example'><pubsub xmlns='{}'><items node='{NODE}'/></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    let ids: Vec<_> = page
        .child("pubsub", ns::PUBSUB)
        .and_then(|p| p.child("items", ns::PUBSUB))
        .map(|i| {
            i.elements()
                .filter_map(|it| it.attr("id").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids, ["first", "second"], "{page:?}");
    // Jane blocks Joe: his message is refused, her post does not reach him.
    let r = ask(
        &mut jane,
        "",
        "<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='joe@b.example'/></block></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    joe.send("<message to='jane@a.example' type='chat' id='m1'><body>hi</body></message>")
        .await;
    let e = until(&mut joe, "", "the refusal", |e| e.attr("id") == Some("m1")).await;
    assert_eq!(error_conditions(&e)[0], "service-unavailable", "{e:?}");
    let r = ask(
        &mut jane,
        "",
        "<iq type='set' id='unblk'><unblock xmlns='urn:xmpp:blocking'><item jid='joe@b.example'/></unblock></iq>",
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    // Unfollow: after unsubscribing, a post is not delivered; a message
    // sent after it on the same stream arrives first.
    joe.send(&format!(
        "<iq type='set' id='unsub' to='jane@a.example'><pubsub xmlns='{}'>\
         <unsubscribe node='{NODE}' jid='{joe_jid}'/></pubsub></iq>",
        ns::PUBSUB
    ))
    .await;
    let r = until(&mut joe, "", "the unsubscribe", |e| {
        e.attr("id") == Some("unsub")
    })
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    publish(&mut jane, "third").await;
    jane.send(&format!(
        "<message to='{joe_jid}' type='chat' id='marker'><body>m</body></message>"
    ))
    .await;
    let m = until(&mut joe, "", "the marker", |e| e.name == "message").await;
    assert_eq!(
        m.attr("id"),
        Some("marker"),
        "no post after unsubscribing: {m:?}"
    );
}

/// Stanzas a server read from other servers so far (all domains).
async fn s2s_in(srv: &TestServer) -> f64 {
    let mut s = TcpStream::connect(srv.metrics.unwrap()).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("starling_s2s_stanzas_total{") && l.contains("direction=\"in\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Three followers on b.example subscribed to jane@a.example's open node;
/// returns b.example's s2s stanzas in for one post, and checks each got
/// it.
async fn one_post_to_three(net: u8, multicast: bool) -> f64 {
    let (a, b) = pair(net, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.s2s.multicast = multicast;
    })
    .await;
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    publish(&mut jane, "first").await;
    let mut followers = Vec::new();
    for user in ["joe", "kim", "lee"] {
        let (mut c, _) = Client::login_at(b.addr, "b.example", user, "secret", "r").await;
        c.send("<presence/>").await;
        c.drain().await;
        subscribe(&mut c, &format!("{user}@b.example")).await;
        let r = until(&mut c, "", "the subscription", |e| {
            e.attr("id") == Some("sub")
        })
        .await;
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
        until(&mut c, "", "the last item", |e| event_item(e).is_some()).await;
        followers.push(c);
    }
    let before = s2s_in(&b).await;
    publish(&mut jane, "second").await;
    for c in &mut followers {
        let m = until(c, "", "the post", |e| event_item(e).is_some()).await;
        assert_eq!(event_item(&m).as_deref(), Some("second"));
        assert!(
            m.child("addresses", "http://jabber.org/protocol/address")
                .is_none(),
            "bcc stripped: {m:?}"
        );
        assert_eq!(m.attr("from"), Some("jane@a.example"));
    }
    let after = s2s_in(&b).await;
    a.stop().await;
    b.stop().await;
    after - before
}

#[tokio::test]
async fn a_post_to_a_multicast_domain_is_one_stanza_for_all_its_followers() {
    assert_eq!(
        one_post_to_three(9, true).await,
        1.0,
        "one stanza for three followers"
    );
    assert_eq!(
        one_post_to_three(10, false).await,
        3.0,
        "one stanza each without multicast"
    );
}

#[tokio::test]
async fn a_remote_stranger_is_refused_a_presence_node() {
    let (a, b) = pair(11, |_| {}).await;
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    // The default access model: presence.
    let r = jane
        .iq(&format!(
            "<iq type='set' id='p1'><pubsub xmlns='{}'><publish node='{NODE}'><item id='mine'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>mine</title></entry></item>\
             </publish></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let (mut joe, joe_jid) = Client::login_at(b.addr, "b.example", "joe", "secret", "r").await;
    for (what, payload) in [
        ("items", format!("<items node='{NODE}'/>")),
        (
            "subscribe",
            format!("<subscribe node='{NODE}' jid='{joe_jid}'/>"),
        ),
    ] {
        joe.send(&format!(
            "<iq type='{}' id='{what}' to='jane@a.example'><pubsub xmlns='{}'>{payload}</pubsub></iq>",
            if what == "items" { "get" } else { "set" },
            ns::PUBSUB
        ))
        .await;
        let e = until(&mut joe, "", what, |e| e.attr("id") == Some(what)).await;
        assert_eq!(
            error_conditions(&e),
            ["not-authorized", "presence-subscription-required"],
            "{what}: {e:?}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_post_after_the_link_went_idle_still_arrives() {
    let (a, b) = pair(12, |c| c.s2s.idle_timeout_secs = 1).await;
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    publish(&mut jane, "first").await;
    let mut followers = Vec::new();
    for user in ["joe", "kim"] {
        let (mut c, _) = Client::login_at(b.addr, "b.example", user, "secret", "r").await;
        c.send("<presence/>").await;
        c.drain().await;
        subscribe(&mut c, &format!("{user}@b.example")).await;
        until(&mut c, "", "the subscription", |e| {
            e.attr("id") == Some("sub")
        })
        .await;
        until(&mut c, "", "the last item", |e| event_item(e).is_some()).await;
        followers.push(c);
    }
    for round in ["second", "third", "fourth"] {
        // Both links close when idle; the next post opens them again.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        publish(&mut jane, round).await;
        for c in &mut followers {
            let m = until(c, "", round, |e| event_item(e).is_some()).await;
            assert_eq!(event_item(&m).as_deref(), Some(round));
        }
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_post_after_the_peer_timed_our_stream_out_still_arrives() {
    // b.example drops idle streams after 2 s (its clients keep theirs with
    // pings); a.example's link would stay open for 300 s, so it learns of
    // the close from b.example's stream error, and must not take it for a
    // failure to reach b.example.
    let a = {
        let (a, b) = pair(13, |c| {
            if c.domains[0] == "b.example" {
                c.limits.idle_timeout_secs = 2;
            }
        })
        .await;
        (a, b)
    };
    let (a, b) = a;
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    publish(&mut jane, "first").await;
    let (mut joe, _) = Client::login_at(b.addr, "b.example", "joe", "secret", "r").await;
    joe.send("<presence/>").await;
    joe.drain().await;
    subscribe(&mut joe, "joe@b.example").await;
    until(&mut joe, "", "the subscription", |e| {
        e.attr("id") == Some("sub")
    })
    .await;
    until(&mut joe, "", "the last item", |e| event_item(e).is_some()).await;
    for round in ["second", "third"] {
        // Past b.example's 2 s, and within the 1 s a failed domain would
        // have been left alone for.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            joe.ping().await;
        }
        publish(&mut jane, round).await;
        let m = until(&mut joe, "", round, |e| event_item(e).is_some()).await;
        assert_eq!(event_item(&m).as_deref(), Some(round));
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_node_deletion_reaches_remote_subscribers() {
    let (a, b) = pair(14, |_| {}).await;
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    publish(&mut jane, "first").await;
    let (mut joe, joe_jid) = Client::login_at(b.addr, "b.example", "joe", "secret", "r").await;
    subscribe(&mut joe, &joe_jid).await;
    until(&mut joe, "", "the subscription", |e| {
        e.attr("id") == Some("sub")
    })
    .await;
    until(&mut joe, "", "the last item", |e| event_item(e).is_some()).await;
    let r = jane
        .iq(&format!(
            "<iq type='set' id='del'><pubsub xmlns='{}'><delete node='{NODE}'/></pubsub></iq>",
            ns::PUBSUB_OWNER
        ))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    let m = until(&mut joe, "", "the delete event", |e| e.name == "message").await;
    assert!(
        m.child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.child("delete", ns::PUBSUB_EVENT))
            .is_some_and(|d| d.attr("node") == Some(NODE)),
        "{m:?}"
    );
    assert_eq!(m.attr("from"), Some("jane@a.example"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_link_whose_queue_overflowed_takes_stanzas_again() {
    let (a, b) = pair(15, |c| c.s2s.queue = 2).await;
    let (mut jane, _) = Client::login_at(a.addr, "a.example", "jane", "secret", "web").await;
    let (mut joe, joe_jid) = Client::login_at(b.addr, "b.example", "joe", "secret", "phone").await;
    for c in [&mut jane, &mut joe] {
        c.send("<presence/>").await;
        c.drain().await;
    }
    // Ten messages while the link connects (TLS, dialback): its queue of
    // two overflows, and what does not fit bounces.
    for i in 0..10 {
        jane.send(&format!(
            "<message to='{joe_jid}' type='chat' id='m{i}'><body>{i}</body></message>"
        ))
        .await;
    }
    let (mut bounced, mut got) = (0, 0);
    while bounced + got < 10 {
        tokio::select! {
            e = next(&mut jane) => {
                assert_eq!(error_conditions(&e)[0], "resource-constraint", "{e:?}");
                bounced += 1;
            }
            m = next(&mut joe) => {
                assert_eq!(m.name, "message", "{m:?}");
                got += 1;
            }
        }
    }
    assert!(
        bounced > 0 && got >= 2,
        "bounced {bounced}, delivered {got}"
    );
    // The link drained: it takes stanzas again (an overflow once left it
    // refusing everything for good).
    jane.send(&format!(
        "<message to='{joe_jid}' type='chat' id='after'><body>later</body></message>"
    ))
    .await;
    let m = next(&mut joe).await;
    assert_eq!(m.attr("id"), Some("after"), "{m:?}");
    a.stop().await;
    b.stop().await;
}

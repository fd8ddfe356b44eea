//! Nothing acknowledged is lost: the real `starling` binary is killed with
//! SIGKILL in the middle of a publishing load, restarted on the same data
//! directory, and every publish it had acknowledged must be there.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{stream_ctx, Client};
use server::store::prelude::*;
use server::{AccountRecord, Redb};
use stanza::{ns, BareJid, Element, Event};

const PUBLISHERS: usize = 4;
/// Publishes each publisher keeps in flight, so group commits batch.
const IN_FLIGHT: usize = 8;

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn start(dir: &std::path::Path, c2s: SocketAddr) -> Child {
    let config = dir.join("starling.toml");
    std::fs::write(
        &config,
        "[limits]\npublishes_per_sec = 100000\npublish_burst = 100000\n\
         stanzas_per_sec = 100000\nstanza_burst = 100000\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--domain", common::DOMAIN, "--allow-plaintext-auth"])
        .args(["--c2s-listen", &c2s.to_string()])
        .args(["--c2s-tls-listen", &free_port().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the starling binary");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(c2s).is_err() {
        assert!(
            Instant::now() < deadline,
            "starling did not start listening"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The next stanza, or `None` once the server is gone.
async fn next(c: &mut Client) -> Option<Element> {
    loop {
        match c.next().await? {
            Event::Stanza(b) => {
                return Element::parse_in(std::str::from_utf8(&b).ok()?, &stream_ctx()).ok()
            }
            Event::StreamOpen(_) => {}
            Event::StreamClose => return None,
        }
    }
}

/// Publishes until the connection dies; returns the acknowledged ids.
async fn publish_until_killed(mut c: Client, user: usize) -> Vec<String> {
    let mut acked = Vec::new();
    let mut sent = 0usize;
    let send = |n: usize| {
        format!(
            "<iq type='set' id='{n}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='urn:xmpp:microblog:0'><item id='u{user}-{n}'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>post {n}</title></entry></item></publish>\
             <publish-options><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
             <field var='pubsub#max_items'><value>max</value></field></x></publish-options></pubsub></iq>"
        )
    };
    for _ in 0..IN_FLIGHT {
        c.send(&send(sent)).await;
        sent += 1;
    }
    while let Some(r) = next(&mut c).await {
        if r.name != "iq" {
            continue;
        }
        assert_eq!(r.attr("type"), Some("result"), "{r:?}");
        let id: usize = r.attr("id").unwrap().parse().unwrap();
        acked.push(format!("u{user}-{id}"));
        // Writing may fail once the server is gone; the read then ends.
        let _ = c.try_send(&send(sent)).await;
        sent += 1;
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_publishing_load_loses_no_acknowledged_item() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Redb::open(&dir.path().join("data")).unwrap();
        for u in 0..PUBLISHERS {
            let jid = BareJid::new(&format!("user{u}@{}", common::DOMAIN)).unwrap();
            store
                .create_account(&jid, &AccountRecord::new("secret", 4096))
                .unwrap();
        }
    }
    let addr = free_port();
    let mut child = start(dir.path(), addr);
    let mut tasks = Vec::new();
    for u in 0..PUBLISHERS {
        let (c, _) = Client::login_plain(addr, &format!("user{u}"), "secret", "load").await;
        tasks.push(tokio::spawn(publish_until_killed(c, u)));
    }
    // Let the load run, then pull the plug mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap());
    }
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(total > 50, "the load ran ({total} acknowledged)");

    let mut child = start(dir.path(), addr);
    for (u, ids) in acked.iter().enumerate() {
        let (mut c, _) = Client::login_plain(addr, &format!("user{u}"), "secret", "check").await;
        // Page through the history with RSM: one answer holding every
        // item would exceed a client's per-stanza limits.
        let mut stored = HashSet::new();
        let mut after = String::new();
        loop {
            let r = c
                .iq(&format!(
                    "<iq type='get' id='page'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                     <items node='urn:xmpp:microblog:0'/><set xmlns='http://jabber.org/protocol/rsm'>\
                     <max>50</max>{after}</set></pubsub></iq>"
                ))
                .await;
            let page: Vec<String> = r
                .child("pubsub", ns::PUBSUB)
                .and_then(|p| p.child("items", ns::PUBSUB))
                .map(|i| {
                    i.elements()
                        .filter_map(|it| it.attr("id").map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            let Some(last) = page.last() else { break };
            after = format!("<after>{last}</after>");
            stored.extend(page);
        }
        let lost: Vec<_> = ids.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(lost.is_empty(), "user{u} lost acknowledged items {lost:?}");
    }
    child.kill().unwrap();
    let _ = child.wait();
    eprintln!("{total} acknowledged publishes survived SIGKILL");
}

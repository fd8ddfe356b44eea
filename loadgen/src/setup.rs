//! `loadgen setup`: makes a server ready for a plan over XMPP alone, so any
//! server works: registers the accounts in-band (XEP-0077) and builds the
//! follow graph (mutual presence subscriptions, or explicit XEP-0060
//! subscriptions to open nodes). Nothing here is measured; the server keeps
//! the result, so one setup serves many `loadgen run`s.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use stanza::{ns, Event, Stanza};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::graph::Graph;
use crate::run::Target;
use crate::scram::KeyCache;
use crate::session::{self, Login, Mech, Mechanism};

/// Bounded: how long the subscription exchanges may take in all.
const GRAPH_TIMEOUT: Duration = Duration::from_secs(600);

fn login_for(target: &Target, i: u32, mech: Mech, sources: u8) -> Login {
    let target = target.for_user(i as usize);
    Login {
        addr: target.addr,
        source: crate::run::source(i as usize, sources, &target.addr),
        domain: target.domain.clone(),
        user: (target.user)(i),
        password: (target.password)(i),
        mech,
        resource: "setup".into(),
        tls: target.tls,
        ws: None,
        sse: None,
    }
}

/// Registers `n` accounts; returns (created, already there).
pub async fn register(target: &Target, n: usize, sources: u8) -> Result<(usize, usize)> {
    let gate = Arc::new(Semaphore::new(128));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n as u32 {
        let l = login_for(target, i, Mech::Plain, sources);
        let gate = gate.clone();
        tasks.spawn(async move {
            let _p = gate.acquire_owned().await;
            let mut c = session::connect(&l).await?;
            let f = c.open(&l.domain).await?;
            if f.child("register", ns::REGISTER_FEATURE).is_none() {
                return Err(session::SessionError::Negotiation(
                    "the server does not offer in-band registration".into(),
                ));
            }
            c.wr.write_all(
                format!(
                    "<iq type='set' id='reg'><query xmlns='jabber:iq:register'>\
                         <username>{}</username><password>{}</password></query></iq>",
                    stanza::escape::escape_text(&l.user),
                    stanza::escape::escape_text(&l.password)
                )
                .as_bytes(),
            )
            .await?;
            let r = c.element("registration").await?;
            let _ = c.wr.write_all(b"</stream:stream>").await;
            match r.attr("type") {
                Some("result") => Ok(true),
                _ if r
                    .child("error", ns::CLIENT)
                    .and_then(|e| e.child("conflict", ns::STANZA_ERRORS))
                    .is_some() =>
                {
                    Ok(false)
                }
                _ => Err(session::SessionError::Negotiation(format!(
                    "registration of {} refused",
                    l.user
                ))),
            }
        });
    }
    let (mut created, mut existed) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r? {
            Ok(true) => created += 1,
            Ok(false) => existed += 1,
            Err(e) => bail!("registering accounts on {}: {e}", target.addr),
        }
    }
    Ok((created, existed))
}

/// Logs every account in once, so `keys` holds each account's salted
/// keys (a no-op for PLAIN).
pub async fn warm_keys(
    target: &Target,
    n: u32,
    mech: Mech,
    sources: u8,
    keys: &Arc<KeyCache>,
) -> Result<()> {
    if mech == Mech::Plain {
        return Ok(());
    }
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let l = login_for(target, i, mech, sources);
        let (gate, keys) = (gate.clone(), keys.clone());
        tasks.spawn(async move {
            let _p = gate.acquire_owned().await;
            let mut c = session::login(&l, &keys).await?;
            let _ = c.wr.write_all(b"</stream:stream>").await;
            Ok::<_, session::SessionError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r?.map_err(|e| anyhow::anyhow!("setup login: {e}"))?;
    }
    Ok(())
}

/// Builds the follow graph over XMPP.
pub async fn follow_graph(
    target: &Target,
    graph: &Graph,
    mechanism: Mechanism,
    mech: Mech,
    sources: u8,
    keys: &Arc<KeyCache>,
) -> Result<()> {
    let n = graph.len() as u32;
    if mechanism == Mechanism::Direct {
        // No follows to build; one login per account still warms the
        // SCRAM key cache the measured run will use.
        return warm_keys(target, n, mech, sources, keys).await;
    }
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    // Who each user must subscribe to: the users it follows. For presence
    // the graph is already mutual, so both sides ask and both approve.
    let mut following: Vec<Vec<u32>> = vec![Vec::new(); n as usize];
    for (p, fs) in graph.followers.iter().enumerate() {
        for &f in fs {
            following[f as usize].push(p as u32);
        }
    }
    let following = Arc::new(following);
    // Pubsub: every followed user first creates an open node by publishing.
    let publishers: HashSet<u32> = graph
        .followers
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.is_empty())
        .map(|(p, _)| p as u32)
        .collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(n as usize));
    let available = Arc::new(tokio::sync::Barrier::new(n as usize));
    for i in 0..n {
        let l = login_for(target, i, mech, sources);
        let (gate, keys, following, barrier, available) = (
            gate.clone(),
            keys.clone(),
            following.clone(),
            barrier.clone(),
            available.clone(),
        );
        let jid_of = {
            let t = target.clone();
            move |p: u32| t.jid_of(p)
        };
        let publishes = mechanism == Mechanism::Pubsub && publishers.contains(&i);
        tasks.spawn(async move {
            let mut c = {
                let _p = gate.acquire_owned().await;
                session::login(&l, &keys).await
            };
            // Everyone waits for everyone, so no request meets a session
            // that is not there yet.
            barrier.wait().await;
            let mut c = c.as_mut().map_err(|e| anyhow::anyhow!("setup login: {e}"));
            if mechanism == Mechanism::Presence {
                // Available everywhere before any request is sent, so no
                // request waits in a server's pending-in store.
                if let Ok(c) = c.as_mut() {
                    become_available(c).await?;
                }
                available.wait().await;
            }
            let c = c?;
            let to: Vec<String> = following[i as usize].iter().map(|&p| jid_of(p)).collect();
            exchange(c, mechanism, publishes, &to).await
        });
    }
    let deadline = tokio::time::sleep(GRAPH_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            r = tasks.join_next() => match r {
                None => return Ok(()),
                Some(r) => r??,
            },
            () = &mut deadline => bail!("building the follow graph took longer than {GRAPH_TIMEOUT:?}"),
        }
    }
}

/// One session's part. Presence: ask each followed user, approve every
/// request, and finish once ours are all approved and the stream has gone
/// quiet (a server answers for an existing subscription itself, so the
/// number of requests we will see is not known). Pubsub: publish a first
/// item to an open node when followed, then subscribe to each followed
/// user's node, retrying while that node does not exist yet.
async fn exchange(
    c: &mut session::Conn,
    mechanism: Mechanism,
    publishes: bool,
    to: &[String],
) -> Result<()> {
    let me = c.jid.split('/').next().unwrap_or_default().to_owned();
    let mut approved: HashSet<String> = HashSet::new();
    let mut pending: Vec<String> = Vec::new();
    let mut created = !publishes;
    let mut retries = 0u32;
    let mut create_retries = 0u32;
    if mechanism == Mechanism::Presence {
        let mut out = String::new();
        for t in to {
            let mut w = stanza::ser::XmlWriter::with_capacity(96);
            w.open("presence")
                .attr("to", t)
                .attr("type", "subscribe")
                .close_empty();
            out.push_str(&String::from_utf8_lossy(w.as_bytes()));
        }
        c.wr.write_all(out.as_bytes()).await?;
    } else {
        pending = to.to_vec();
        if publishes {
            c.wr.write_all(create_node().as_bytes()).await?;
        } else {
            send_subscribes(c, &pending, &me).await?;
        }
    }
    loop {
        let complete = match mechanism {
            Mechanism::Presence => approved.len() >= to.len(),
            _ => created && pending.is_empty(),
        };
        // A busy server may take minutes over thousands of requests; the
        // whole set-up is bounded by GRAPH_TIMEOUT.
        let quiet = if complete {
            Duration::from_millis(300)
        } else {
            GRAPH_TIMEOUT
        };
        let ev = match tokio::time::timeout(
            quiet,
            c.read_event_within("follow graph", GRAPH_TIMEOUT),
        )
        .await
        {
            Err(_) if complete => {
                let _ = c.wr.write_all(b"</stream:stream>").await;
                return Ok(());
            }
            Err(_) => bail!("{me}: the follow graph set-up stalled"),
            Ok(Err(e)) => {
                let missing: Vec<&String> = to
                    .iter()
                    .filter(|t| !approved.contains(*t))
                    .take(3)
                    .collect();
                bail!(
                    "{me}: {e} ({} of {} approved; waiting for {missing:?}; {} subscriptions pending)",
                    approved.len(),
                    to.len(),
                    pending.len()
                )
            }
            Ok(Ok(ev)) => ev,
        };
        let Event::Stanza(b) = ev else { continue };
        let Ok(st) = Stanza::from_framed(b) else {
            continue;
        };
        let ty = st.type_().map(|t| t.into_owned());
        let from_bare = st
            .from()
            .map(|f| f.split('/').next().unwrap_or_default().to_owned());
        match (st.kind(), ty.as_deref()) {
            (stanza::Kind::Presence, Some("subscribe")) => {
                if let Some(f) = from_bare {
                    let mut w = stanza::ser::XmlWriter::with_capacity(96);
                    w.open("presence")
                        .attr("to", &f)
                        .attr("type", "subscribed")
                        .close_empty();
                    c.wr.write_all(w.as_bytes()).await?;
                }
            }
            (stanza::Kind::Presence, Some("subscribed")) => {
                approved.extend(from_bare);
            }
            (stanza::Kind::Iq, Some("set")) => {
                let id = st.id().unwrap_or_default().into_owned();
                c.wr.write_all(&session::iq_result(&id, None)).await?;
            }
            (stanza::Kind::Iq, Some("get")) => {
                // Caps verification, or anyone asking: our disco#info.
                let id = st.id().unwrap_or_default().into_owned();
                let to = st.from().map(|f| f.into_owned());
                c.wr.write_all(&session::disco_result(&id, to.as_deref(), None))
                    .await?;
            }
            (stanza::Kind::Iq, Some(t @ ("result" | "error"))) => {
                let id = st.id().unwrap_or_default().into_owned();
                if id == "create" {
                    if t == "error" {
                        // ejabberd answers item-not-found now and then
                        // while others subscribe to the node being made
                        // (mnesia transactions racing): try again shortly.
                        let why = String::from_utf8_lossy(st.bytes());
                        if create_retries >= 20 {
                            bail!("{me}: creating the node failed: {why}");
                        }
                        create_retries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        c.wr.write_all(create_node().as_bytes()).await?;
                        continue;
                    }
                    created = true;
                    send_subscribes(c, &pending, &me).await?;
                } else if let Some(target) = id.strip_prefix("sub:") {
                    if t == "result" {
                        pending.retain(|p| p != target);
                    } else if retries < 100 {
                        // The node may not exist yet: ask again shortly.
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        send_subscribes(c, &[target.to_owned()], &me).await?;
                    } else {
                        bail!("{me} could not subscribe to {target}");
                    }
                }
            }
            _ => {}
        }
    }
}

/// Requests the roster (RFC 6121 §2.1.6: only a resource that did is
/// "interested", and Prosody delivers roster pushes and `subscribed` only to
/// those), sends initial presence, and waits until the server has processed
/// both (a ping round trip).
async fn become_available(c: &mut session::Conn) -> Result<()> {
    c.wr.write_all(
        b"<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>\
          <presence/><iq type='get' id='ready'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await?;
    loop {
        let el = c.element("initial presence").await?;
        if el.attr("id") == Some("ready") {
            return Ok(());
        }
    }
}

async fn send_subscribes(c: &mut session::Conn, to: &[String], me: &str) -> Result<()> {
    let mut out = stanza::ser::XmlWriter::with_capacity(to.len() * 200);
    for t in to {
        out.open("iq")
            .attr("type", "set")
            .attr("id", &format!("sub:{t}"))
            .attr("to", t)
            .close_start();
        out.open("pubsub").attr("xmlns", ns::PUBSUB).close_start();
        out.open("subscribe")
            .attr("node", ns::MICROBLOG)
            .attr("jid", me)
            .close_empty();
        out.end("pubsub").end("iq");
    }
    c.wr.write_all(out.as_bytes()).await?;
    Ok(())
}

/// The first post, with publish-options making the node open: how a
/// publisher's node comes to exist.
fn create_node() -> String {
    format!(
        "<iq type='set' id='create'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='{}'><item id='setup'><entry xmlns='http://www.w3.org/2005/Atom'>\
         <title>hello</title></entry></item></publish><publish-options>\
         <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='pubsub#access_model'><value>open</value></field></x>\
         </publish-options></pubsub></iq>",
        ns::MICROBLOG
    )
}

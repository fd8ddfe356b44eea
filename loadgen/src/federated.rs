//! Federated runs (`--federated`, and the `federated:*` bench targets):
//! the publishers (the celebrities) are accounts of server A, a.example,
//! and their followers accounts of server B, b.example, so every delivery
//! crosses a server-to-server stream. The figures are then cross-server
//! latency and loss, all of it to the one remote domain, b.example.
//!
//! - **Starling → Starling**: both are child `starling` processes, A on
//!   127.0.0.2 and B on 127.0.0.3, joined through each other's static host
//!   map, with TLS and dialback on the s2s streams. Each store is seeded
//!   with its own half of the follow graph. A's fan-out sends one stanza
//!   per recipient, or one per publish with XEP-0033 multicast
//!   (`Fan::Multicast`), which B offers.
//! - **Starling → an external server** (`--server-b`, e.g. Prosody in the
//!   namespace of `scripts/federation-netns`): A is a child Starling on
//!   127.0.0.2:5269, found by the other server through DNS; B's followers
//!   are registered in-band and subscribe over XMPP, across the servers.
//!   `SERVER_B_PID` in the environment names its process, whose CPU then
//!   counts with A's.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::embedded::{self, Embedded};
use crate::graph::Graph;
use crate::run::{Plan, Target};

/// The publishers' domain.
pub const DOMAIN_A: &str = "a.example";
/// The followers' domain.
pub const DOMAIN_B: &str = "b.example";

/// How A sends to B's followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fan {
    /// One stanza per recipient.
    PerRecipient,
    /// One stanza per publish for the domain (XEP-0033), when B offers it.
    Multicast,
}

/// Who B is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receiver {
    /// A second Starling child, on 127.0.0.3.
    Starling,
    /// An external server's c2s address; its domain is b.example.
    External(SocketAddr),
}

/// The two servers of a federated run, kept alive while it lasts.
#[derive(Debug)]
pub struct Servers {
    _a: (Embedded, tempfile::TempDir),
    _b: Option<(Embedded, tempfile::TempDir)>,
}

impl Servers {
    /// Whether the followers' server is an external one (set up over XMPP).
    pub fn external(&self) -> bool {
        self._b.is_none()
    }
}

/// A port free on `ip` now (bound and released).
fn free_port(ip: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))
        .with_context(|| format!("binding {ip}:0"))?
        .local_addr()?
        .port())
}

/// Loadgen's accounts (`user{n}`, one password) on the server at `addr`.
fn side(
    addr: SocketAddr,
    domain: &str,
    pid: Option<u32>,
    b: Option<(usize, Arc<Target>)>,
) -> Target {
    Target {
        addr,
        domain: domain.into(),
        user: Arc::new(embedded::user),
        password: Arc::new(|_| embedded::PASSWORD.into()),
        tls: false,
        ws: None,
        pid,
        b,
    }
}

fn domain_of(plan: &Plan) -> impl Fn(u32) -> &'static str {
    let split = plan.celebrities as u32;
    move |i| if i < split { DOMAIN_A } else { DOMAIN_B }
}

/// Starts the servers of a federated run and seeds them; returns them,
/// the run's target (A, with B for the followers) and a label.
pub fn start(
    binary: &Path,
    plan: &Plan,
    graph: &Graph,
    fanout: &str,
    fan: Fan,
    receiver: &Receiver,
) -> Result<(Servers, Target, String)> {
    let multicast = fan == Fan::Multicast;
    // As the children's c2s rates are raised, so are the per-domain queue
    // and the incoming stream's rate: a burst of 20 posts to 5,000 remote
    // followers is 100,000 stanzas at once, the default queue's size, and
    // a run measures delivery, not the shedding past a limit.
    let roomy = "queue = 10000000\nqueue_bytes = 2147483648\n\
                 stanzas_per_sec = 10000000\nstanza_burst = 10000000";
    let dom = domain_of(plan);
    let a_dir = tempfile::tempdir()?;
    embedded::seed_for(a_dir.path(), graph, plan.mechanism, &dom, DOMAIN_A)?;
    let (a, b, b_target, b_label) = match receiver {
        Receiver::Starling => {
            let (pa, pb) = (free_port("127.0.0.2")?, free_port("127.0.0.3")?);
            let hosts = format!(
                "hosts = {{ '{DOMAIN_A}' = '127.0.0.2:{pa}', '{DOMAIN_B}' = '127.0.0.3:{pb}' }}"
            );
            let b_dir = tempfile::tempdir()?;
            embedded::seed_for(b_dir.path(), graph, plan.mechanism, &dom, DOMAIN_B)?;
            // TLS on (for the s2s streams); loadgen's clients use it only
            // with --tls.
            let b = Embedded::child_as(
                binary,
                b_dir.path(),
                fanout,
                (true, false),
                DOMAIN_B,
                &format!("listen = ['127.0.0.3:{pb}']\n{roomy}\n{hosts}"),
            )?;
            let a = Embedded::child_as(
                binary,
                a_dir.path(),
                fanout,
                (true, false),
                DOMAIN_A,
                &format!("listen = ['127.0.0.2:{pa}']\nmulticast = {multicast}\n{roomy}\n{hosts}"),
            )?;
            let bt = side(b.addr(), DOMAIN_B, b.pid(), None);
            (
                a,
                Some((b, b_dir)),
                bt,
                "starling (child process)".to_owned(),
            )
        }
        Receiver::External(addr) => {
            // The other server finds a.example through DNS: the standard
            // port on A's address.
            let a = Embedded::child_as(
                binary,
                a_dir.path(),
                fanout,
                (true, false),
                DOMAIN_A,
                &format!("listen = ['127.0.0.2:5269']\nmulticast = {multicast}\n{roomy}"),
            )?;
            let bt = Target {
                addr: *addr,
                domain: DOMAIN_B.into(),
                user: Arc::new(embedded::user),
                password: Arc::new(|_| embedded::PASSWORD.into()),
                tls: false,
                ws: None,
                // Its CPU counts with A's when its pid is known.
                pid: std::env::var("SERVER_B_PID")
                    .ok()
                    .and_then(|p| p.parse().ok()),
                b: None,
            };
            (a, None, bt, format!("the server at {addr}"))
        }
    };
    let target = side(
        a.addr(),
        DOMAIN_A,
        a.pid(),
        Some((plan.celebrities, Arc::new(b_target))),
    );
    let label = format!(
        "federated: publishers on {DOMAIN_A} (starling {}, fan-out {fanout}, {}), \
         followers on {DOMAIN_B} ({b_label}); s2s with STARTTLS and dialback",
        env!("CARGO_PKG_VERSION"),
        match fan {
            Fan::Multicast => "XEP-0033 multicast where offered",
            Fan::PerRecipient => "one stanza per recipient",
        }
    );
    Ok((
        Servers {
            _a: (a, a_dir),
            _b: b,
        },
        target,
        label,
    ))
}

/// What an external B needs before a run: the followers' accounts,
/// registered in-band; for presence follows, the subscriptions exchanged
/// over XMPP across the servers. (Explicit subscriptions are A's alone,
/// and A is seeded with them; a Starling B is seeded too.)
pub async fn set_up_external(
    servers: &Servers,
    plan: &Plan,
    graph: &Graph,
    target: &Target,
    keys: &Arc<crate::scram::KeyCache>,
) -> Result<()> {
    let Some((_, b)) = target.b.as_ref().filter(|_| servers.external()) else {
        return Ok(());
    };
    crate::setup::register(b, plan.sessions, plan.sources).await?;
    if plan.mechanism == crate::session::Mechanism::Presence {
        crate::setup::follow_graph(target, graph, plan.mechanism, plan.mech, plan.sources, keys)
            .await?;
    }
    Ok(())
}

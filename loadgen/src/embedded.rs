//! The embedded Starling: the server from `crates/server`, in this process
//! on its own runtime (threads named `starling-srv*`, so their CPU is told
//! apart from loadgen's), or as a child `starling` process when one
//! process cannot hold both ends of every connection.
//!
//! Either way the store is seeded directly with the plan's accounts and
//! follow graph (one transaction), since set-up is not what is measured.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use server::pubsub::{AccessModel, NodeConfig};
use server::roster::{RosterItem, Sub};
use server::store::prelude::*;
use server::store::{Seed, Subscription};
use server::{AccountRecord, Config, Listeners, Redb};
use stanza::BareJid;

use crate::graph::Graph;
use crate::session::Mechanism;

/// The domain the embedded server serves.
pub const DOMAIN: &str = "loadgen.localhost";
/// Every embedded account's password.
pub const PASSWORD: &str = "loadgen-pw";
/// SCRAM iterations of the embedded accounts (RFC 5802's minimum, and
/// Starling's default).
pub const ITERATIONS: u32 = 4096;

/// The account name of user `i`.
pub fn user(i: u32) -> String {
    format!("user{i}")
}

/// Writes the plan's accounts and follow graph into the store in `dir`.
pub fn seed(dir: &Path, graph: &Graph, mechanism: Mechanism) -> Result<()> {
    seed_for(dir, graph, mechanism, &|_| DOMAIN, DOMAIN)
}

/// The same for one server of a federated run: user `i` is an account of
/// `domain_of(i)`; this store (for `here`) gets its own accounts, and the
/// half of each follow that its domain keeps (the publisher's node and
/// subscribers, or each side's roster item).
pub fn seed_for(
    dir: &Path,
    graph: &Graph,
    mechanism: Mechanism,
    domain_of: &dyn Fn(u32) -> &'static str,
    here: &str,
) -> Result<()> {
    let bare =
        |i: u32| BareJid::new(&format!("{}@{}", user(i), domain_of(i))).expect("a valid JID");
    let ours = |i: u32| domain_of(i) == here;
    let store = Redb::open(dir).context("opening the store to seed it")?;
    // One key derivation for everyone: set-up speed, not a security
    // property, is what matters for a load test's throwaway accounts.
    let record = AccountRecord::new(PASSWORD, ITERATIONS);
    let n = graph.len() as u32;
    let mut seed = Seed {
        accounts: (0..n)
            .filter(|&i| ours(i))
            .map(|i| (bare(i), record.clone()))
            .collect(),
        // A token per account, for followers over the streaming API.
        tokens: (0..n)
            .filter(|&i| ours(i))
            .map(|i| {
                let t = server::store::TokenRecord {
                    jid: bare(i).to_string(),
                    client_id: String::new(),
                    scopes: "read".into(),
                    created_ms: 0,
                };
                (crate::sse::token_hash(&user(i)), t)
            })
            .collect(),
        ..Seed::default()
    };
    for (p, followers) in graph.followers.iter().enumerate() {
        let p = p as u32;
        match mechanism {
            Mechanism::Presence => {
                // Mutual (`both`), as PROTOCOL §3 item 5 says a portable
                // presence follow is.
                let both = RosterItem {
                    sub: Sub::Both,
                    listed: true,
                    ..RosterItem::default()
                };
                for &f in followers {
                    if ours(p) {
                        seed.roster.push((bare(p), bare(f), both.clone()));
                    }
                    if ours(f) {
                        seed.roster.push((bare(f), bare(p), both.clone()));
                    }
                }
            }
            Mechanism::Pubsub => {
                if followers.is_empty() || !ours(p) {
                    continue;
                }
                seed.nodes.push((
                    bare(p),
                    stanza::ns::MICROBLOG.to_owned(),
                    NodeConfig {
                        access_model: AccessModel::Open,
                        ..NodeConfig::default()
                    },
                ));
                for &f in followers {
                    seed.subscriptions.push(Subscription {
                        owner: bare(p),
                        node: stanza::ns::MICROBLOG.to_owned(),
                        jid: bare(f).to_jid(),
                    });
                }
            }
            Mechanism::Direct => {}
        }
    }
    store.seed(&seed).context("seeding the store")?;
    Ok(())
}

/// The configuration of an embedded server: plaintext auth on loopback,
/// rate limits out of the way, `fanout` as chosen; `websocket`: an HTTP
/// listener for XMPP over WebSocket too.
pub fn config(dir: &Path, fanout: &str, tls: bool, websocket: bool) -> Config {
    let mut c = Config {
        domains: vec![DOMAIN.into()],
        c2s_listen: vec!["127.0.0.1:0".parse().expect("literal")],
        c2s_tls_listen: Vec::new(),
        s2s: server::s2s::S2sConfig {
            listen: Vec::new(),
            ..Default::default()
        },
        data_dir: dir.to_owned(),
        // With TLS: STARTTLS with a self-signed certificate generated in
        // the data directory.
        tls,
        require_encryption: false,
        allow_plaintext_auth: true,
        fanout: fanout.to_owned(),
        http_listen: if websocket {
            vec!["127.0.0.1:0".parse().expect("literal")]
        } else {
            Vec::new()
        },
        ..Config::default()
    };
    let l = &mut c.limits;
    l.stanzas_per_sec = 1_000_000;
    l.stanza_burst = 1_000_000;
    l.publishes_per_sec = 1_000_000;
    l.publish_burst = 1_000_000;
    c
}

/// A running embedded server.
#[derive(Debug)]
pub enum Embedded {
    /// In this process, on its own runtime.
    InProcess {
        /// Its c2s address.
        addr: SocketAddr,
        /// Its WebSocket (HTTP) address, when configured.
        ws: Option<SocketAddr>,
        /// Signals shutdown.
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        /// The server's thread.
        thread: Option<std::thread::JoinHandle<()>>,
    },
    /// A child `starling` process.
    Child {
        /// Its c2s address.
        addr: SocketAddr,
        /// Its WebSocket (HTTP) address, when asked for.
        ws: Option<SocketAddr>,
        /// The process.
        child: Child,
    },
}

impl Embedded {
    /// Starts the server in this process on port 0.
    pub fn in_process(config: Config) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("starling-srv-main".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .max_blocking_threads(32)
                    .thread_name("starling-srv")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(anyhow::anyhow!("server runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listeners = match Listeners::bind(&config).await {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(anyhow::anyhow!("binding: {e}")));
                            return;
                        }
                    };
                    let _ = tx.send(Ok((
                        listeners.c2s_addrs()[0],
                        listeners.http_addrs().first().copied(),
                    )));
                    if let Err(e) = server::run(listeners, config, async {
                        let _ = stop_rx.await;
                    })
                    .await
                    {
                        eprintln!("embedded starling: {e}");
                    }
                });
            })
            .context("spawning the server thread")?;
        let (addr, ws) = rx
            .recv_timeout(Duration::from_secs(30))
            .context("the embedded server did not start")??;
        Ok(Self::InProcess {
            addr,
            ws,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Starts `binary serve` on the data dir, with the same settings;
    /// `websocket`: with an HTTP listener for XMPP over WebSocket too.
    pub fn child(
        binary: &Path,
        dir: &Path,
        fanout: &str,
        tls: bool,
        websocket: bool,
    ) -> Result<Self> {
        Self::child_as(binary, dir, fanout, (tls, websocket), DOMAIN, "listen = []")
    }

    /// [`Self::child`] for `domain`, with `s2s` the body of its `[s2s]`
    /// table (federated runs).
    pub fn child_as(
        binary: &Path,
        dir: &Path,
        fanout: &str,
        (tls, websocket): (bool, bool),
        domain: &str,
        s2s: &str,
    ) -> Result<Self> {
        let cfg = dir.join("loadgen-starling.toml");
        std::fs::write(
            &cfg,
            format!(
                "tls = {tls}\nrequire_encryption = false\nallow_plaintext_auth = true\n\
                 c2s_tls_listen = []\n\
                 [s2s]\n{s2s}\n\
                 [limits]\nstanzas_per_sec = 1000000\nstanza_burst = 1000000\n\
                 publishes_per_sec = 1000000\npublish_burst = 1000000\n\
                 [web]\nrequests_per_window = 1000000000\n"
            ),
        )?;
        // The port is picked by binding and releasing it, so another socket
        // (an earlier run's client connection, say) can take it before the
        // child binds: a child that exits at once is retried on a new port.
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let ws = if websocket {
                Some(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
            } else {
                None
            };
            let mut command = Command::new(binary);
            command
                .arg("--config")
                .arg(&cfg)
                .arg("--data-dir")
                .arg(dir)
                .args(["--domain", domain, "serve", "--fanout", fanout])
                .args(["--c2s-listen", &port.to_string()]);
            if let Some(w) = ws {
                command.args(["--http-listen", &w.to_string()]);
            }
            let mut child = command
                // Warnings only, as the Prosody peer logs: per-session info
                // lines would cost the server time the comparison counts.
                .env(
                    "RUST_LOG",
                    std::env::var("LOADGEN_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .env_remove("RUST_BACKTRACE")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let up =
                    answers(port) && ws.is_none_or(|w| std::net::TcpStream::connect(w).is_ok());
                if up {
                    return Ok(Self::Child {
                        addr: port,
                        ws,
                        child,
                    });
                }
                if let Some(status) = child.try_wait()? {
                    last = format!(
                        "{} exited ({status}) before listening on {port}",
                        binary.display()
                    );
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("{} did not start listening on {port}", binary.display());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!("{last}, five times")
    }

    /// The c2s address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::InProcess { addr, .. } | Self::Child { addr, .. } => *addr,
        }
    }

    /// The WebSocket (HTTP) address, if it serves one.
    pub fn ws(&self) -> Option<SocketAddr> {
        match self {
            Self::InProcess { ws, .. } | Self::Child { ws, .. } => *ws,
        }
    }

    /// The server's pid, when it is a separate process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::Child { child, .. } => Some(child.id()),
            Self::InProcess { .. } => None,
        }
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        match self {
            Self::InProcess { stop, thread, .. } => {
                if let Some(s) = stop.take() {
                    let _ = s.send(());
                }
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            Self::Child { child, .. } => {
                if let Ok(Some(_)) = child.try_wait() {
                    return; // already stopped (stop, then drop)
                }
                // SIGTERM for a clean shutdown; kill if it lingers.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .stderr(Stdio::null())
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The `starling` binary next to this one (same target directory).
pub fn sibling_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.join("starling");
    p.exists().then_some(p)
}

/// Whether a Starling on `port` has finished starting: it answers a stream
/// header. Its listener is bound before it reads its store, and a connect
/// alone succeeds meanwhile (the kernel queues it); the RSS before logins
/// must be taken after the start, or the store's accounts and follows count
/// as the sessions' memory.
fn answers(port: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(port) else {
        return false;
    };
    let header = format!(
        "<?xml version='1.0'?><stream:stream to='{DOMAIN}' version='1.0' \
         xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    );
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut b = [0u8; 1];
    s.write_all(header.as_bytes()).is_ok() && matches!(s.read(&mut b), Ok(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that is bound but not yet serving (a server still
    /// reading its store) is not ready; one that answers is.
    #[test]
    fn a_server_is_ready_when_it_answers_not_when_it_is_bound() {
        let bound = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!answers(bound.local_addr().unwrap()));

        let serving = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = serving.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut c, _) = serving.accept().unwrap();
            let mut b = [0u8; 16];
            let _ = c.read(&mut b).unwrap();
            c.write_all(b"<?xml version='1.0'?>").unwrap();
        });
        assert!(answers(addr));
        t.join().unwrap();
    }
}

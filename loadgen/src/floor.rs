//! The `floor` bench target: the least a server could do for the same
//! plan, so that every server's figures can be read against this
//! machine's physical limit measured in the same run.
//!
//! It is a separate process (`loadgen floor`, hidden), so its CPU, memory
//! and syscalls are sampled exactly as a server's are. It speaks just
//! enough XMPP for loadgen's sessions: the stream header, SASL PLAIN or
//! SCRAM (one key derivation, shared by every account), bind. A publish
//! is acknowledged and its event is made once and appended to every
//! follower's outbox (followers from the plan's graph, no store, no
//! access checks); a direct message is passed on as it is. It runs on two
//! worker threads, as the servers beside it have this machine's two
//! cores; a session's writer takes everything queued for it each time it
//! wakes, with one write.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use server::sasl::{self, Hash, ScramKeys, ScramServer};
use stanza::ser::{self, XmlWriter};
use stanza::{ns, Element, Event, Framer, Kind, Stanza};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::embedded::{DOMAIN, ITERATIONS, PASSWORD};
use crate::graph::Graph;

/// One session's queued bytes and the writer waiting for them.
#[derive(Default)]
struct Outbox {
    buf: parking_lot::Mutex<Vec<u8>>,
    wake: Notify,
    closed: AtomicBool,
}

impl Outbox {
    fn push(&self, bytes: &[u8]) {
        self.buf.lock().extend_from_slice(bytes);
        self.wake.notify_one();
    }
}

/// Bound sessions by user index.
type Sessions = Arc<parking_lot::RwLock<Vec<Option<Arc<Outbox>>>>>;

/// What every connection shares.
struct Shared {
    graph: Graph,
    /// How long an initial presence takes to be processed (a slow
    /// server's, for tests of loadgen's accounting).
    presence_delay: Duration,
    sessions: Sessions,
    sha1: ScramKeys,
    sha256: ScramKeys,
}

/// Runs the floor on `listener` until the process is stopped.
pub fn serve(
    listener: std::net::TcpListener,
    graph: Graph,
    presence_delay: Duration,
) -> Result<()> {
    // Two workers, as the servers it is compared with have this machine's
    // two cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let salt = b"loadgen-floor-salt";
    let shared = Arc::new(Shared {
        sessions: Arc::new(parking_lot::RwLock::new(vec![None; graph.len()])),
        graph,
        presence_delay,
        sha1: ScramKeys::derive(Hash::Sha1, PASSWORD, salt, ITERATIONS),
        sha256: ScramKeys::derive(Hash::Sha256, PASSWORD, salt, ITERATIONS),
    });
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let shared = shared.clone();
            tokio::spawn(async move {
                let _ = connection(tcp, &shared).await;
            });
        }
    })
}

async fn writer(mut wr: tokio::net::tcp::OwnedWriteHalf, out: Arc<Outbox>) {
    let mut batch = Vec::new();
    loop {
        out.wake.notified().await;
        std::mem::swap(&mut batch, &mut *out.buf.lock());
        if !batch.is_empty() && wr.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
        if out.closed.load(Ordering::Acquire) && out.buf.lock().is_empty() {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

/// The user index of an account name, `user{i}`.
fn index_of(name: &str, n: usize) -> Option<u32> {
    let i: u32 = name.strip_prefix("user")?.split('@').next()?.parse().ok()?;
    ((i as usize) < n).then_some(i)
}

/// Where a connection is in its negotiation.
#[derive(Default)]
struct State {
    user: Option<u32>,
    scram: Option<ScramServer>,
    bound: bool,
}

async fn connection(tcp: tokio::net::TcpStream, shared: &Shared) -> Result<()> {
    let (mut rd, wr) = tcp.into_split();
    let out = Arc::new(Outbox::default());
    tokio::spawn(writer(wr, out.clone()));
    let mut framer = Framer::new(stanza::Limits {
        max_stanza_bytes: 1 << 20,
        ..stanza::Limits::default()
    });
    let mut st = State::default();
    let result = async {
        loop {
            while let Some(ev) = framer.next()? {
                match ev {
                    Event::StreamOpen(_) => open(&out, &st),
                    Event::StreamClose => {
                        out.push(&ser::stream_close());
                        return Ok(());
                    }
                    Event::Stanza(b) => {
                        if on_element(b, &mut st, &out, shared)? {
                            framer.reset();
                        }
                    }
                }
            }
            framer.buffer_mut().reserve(16 * 1024);
            if rd.read_buf(framer.buffer_mut()).await? == 0 {
                return Ok(());
            }
        }
    }
    .await;
    if let Some(u) = st.user.filter(|_| st.bound) {
        let mut sessions = shared.sessions.write();
        if sessions[u as usize]
            .as_ref()
            .is_some_and(|o| Arc::ptr_eq(o, &out))
        {
            sessions[u as usize] = None;
        }
    }
    out.closed.store(true, Ordering::Release);
    out.wake.notify_one();
    result
}

fn open(out: &Outbox, st: &State) {
    out.push(&ser::stream_header(ns::CLIENT, DOMAIN, None, "floor"));
    let mechanisms: &[&str] = if st.user.is_none() {
        &["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    } else {
        &[]
    };
    out.push(&ser::features(&ser::Features {
        mechanisms,
        bind: st.user.is_some(),
        ..ser::Features::default()
    }));
}

/// Handles one top-level element; true when the stream restarts.
fn on_element(b: bytes::Bytes, st: &mut State, out: &Arc<Outbox>, shared: &Shared) -> Result<bool> {
    let n = shared.graph.len();
    if st.user.is_none() {
        let el = Element::from_stanza(&b)?;
        let data = B64.decode(el.text().trim()).unwrap_or_default();
        match (el.name.as_str(), el.attr("mechanism")) {
            ("auth", Some("PLAIN")) => {
                let (_, user, _) = sasl::parse_plain(&data)?;
                st.user = Some(index_of(&user, n).context("no such user")?);
                out.push(&ser::sasl_success(None));
                return Ok(true);
            }
            ("auth", Some(m @ ("SCRAM-SHA-1" | "SCRAM-SHA-256"))) => {
                let first = sasl::parse_client_first(&data)?;
                let keys = if m == "SCRAM-SHA-1" {
                    &shared.sha1
                } else {
                    &shared.sha256
                };
                let nonce = format!("{:016x}", rand::random::<u64>());
                let (server, challenge) = ScramServer::start(keys.clone(), first, &nonce);
                st.scram = Some(server);
                out.push(&ser::sasl_challenge(&challenge));
            }
            ("response", _) => {
                let server = st.scram.take().context("a response without a challenge")?;
                let fin = server.finish(&data)?;
                st.user = Some(index_of(server.username(), n).context("no such user")?);
                out.push(&ser::sasl_success(Some(&fin)));
                return Ok(true);
            }
            (other, _) => bail!("<{other}> before authentication"),
        }
        return Ok(false);
    }
    let me = st.user.unwrap_or_default();
    let s = Stanza::from_framed(b)?;
    match s.kind() {
        Kind::Iq if !st.bound => {
            let id = s.id().unwrap_or_default().into_owned();
            out.push(&ser::bind_result(&id, &format!("user{me}@{DOMAIN}/lg")));
            st.bound = true;
        }
        Kind::Iq if s.type_().as_deref() == Some("set") => {
            let id = s.id().unwrap_or_default().into_owned();
            out.push(&ser::iq_result(&id, None, None, None));
            if let Some(event) = event_of(s.bytes(), me) {
                let sessions = shared.sessions.read();
                for &f in &shared.graph.followers[me as usize] {
                    if let Some(o) = sessions.get(f as usize).and_then(Option::as_ref) {
                        o.push(&event);
                    }
                }
            }
        }
        Kind::Presence if s.type_().is_none() => {
            // Available from now on (after the configured delay): posts
            // reach it, and it gets its own copy of its presence (RFC 6121
            // §4.2.2), which loadgen waits for before counting it up.
            let (out, sessions, delay) =
                (out.clone(), shared.sessions.clone(), shared.presence_delay);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if out.closed.load(Ordering::Acquire) {
                    return;
                }
                sessions.write()[me as usize] = Some(out.clone());
                let mut w = XmlWriter::with_capacity(96);
                w.open("presence")
                    .attr("from", &format!("user{me}@{DOMAIN}/lg"))
                    .close_empty();
                out.push(w.as_bytes());
            });
        }
        Kind::Message => {
            let to = s.to().and_then(|t| index_of(&t, n));
            if let Some(o) = to.and_then(|t| shared.sessions.read()[t as usize].clone()) {
                o.push(s.bytes());
            }
        }
        _ => {}
    }
    Ok(false)
}

/// A publish's event message, made once for every follower: the item's
/// id and payload as published.
fn event_of(iq: &[u8], publisher: u32) -> Option<Vec<u8>> {
    let start = memchr::memmem::find(iq, b"<item ")?;
    let end = memchr::memmem::rfind(iq, b"</item>")? + b"</item>".len();
    let item = &iq[start..end];
    let from = format!("user{publisher}@{DOMAIN}");
    let mut w = XmlWriter::with_capacity(item.len() + 256);
    w.open("message")
        .attr("from", &from)
        .attr("type", "headline")
        .close_start();
    w.open("event")
        .attr("xmlns", ns::PUBSUB_EVENT)
        .close_start();
    w.open("items")
        .attr("node", ns::MICROBLOG)
        .close_start()
        .raw(item)
        .end("items")
        .end("event")
        .end("message");
    Some(w.as_bytes().to_vec())
}

/// A floor started as a child process (`loadgen floor`).
#[derive(Debug)]
pub struct Floor {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
    _graph: tempfile::TempDir,
}

/// The loadgen binary to run the floor: `LOADGEN_BIN`, this program when
/// it is loadgen, or the loadgen beside a test binary.
fn loadgen_binary() -> Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("LOADGEN_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    if exe.file_stem().is_some_and(|s| s == "loadgen") {
        return Ok(exe);
    }
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("loadgen"))
        .filter(|p| p.is_file())
        .context("no loadgen binary to run the floor (set LOADGEN_BIN)")
}

impl Floor {
    /// Starts the floor for `graph` on a free loopback port.
    pub fn start(graph: &Graph) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("graph.json");
        std::fs::write(&file, serde_json::to_vec(graph)?)?;
        let exe = loadgen_binary()?;
        // A test knob: a floor slow to process initial presence.
        let presence_delay_ms: u64 = std::env::var("LOADGEN_FLOOR_PRESENCE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut last = String::new();
        // The port is picked by binding and releasing it; if another
        // socket takes it first, the child exits and a new port is tried.
        for _ in 0..5 {
            let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let mut child = Command::new(&exe)
                .arg("floor")
                .arg("--graph")
                .arg(&file)
                .args(["--listen", &addr.to_string()])
                .args(["--presence-delay-ms", &presence_delay_ms.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("starting {} floor", exe.display()))?;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if std::net::TcpStream::connect(addr).is_ok() {
                    return Ok(Self {
                        child,
                        addr,
                        _graph: dir,
                    });
                }
                if let Some(status) = child.try_wait()? {
                    last = format!("the floor exited ({status}) before listening on {addr}");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("the floor did not listen on {addr}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        bail!("{last}, five times")
    }

    /// The floor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `loadgen floor --graph FILE --listen ADDR`: serves until killed.
pub fn main(graph: &Path, listen: SocketAddr, presence_delay: Duration) -> Result<()> {
    let graph: Graph = serde_json::from_slice(
        &std::fs::read(graph).with_context(|| format!("--graph {}", graph.display()))?,
    )
    .with_context(|| format!("--graph {}: not a follow graph", graph.display()))?;
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("--listen {listen}"))?;
    serve(listener, graph, presence_delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_becomes_one_event_with_its_item() {
        let iq = br#"<iq type='set' id='p1-0-5'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='urn:xmpp:microblog:0'><item id='p1-0-5'><entry xmlns='http://www.w3.org/2005/Atom'><title>t</title></entry></item></publish></pubsub></iq>"#;
        let ev = String::from_utf8(event_of(iq, 3).unwrap()).unwrap();
        let el = Element::parse(&ev).unwrap();
        assert_eq!(el.attr("from"), Some("user3@loadgen.localhost"));
        assert_eq!(el.attr("type"), Some("headline"));
        let item = el
            .child("event", ns::PUBSUB_EVENT)
            .and_then(|e| e.child("items", ns::PUBSUB_EVENT))
            .and_then(|i| i.child("item", ns::PUBSUB_EVENT))
            .unwrap();
        assert_eq!(item.attr("id"), Some("p1-0-5"));
        assert!(event_of(b"<iq type='set' id='x'><query/></iq>", 0).is_none());
    }

    #[test]
    fn only_plan_users_have_an_index() {
        assert_eq!(index_of("user7", 10), Some(7));
        assert_eq!(index_of("user7@loadgen.localhost/lg", 10), Some(7));
        assert_eq!(index_of("user10", 10), None);
        assert_eq!(index_of("lg1", 10), None);
    }
}

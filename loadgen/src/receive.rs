//! The receive-capacity benchmark: is loadgen ever what limits a run?
//!
//! A trivial local sender (its own thread, no XMPP logic) accepts
//! loadgen's sessions and writes pre-made pubsub event messages to them as
//! fast as the sockets take them, patching only the timestamp digits of
//! each batch. The receiving side is loadgen's real session loop
//! ([`session::live`]) on a single-threaded runtime, so "deliveries per
//! second" is what one core of loadgen can frame, parse and account, and
//! the thread's own CPU time gives its cost per delivery.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::session::{self, Counters, Live, Login, Mech, Mechanism};
use crate::stats::{self, Summary};

/// What the benchmark runs.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivePlan {
    /// Receiving sessions.
    pub sessions: usize,
    /// Event messages per write from the sender.
    pub batch: usize,
    /// Bytes of text in each event's Atom content.
    pub payload: usize,
    /// Seconds measured.
    pub duration_s: f64,
    /// Seconds before measuring.
    pub warmup_s: f64,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiveFigures {
    /// Deliveries received in the measured window.
    pub deliveries: u64,
    /// Deliveries per second in the measured window.
    pub deliveries_per_s: f64,
    /// The receiving thread's CPU µs per delivery.
    pub loadgen_cpu_us_per_delivery: f64,
    /// The receiving thread's CPU seconds over wall seconds (≤ 1: one core).
    pub loadgen_core_utilisation: f64,
    /// Bytes of one event message as sent.
    pub stanza_bytes: usize,
    /// The sender's CPU µs per stanza written (for scale).
    pub sender_cpu_us_per_stanza: f64,
    /// Stamped-by-sender → parsed-by-loadgen, as recorded for a run.
    pub latency: Summary,
    /// Stanzas the sender wrote in all, and deliveries loadgen received in
    /// all (they match: nothing written is lost).
    pub written: u64,
    /// See `written`.
    pub received: u64,
}

/// The JSON record of one receive benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiveRecord {
    /// Schema tag.
    pub schema: &'static str,
    /// The command that produced it.
    pub command: String,
    /// When, ISO 8601 UTC.
    pub started_at: String,
    /// The machine.
    pub machine: String,
    /// The source revision.
    pub git_commit: String,
    /// The plan.
    pub plan: ReceivePlan,
    /// The figures.
    pub figures: ReceiveFigures,
}

/// Width of the timestamp field in a post id (µs since the epoch).
const STAMP_DIGITS: usize = 16;

/// One batch of event messages, and where each timestamp sits in it.
fn premade_batch(batch: usize, payload: usize) -> (Vec<u8>, Vec<usize>, usize) {
    let text = "x".repeat(payload);
    let mut buf = Vec::new();
    let mut stamps = Vec::new();
    let mut one = 0;
    for i in 0..batch {
        let start = buf.len();
        let head = format!(
            "<message from='sender@loadgen.localhost' to='lg@loadgen.localhost/r' type='headline'>\
             <event xmlns='http://jabber.org/protocol/pubsub#event'><items node='{}'>\
             <item id='p{i}-{}-",
            stanza::ns::MICROBLOG,
            u32::MAX
        );
        buf.extend_from_slice(head.as_bytes());
        stamps.push(buf.len());
        buf.extend_from_slice(&[b'0'; STAMP_DIGITS]);
        buf.extend_from_slice(
            format!(
                "' publisher='sender@loadgen.localhost'><entry xmlns='http://www.w3.org/2005/Atom'>\
                 <title>post {i}</title><content>{text}</content></entry></item></items></event>\
                 </message>"
            )
            .as_bytes(),
        );
        one = buf.len() - start;
    }
    (buf, stamps, one)
}

fn stamp(buf: &mut [u8], at: &[usize], us: u64) {
    let digits = format!("{us:0width$}", width = STAMP_DIGITS);
    for &p in at {
        buf[p..p + STAMP_DIGITS].copy_from_slice(digits.as_bytes());
    }
}

/// The sender: accepts `sessions` connections, then writes batches to
/// each until `stop`. Returns (stanzas written, its CPU seconds).
fn sender(
    listener: std::net::TcpListener,
    plan: ReceivePlan,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    received: Arc<Counters>,
) -> Result<f64> {
    // How far the sender may run ahead of what loadgen has parsed: enough
    // to keep every socket busy, little enough that latencies stay those
    // of a run rather than of a backlog.
    let window = (plan.sessions * plan.batch * 4) as u64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let cpu0 = crate::sys::thread_cpu();
        // Every session connects before any is written to, so the
        // connecting ones do not queue behind a busy runtime.
        let mut accepted = Vec::with_capacity(plan.sessions);
        for _ in 0..plan.sessions {
            accepted.push(listener.accept().await?.0);
        }
        let mut tasks = Vec::new();
        for tcp in accepted {
            let _ = tcp.set_nodelay(true);
            let (mut rd, mut wr) = tcp.into_split();
            // Whatever the client says (its presence) is read and dropped.
            tokio::spawn(async move {
                let mut sink = vec![0u8; 4096];
                while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
            });
            let stop = stop.clone();
            let written = written.clone();
            let received = received.clone();
            let (mut batch, at, _) = premade_batch(plan.batch, plan.payload);
            tasks.push(tokio::spawn(async move {
                let header = "<?xml version='1.0'?><stream:stream from='loadgen.localhost' \
                              version='1.0' xmlns='jabber:client' \
                              xmlns:stream='http://etherx.jabber.org/streams'>";
                if wr.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
                while !stop.load(Ordering::Relaxed) {
                    if written.load(Ordering::Relaxed)
                        > received.received.load(Ordering::Relaxed) + window
                    {
                        tokio::time::sleep(Duration::from_micros(500)).await;
                        continue;
                    }
                    stamp(&mut batch, &at, session::now_us());
                    if wr.write_all(&batch).await.is_err() {
                        return;
                    }
                    written.fetch_add(at.len() as u64, Ordering::Relaxed);
                }
                let _ = wr.write_all(b"</stream:stream>").await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        anyhow::Ok(crate::sys::thread_cpu() - cpu0)
    })
}

/// Runs the benchmark.
pub fn run(plan: &ReceivePlan) -> Result<ReceiveFigures> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("binding the sender's listener")?;
    let addr: SocketAddr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let counters = Arc::new(Counters::default());
    let sender_thread = {
        let (plan, stop, written, c) = (
            plan.clone(),
            stop.clone(),
            written.clone(),
            counters.clone(),
        );
        std::thread::Builder::new()
            .name("receive-sender".into())
            .spawn(move || sender(listener, plan, stop, written, c))?
    };
    // The receiving side: one thread, loadgen's own session loop.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let plan2 = plan.clone();
    let stop2 = stop.clone();
    let result = rt.block_on(async move {
        let plan = plan2;
        let (stop_tx, stop_rx) = watch::channel(false);
        let payload: Arc<str> = Arc::from("");
        let mut conns = Vec::with_capacity(plan.sessions);
        for i in 0..plan.sessions {
            let login = Login {
                addr,
                source: None,
                domain: "loadgen.localhost".into(),
                user: format!("lg{i}"),
                password: String::new(),
                mech: Mech::Plain,
                resource: "r".into(),
                tls: false,
                ws: None,
                sse: None,
            };
            let conn = session::connect(&login)
                .await
                .with_context(|| format!("session {i} connecting to the sender"))?;
            conns.push(conn);
        }
        let start_us = session::now_us();
        let measure_from = start_us + (plan.warmup_s * 1e6) as u64;
        let mut posts_tx = Vec::new();
        let mut sessions = Vec::new();
        for (i, conn) in conns.into_iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            posts_tx.push(tx);
            let live = Live {
                index: i as u32,
                mechanism: Mechanism::Pubsub,
                payload: payload.clone(),
                followers: Arc::from(Vec::new()),
                counters: counters.clone(),
                measure_from_us: measure_from,
                announced: None,
            };
            sessions.push(tokio::spawn(session::live(
                conn,
                live,
                rx,
                stop_rx.clone(),
                start_us,
                None,
            )));
        }
        tokio::time::sleep(Duration::from_secs_f64(plan.warmup_s)).await;
        let cpu0 = crate::sys::thread_cpu();
        let (got0, t0) = (counters.received.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(Duration::from_secs_f64(plan.duration_s)).await;
        let cpu1 = crate::sys::thread_cpu();
        let (got1, wall) = (counters.received.load(Ordering::Relaxed), t0.elapsed());
        // Stop the sender: each session reads to the end of its stream
        // (the sender closes it after its last batch) and ends by itself.
        stop2.store(true, Ordering::Relaxed);
        let all = futures_join(sessions);
        let outcomes = match tokio::time::timeout(Duration::from_secs(60), all).await {
            Ok(o) => o,
            Err(_) => anyhow::bail!("the receiving sessions did not drain within 60 s"),
        };
        let _ = stop_tx.send(true);
        let mut latency = stats::histogram();
        let mut ended = Vec::new();
        for out in outcomes {
            let out = out?;
            for d in &out.deliveries {
                stats::record(&mut latency, d.latency_us as u64);
            }
            if let Some((why, _)) = out.ended {
                if why != "stream closed" {
                    ended.push(why);
                }
            }
            ended.extend(out.errors);
        }
        drop(posts_tx);
        if let Some(e) = ended.first() {
            anyhow::bail!(
                "{} receiving session(s) failed, the first with: {e}",
                ended.len()
            );
        }
        let n = got1 - got0;
        anyhow::Ok((
            n,
            n as f64 / wall.as_secs_f64(),
            (cpu1 - cpu0) * 1e6 / n.max(1) as f64,
            (cpu1 - cpu0) / wall.as_secs_f64(),
            Summary::of(&latency),
            counters.received.load(Ordering::Relaxed),
        ))
    });
    stop.store(true, Ordering::Relaxed);
    let sender_cpu = sender_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the sender thread panicked"))??;
    let (deliveries, per_s, cpu_per, util, latency, received) = result?;
    let written = written.load(Ordering::Relaxed);
    if received != written {
        anyhow::bail!("the sender wrote {written} stanzas but loadgen received {received}");
    }
    Ok(ReceiveFigures {
        deliveries,
        deliveries_per_s: per_s,
        loadgen_cpu_us_per_delivery: cpu_per,
        loadgen_core_utilisation: util,
        stanza_bytes: premade_batch(1, plan.payload).2,
        sender_cpu_us_per_stanza: sender_cpu * 1e6 / written.max(1) as f64,
        latency,
        written,
        received,
    })
}

async fn futures_join<T>(
    handles: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await);
    }
    out
}

/// The text report.
pub fn text(r: &ReceiveRecord) -> String {
    let f = &r.figures;
    format!(
        "loadgen receive capacity — {} sessions, batches of {}, {}-byte stanzas, {:.0} s measured\n\
         machine: {}\n\
         deliveries/s (one receiving thread): {:.0}\n\
         loadgen CPU per delivery: {:.2} µs (thread busy {:.0}% of the time)\n\
         sender CPU per stanza: {:.2} µs\n\
         written {} = received {}\n\
         stamp → parsed: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
        r.plan.sessions,
        r.plan.batch,
        f.stanza_bytes,
        r.plan.duration_s,
        r.machine,
        f.deliveries_per_s,
        f.loadgen_cpu_us_per_delivery,
        f.loadgen_core_utilisation * 100.0,
        f.sender_cpu_us_per_stanza,
        f.written,
        f.received,
        f.latency.p50_ms,
        f.latency.p99_ms,
        f.latency.max_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premade_events_carry_their_stamp_and_parse_as_deliveries() {
        let (mut buf, at, one) = premade_batch(3, 10);
        assert_eq!(at.len(), 3);
        stamp(&mut buf, &at, 1_700_000_000_123_456);
        assert_eq!(buf.len(), 3 * one);
        let first = std::str::from_utf8(&buf[..one]).unwrap();
        assert!(first.contains("item id='p0-4294967295-1700000000123456'"));
        let el = stanza::Element::parse(first).unwrap();
        assert_eq!(el.name, "message");
    }

    #[test]
    fn a_short_run_receives_everything_written() {
        let f = run(&ReceivePlan {
            sessions: 4,
            batch: 4,
            payload: 50,
            duration_s: 0.3,
            warmup_s: 0.1,
        })
        .unwrap();
        assert!(f.deliveries > 0);
        assert_eq!(f.written, f.received);
    }
}

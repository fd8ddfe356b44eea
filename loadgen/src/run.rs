//! One measured run: log in every session, publish open-loop on schedule,
//! count every delivery, and account for every expected one.
//!
//! **Expected deliveries.** Per post: every follower session that is
//! online when the post is scheduled and should receive it (PROTOCOL §6),
//! not counting the publisher's own resources. Replays (`<delay>`) count
//! neither way. A session the server drops mid-run counts what it missed
//! as loss, with the reason.
//!
//! **Time.** Each post carries its *scheduled* send time; latencies count
//! from it, so a stalled publisher or server cannot hide behind coordinated
//! omission. All timestamps are µs on the system clock, which every
//! process of a run shares.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::churn::ChurnStats;
use crate::graph::Graph;
use crate::scram::KeyCache;
use crate::session::{self, Counters, Live, Mech, Mechanism, Outcome, PostCmd};
use crate::sys;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Sessions (one per user).
    pub sessions: usize,
    /// Users followed by everyone (celebrities), posting at `rate`.
    pub celebrities: usize,
    /// Background follow graph: none, `uniform` or `zipf`.
    pub background: Background,
    /// Follows per user in the background graph.
    pub follows: usize,
    /// The zipf exponent.
    pub zipf_s: f64,
    /// How follows work.
    pub mechanism: Mechanism,
    /// Celebrity posts per second (open loop), shared round-robin.
    pub rate: f64,
    /// Background posts per second, from random users with followers.
    pub background_rate: f64,
    /// Instead of a rate: this many celebrity posts at one instant.
    pub burst: Option<u32>,
    /// Bytes of text in each post.
    pub payload: usize,
    /// Seconds of publishing, warm-up included.
    pub duration_s: f64,
    /// Seconds of publishing excluded from the figures.
    pub warmup_s: f64,
    /// Logins started per second.
    pub ramp: f64,
    /// The SASL mechanism.
    pub mech: Mech,
    /// What followers connect over; publishers (the celebrities) stay on
    /// TCP.
    pub transport: crate::session::Transport,
    /// Enable XEP-0198 stream management with resumption on every session.
    pub sm: bool,
    /// Follower connections dropped per second, and made again (resumed
    /// with `sm`).
    pub chaos: f64,
    /// Sessions logged out and back in per second (`--churn`).
    pub churn: f64,
    /// Loopback source addresses to spread connections over.
    pub sources: u8,
    /// Seed for the graph and the background publishers.
    pub seed: u64,
    /// Log in, stay idle, and measure the server's memory per session.
    pub idle: bool,
    /// Repetitions of the measured phase.
    pub repeat: usize,
}

/// The background follow graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Background {
    /// None: only the celebrities are followed.
    None,
    /// Each user follows k others, uniformly.
    Uniform,
    /// Each user follows k others, power-law.
    Zipf,
}

impl Plan {
    /// The follow graph; mutual for presence follows.
    pub fn graph(&self) -> Graph {
        let n = self.sessions;
        let g = Graph::celebrity(n, self.celebrities);
        let g = match self.background {
            Background::None => g,
            Background::Uniform => g.union(&Graph::uniform(n, self.follows, self.seed)),
            Background::Zipf => g.union(&Graph::zipf(n, self.follows, self.zipf_s, self.seed)),
        };
        if self.mechanism == Mechanism::Presence {
            g.symmetric()
        } else {
            g
        }
    }
}

/// Where the server is and how to log in.
#[derive(Clone)]
pub struct Target {
    /// The c2s address.
    pub addr: SocketAddr,
    /// The XMPP domain.
    pub domain: String,
    /// Account name of user `i`.
    pub user: Arc<dyn Fn(u32) -> String + Send + Sync>,
    /// Password of user `i`.
    pub password: Arc<dyn Fn(u32) -> String + Send + Sync>,
    /// Negotiate STARTTLS on every connection.
    pub tls: bool,
    /// The HTTP address serving `/xmpp-websocket`, if the target has one.
    pub ws: Option<SocketAddr>,
    /// The server's pid, for CPU and RSS (`None` when it is this process:
    /// then its threads are told apart by name).
    pub pid: Option<u32>,
    /// Federated runs (`--federated`): users from this index up (the
    /// followers) are accounts of this other server, reached over s2s.
    pub b: Option<(usize, Arc<Target>)>,
}

impl Target {
    /// The server user `i` logs in to.
    pub fn for_user(&self, i: usize) -> &Target {
        match &self.b {
            Some((from, b)) if i >= *from => b,
            _ => self,
        }
    }

    /// User `i`'s bare JID.
    pub fn jid_of(&self, i: u32) -> String {
        let t = self.for_user(i as usize);
        format!("{}@{}", (t.user)(i), t.domain)
    }
}

pub use crate::figures::{Figures, Histograms, Interval};

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("domain", &self.domain)
            .field("pid", &self.pid)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

pub use crate::logins::source;

/// RSS of the server: its process, or this one when embedded.
fn server_rss(pid: Option<u32>) -> u64 {
    sys::process_rss(pid.unwrap_or_else(std::process::id)).unwrap_or(0)
}

/// A server process's RSS before its first logins: read once per pid. A
/// repetition on the same server starts from memory its allocator kept
/// from the last one, and measured from there would show no cost per
/// session at all. (In-process servers are read each time.)
fn server_rss_baseline(pid: Option<u32>) -> u64 {
    static FIRST: std::sync::Mutex<BTreeMap<u32, u64>> = std::sync::Mutex::new(BTreeMap::new());
    let Some(p) = pid else {
        return server_rss(None);
    };
    let mut first = FIRST.lock().unwrap_or_else(|e| e.into_inner());
    *first.entry(p).or_insert_with(|| server_rss(pid))
}

/// CPU seconds of (the target's servers, loadgen): in a federated run,
/// both servers' together.
pub(crate) fn cpu_of(target: &Target) -> (f64, f64) {
    let (a, lg) = cpu(target.pid);
    let b = target
        .b
        .as_ref()
        .and_then(|(_, b)| b.pid)
        .and_then(sys::process_cpu)
        .unwrap_or(0.0);
    (a + b, lg)
}

/// CPU seconds of (server, loadgen).
pub(crate) fn cpu(pid: Option<u32>) -> (f64, f64) {
    let me = sys::process_cpu(std::process::id()).unwrap_or(0.0);
    match pid {
        Some(p) => (sys::process_cpu(p).unwrap_or(0.0), me),
        None => {
            let srv = sys::threads_cpu(&["starling-srv", "store-commit", "fanout-shard"]);
            (srv, me - srv)
        }
    }
}

/// Live progress lines (only on a TTY).
pub(crate) struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(quiet: bool) -> Self {
        if quiet || !sys::is_tty() {
            return Self(None);
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(200));
        Self(Some(pb))
    }
    pub(crate) fn set(&self, msg: String) {
        if let Some(pb) = &self.0 {
            pb.set_message(msg);
        }
    }
    fn done(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

/// The rendezvous of a [`Coord`]: this part's up-set in, every part's
/// up-set and the publishing start (µs since the epoch) out.
pub type Meet = Box<dyn FnOnce(Vec<bool>) -> Result<(Vec<bool>, u64)> + Send>;

/// The open-loop publishing schedule: (seconds after publishing starts,
/// publisher), in time order. Celebrities post round-robin at `rate`;
/// background posts come at `background_rate` from `others`, drawn from
/// the seed; `--burst` puts its posts at the end of the warm-up. A pure
/// function of the plan, so every worker process draws the same one.
pub fn schedule(plan: &Plan, celebs: &[u32], others: &[u32]) -> Vec<(f64, u32)> {
    let mut out = Vec::new();
    if plan.idle {
        return out;
    }
    if let Some(b) = plan.burst {
        if !celebs.is_empty() {
            out.extend((0..b as usize).map(|k| (plan.warmup_s, celebs[k % celebs.len()])));
        }
        return out;
    }
    let mut rng = StdRng::seed_from_u64(plan.seed ^ 0x5eed);
    let c_step = (plan.rate > 0.0 && !celebs.is_empty()).then(|| 1.0 / plan.rate);
    let b_step =
        (plan.background_rate > 0.0 && !others.is_empty()).then(|| 1.0 / plan.background_rate);
    let (mut next_c, mut next_b, mut k) = (0.0f64, 0.0f64, 0usize);
    loop {
        let (t, celeb) = match (c_step, b_step) {
            (Some(_), Some(_)) if next_c <= next_b => (next_c, true),
            (Some(_), None) => (next_c, true),
            (_, Some(_)) => (next_b, false),
            (None, None) => break,
        };
        if t >= plan.duration_s {
            break;
        }
        let publisher = if celeb {
            next_c += c_step.unwrap_or(f64::INFINITY);
            k += 1;
            celebs[k % celebs.len()]
        } else {
            next_b += b_step.unwrap_or(f64::INFINITY);
            others[rng.gen_range(0..others.len())]
        };
        out.push((t, publisher));
    }
    out
}

/// Which sessions a process holds, and how it meets the run's other
/// processes: `meet` gets this part's sessions that are up and returns
/// every part's (so all parts draw the same publishers) and the instant
/// publishing starts, µs on the shared system clock.
pub struct Coord {
    /// The users whose sessions this process holds.
    pub held: std::ops::Range<usize>,
    /// The rendezvous.
    pub meet: Meet,
}

impl std::fmt::Debug for Coord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coord")
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

use crate::part::pairs;
pub use crate::part::{merge, Part};

/// Runs the plan against the target in this one process.
pub async fn run(
    plan: &Plan,
    graph: &Graph,
    target: &Target,
    keys: &Arc<KeyCache>,
    quiet: bool,
) -> Result<(Figures, Histograms)> {
    let part = run_part(plan, graph, target, keys, quiet, None).await?;
    Ok(merge(plan, &[part]))
}

/// Runs this process's part of the plan: all of it, or with `coord` the
/// sessions it holds.
pub async fn run_part(
    plan: &Plan,
    graph: &Graph,
    target: &Target,
    keys: &Arc<KeyCache>,
    quiet: bool,
    coord: Option<Coord>,
) -> Result<Part> {
    let n = plan.sessions;
    if graph.len() != n {
        bail!("the graph has {} users for {n} sessions", graph.len());
    }
    let held = coord.as_ref().map_or(0..n, |c| c.held.clone());
    let progress = Progress::new(quiet);
    let rss_before = server_rss_baseline(target.pid);
    // The cache may be shared with a setup or an earlier repetition.
    let cache0 = keys.stats();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();

    // 1. Logins, paced by the ramp, a bounded number in flight.
    let crate::logins::Phase {
        conns,
        connect,
        up,
        login_secs,
    } = crate::logins::log_in_all(plan, target, keys, held.clone(), &progress, &mut errors).await?;
    if up == 0 {
        progress.done();
        bail!(
            "no session could log in to {} ({})",
            target.addr,
            errors.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }

    // 2. Meet the other parts (if any): who is up everywhere, and when
    // publishing starts. Alone, it starts once the sessions have settled
    // (presence with caps sent, the server's one disco#info answered).
    let local_up: Vec<bool> = conns.iter().map(Option::is_some).collect();
    let settle = Duration::from_millis(1000 + (n as u64 / 5));
    let (online_all, start_us) = match coord {
        Some(c) => {
            let meet = c.meet;
            tokio::task::spawn_blocking(move || meet(local_up)).await??
        }
        None => (local_up, session::now_us() + settle.as_micros() as u64),
    };
    if online_all.len() != n {
        bail!("the parts disagree on the session count");
    }

    // 3. Live sessions.
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let payload: Arc<str> = "x".repeat(plan.payload).into();
    let run_start_us = session::now_us();
    let measure_from_us = start_us + (plan.warmup_s * 1e6) as u64;
    let mut senders: Vec<Option<mpsc::UnboundedSender<PostCmd>>> = (0..n).map(|_| None).collect();
    let mut lives = tokio::task::JoinSet::new();
    let mut kills: Vec<(u32, Arc<tokio::sync::Notify>)> = Vec::new();
    let churn = (plan.churn > 0.0).then(|| Arc::new(ChurnStats::new(measure_from_us)));
    for (i, c) in conns.into_iter().enumerate() {
        let Some((c, sm_id, handled)) = c else {
            continue;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        senders[i] = Some(tx);
        // Followers may be dropped (`--chaos`); with `--sm` everyone resumes;
        // `--churn` logs everyone out and in again.
        let follower = i >= plan.celebrities;
        let dropped = (plan.chaos > 0.0 && follower) || churn.is_some();
        let chaos = (sm_id.is_some() || dropped).then(|| {
            let kill = Arc::new(tokio::sync::Notify::new());
            if dropped {
                kills.push((i as u32, kill.clone()));
            }
            crate::sm::Chaos {
                kill,
                login: crate::logins::login_of(plan, target, i),
                keys: keys.clone(),
                sm_id,
                churn: churn.clone(),
            }
        });
        let followers: Arc<[String]> = if plan.mechanism == Mechanism::Direct {
            graph.followers[i]
                .iter()
                .map(|&f| target.jid_of(f))
                .collect()
        } else {
            Arc::from(Vec::new())
        };
        let live = Live {
            index: i as u32,
            mechanism: plan.mechanism,
            payload: payload.clone(),
            followers,
            counters: counters.clone(),
            measure_from_us,
            announced: Some(handled),
        };
        lives.spawn(session::live(
            c,
            live,
            rx,
            stop_rx.clone(),
            run_start_us,
            chaos,
        ));
    }
    progress.set(format!("{up} sessions up; settling"));
    // The schedule's origin: the same µs in every part, so every part
    // stamps and classifies each post alike.
    let base_us = start_us;
    let publish_start =
        Instant::now() + Duration::from_micros(start_us.saturating_sub(session::now_us()));
    tokio::time::sleep_until(publish_start.into()).await;
    let rss_idle = server_rss(target.pid);
    let mut rss_max = rss_idle.max(rss_before);

    // 4. Publishing, open loop; `--chaos` drops connections meanwhile, or
    // `--churn` logs sessions out and in.
    let share = held.len() as f64 / n as f64;
    if churn.is_some() {
        let sessions = kills.into_iter().map(|(_, k)| k).collect();
        tokio::spawn(crate::churn::drive(
            plan.churn * share,
            sessions,
            0,
            stop_rx.clone(),
        ));
    } else {
        tokio::spawn(crate::sm::chaos(
            plan.chaos * share,
            kills,
            plan.seed ^ held.start as u64,
            stop_rx.clone(),
        ));
    }
    // The measured window opens at the end of the warm-up: CPU is read
    // then, and the server's write syscalls counted from just before.
    let measure_at = publish_start + Duration::from_secs_f64(plan.warmup_s);
    let counting = {
        let pid = target.pid.filter(|_| !plan.idle);
        let at = measure_at
            .checked_sub(Duration::from_millis(50))
            .unwrap_or(measure_at);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            pid.and_then(crate::syscalls::WriteCount::start)
        })
    };
    let mut window0: Option<(f64, f64)> = None;
    let mut expected: Vec<(u32, bool)> = Vec::new(); // (expected here, measured)
    let mut sent = 0u64;
    let online = |u: u32| online_all[u as usize];
    let here = |u: u32| senders[u as usize].is_some();
    let celebs: Vec<u32> = (0..plan.celebrities.min(n) as u32).collect();
    // Followers on the streaming API read only: they publish nothing, so
    // only the celebrities post.
    let sse = plan.transport == crate::session::Transport::Sse;
    let others: Vec<u32> = (plan.celebrities.min(n) as u32..n as u32)
        .filter(|&u| !sse && !graph.followers[u as usize].is_empty() && online(u))
        .collect();
    let mut post = |publisher: u32, sched: Instant, expected: &mut Vec<(u32, bool)>| {
        let index = expected.len() as u32;
        let sched_us = base_us + sched.saturating_duration_since(publish_start).as_micros() as u64;
        // Expected here: this part's followers that are up. A post whose
        // publisher is down anywhere is expected nowhere.
        let exp = if online(publisher) {
            graph.followers[publisher as usize]
                .iter()
                .filter(|&&f| here(f) && f != publisher)
                .count() as u32
        } else {
            0
        };
        expected.push((exp, sched_us >= measure_from_us));
        if let Some(tx) = &senders[publisher as usize] {
            let _ = tx.send(PostCmd { index, sched_us });
            sent += 1;
        }
    };
    for (t, publisher) in schedule(plan, &celebs, &others) {
        let sched = publish_start + Duration::from_secs_f64(t);
        tokio::time::sleep_until(sched.into()).await;
        if window0.is_none() && t >= plan.warmup_s {
            window0 = Some(cpu_of(target));
        }
        post(publisher, sched, &mut expected);
        if expected.len() % 50 == 0 {
            rss_max = rss_max.max(server_rss(target.pid));
            progress.set(format!(
                "{:.0}s: {} posts, {} acked, {} deliveries",
                t,
                expected.len(),
                counters.acked.load(Ordering::Relaxed),
                counters.received.load(Ordering::Relaxed)
            ));
        }
    }
    let churned = match &churn {
        Some(st) => Some(crate::churn::window(plan, target, st, publish_start, &mut window0).await),
        None => None,
    };
    // 5. Drain: until everything expected here arrived and this part's
    // publishes are acknowledged, or a bounded wait.
    let all_expected: u64 = expected.iter().map(|&(e, _)| u64::from(e)).sum();
    // Bounded, but long enough for a slow server's burst: 10 s, plus 1 s
    // per 1,000 sessions, plus 1 s per 20,000 deliveries expected.
    let drain_deadline =
        Instant::now() + Duration::from_secs(10 + n as u64 / 1000 + all_expected / 20_000);
    while (counters.received.load(Ordering::Relaxed) < all_expected
        || counters.acked.load(Ordering::Relaxed) < sent)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish_secs = publish_start.elapsed().as_secs_f64();
    let (cpu_srv1, cpu_lg1) = cpu_of(target);
    let (cpu_srv0, cpu_lg0) = window0.unwrap_or((cpu_srv1, cpu_lg1));
    let write_syscalls = match counting.await {
        Ok(Some(c)) => tokio::task::spawn_blocking(move || c.stop()).await?,
        _ => None,
    };
    rss_max = rss_max.max(server_rss(target.pid));
    let _ = stop_tx.send(true);
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(up);
    while let Some(o) = lives.join_next().await {
        outcomes.push(o?);
    }
    progress.done();

    // 6. Account this part.
    let measure_from_ms = measure_from_us.saturating_sub(run_start_us) / 1000;
    let t = crate::part::tally(&outcomes, expected.len(), measure_from_ms, &mut errors);
    Ok(Part {
        up,
        login_secs,
        connect: pairs(&connect),
        ack: pairs(&t.ack),
        delivery: pairs(&t.delivery),
        per_sec: t.per_sec.iter().map(pairs).collect(),
        posts: expected
            .iter()
            .zip(&t.per_post)
            .map(|(&(exp, measured), &(got, max))| (exp, got, max, measured))
            .collect(),
        errors,
        dropped_sessions: t.dropped_sessions,
        replays: t.replays,
        duplicates: t.duplicates,
        first_publish_us: t.first_publish_us,
        last_delivery_us: t.last_delivery_us,
        churn: churned.unwrap_or_default(),
        reconnects: counters
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        server_write_syscalls: write_syscalls,
        server_cpu_s: (cpu_srv1 - cpu_srv0).max(0.0),
        loadgen_cpu_s: (cpu_lg1 - cpu_lg0).max(0.0),
        publish_secs,
        rss_before,
        rss_idle,
        rss_max,
        scram_cache: {
            let (h, m) = keys.stats();
            (h - cache0.0, m - cache0.1)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(args: &[&str]) -> Plan {
        let mut a = vec!["loadgen"];
        a.extend_from_slice(args);
        crate::cli::Cli::parse_from(a).plan()
    }

    #[test]
    fn the_schedule_keeps_its_rates_in_order_and_is_the_same_every_time() {
        let p = plan(&[
            "--rate",
            "10",
            "--background-rate",
            "20",
            "--duration",
            "30",
        ]);
        let others: Vec<u32> = (2..100).collect();
        let s = schedule(&p, &[0, 1], &others);
        assert!(s.windows(2).all(|w| w[0].0 <= w[1].0), "in time order");
        assert!(s.iter().all(|&(t, _)| (0.0..30.0).contains(&t)));
        let celeb: Vec<&(f64, u32)> = s.iter().filter(|(_, u)| *u < 2).collect();
        assert_eq!(celeb.len(), 300, "10/s for 30 s");
        for w in celeb.windows(2) {
            assert!((w[1].0 - w[0].0 - 0.1).abs() < 1e-9, "evenly spaced");
            assert_ne!(w[0].1, w[1].1, "round-robin over the celebrities");
        }
        assert_eq!(s.len() - celeb.len(), 600, "20/s for 30 s");
        assert_eq!(s, schedule(&p, &[0, 1], &others), "deterministic");
        let other_seed = plan(&["--seed", "2", "--background-rate", "20"]);
        assert_ne!(
            schedule(&other_seed, &[0, 1], &others),
            schedule(&p, &[0, 1], &others)
        );
    }

    #[test]
    fn bursts_idle_runs_and_missing_publishers() {
        let burst = plan(&["--burst", "5", "--warmup", "3"]);
        let s = schedule(&burst, &[7], &[1, 2]);
        assert_eq!(s, vec![(3.0, 7); 5]);
        assert!(schedule(&plan(&["--idle"]), &[0], &[1]).is_empty());
        // No background publishers: only the celebrity's posts.
        let p = plan(&["--rate", "2", "--duration", "5"]);
        assert_eq!(schedule(&p, &[0], &[]).len(), 10);
    }
}

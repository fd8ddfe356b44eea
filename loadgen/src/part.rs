//! One process's part of a run, and merging parts into the run's figures
//! (a run split over worker processes has one part per worker).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::run::{Figures, Histograms, Interval, Plan};
use crate::session::Outcome;
use crate::stats::{self, Summary};

/// What one process measured: everything needed to merge parts into one
/// run's figures.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Part {
    /// Sessions this part logged in.
    pub up: usize,
    /// Seconds its login phase took.
    pub login_secs: f64,
    /// Histograms as (value, count) pairs, µs.
    pub connect: Vec<(u64, u64)>,
    /// See `connect`.
    pub ack: Vec<(u64, u64)>,
    /// See `connect`.
    pub delivery: Vec<(u64, u64)>,
    /// Per second of the measured phase, deliveries' latencies.
    pub per_sec: Vec<Vec<(u64, u64)>>,
    /// Per post: (expected here, received here, largest latency µs,
    /// measured).
    pub posts: Vec<(u32, u32, u32, bool)>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Sessions ended early, by reason.
    pub dropped_sessions: BTreeMap<String, u64>,
    /// Replays seen.
    pub replays: u64,
    /// Duplicates seen.
    pub duplicates: u64,
    /// When this part first wrote a measured publish, µs since the epoch
    /// (0: it published none).
    #[serde(default)]
    pub first_publish_us: u64,
    /// When this part's last delivery of a measured post arrived, µs.
    #[serde(default)]
    pub last_delivery_us: u64,
    /// Deliberate drops made good (`--chaos`, `--churn`).
    pub reconnects: u64,
    /// What `--churn` measured.
    #[serde(default)]
    pub churn: Churned,
    /// Server CPU seconds over the measured phase (when its pid is known,
    /// or it runs in this process).
    pub server_cpu_s: f64,
    /// The server's write-family syscalls over the measured window.
    #[serde(default)]
    pub server_write_syscalls: Option<u64>,
    /// This process's own CPU seconds over the measured phase.
    pub loadgen_cpu_s: f64,
    /// Seconds from publishing's start to the end of the drain.
    pub publish_secs: f64,
    /// Server RSS samples, bytes.
    pub rss_before: u64,
    /// See `rss_before`.
    pub rss_idle: u64,
    /// See `rss_before`.
    pub rss_max: u64,
    /// SCRAM key cache (hits, misses) during this run.
    pub scram_cache: (u64, u64),
}

/// The logins `--churn` made inside the measured window.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Churned {
    /// Logins that ended inside the window.
    pub logins: u64,
    /// Logins that failed (their sessions ended).
    pub failures: u64,
    /// The window's length, seconds.
    pub secs: f64,
    /// Logout to presence sent, µs, as (value, count) pairs.
    pub latency: Vec<(u64, u64)>,
}

/// What one part's session outcomes add up to.
pub(crate) struct Tally {
    pub(crate) ack: Histogram<u64>,
    pub(crate) delivery: Histogram<u64>,
    pub(crate) per_sec: Vec<Histogram<u64>>,
    /// Per post: (received, largest latency µs).
    pub(crate) per_post: Vec<(u32, u32)>,
    pub(crate) duplicates: u64,
    pub(crate) dropped_sessions: BTreeMap<String, u64>,
    pub(crate) replays: u64,
    /// 0 when no measured publish was sent.
    pub(crate) first_publish_us: u64,
    pub(crate) last_delivery_us: u64,
}

/// Adds up the sessions' outcomes of a part that scheduled `posts` posts;
/// their errors go into `errors`. A delivery seen twice by one session
/// counts once, as a duplicate.
pub(crate) fn tally(
    outcomes: &[Outcome],
    posts: usize,
    measure_from_ms: u64,
    errors: &mut BTreeMap<String, u64>,
) -> Tally {
    let mut t = Tally {
        ack: stats::histogram(),
        delivery: stats::histogram(),
        per_sec: Vec::new(),
        per_post: vec![(0, 0); posts],
        duplicates: 0,
        dropped_sessions: BTreeMap::new(),
        replays: 0,
        first_publish_us: u64::MAX,
        last_delivery_us: 0,
    };
    for o in outcomes {
        t.replays += o.replays;
        if o.first_publish_us > 0 {
            t.first_publish_us = t.first_publish_us.min(o.first_publish_us);
        }
        t.last_delivery_us = t.last_delivery_us.max(o.last_delivery_us);
        for e in &o.errors {
            *errors.entry(e.clone()).or_default() += 1;
        }
        if let Some((why, _)) = &o.ended {
            *t.dropped_sessions.entry(why.clone()).or_default() += 1;
        }
        for &a in &o.acks {
            stats::record(&mut t.ack, u64::from(a));
        }
        let mut seen = std::collections::HashSet::new();
        for d in &o.deliveries {
            if !seen.insert(d.index) {
                t.duplicates += 1;
                continue;
            }
            stats::record(&mut t.delivery, u64::from(d.latency_us));
            if let Some(p) = t.per_post.get_mut(d.index as usize) {
                p.0 += 1;
                p.1 = p.1.max(d.latency_us);
            }
            if u64::from(d.at_ms) >= measure_from_ms {
                let sec = ((u64::from(d.at_ms) - measure_from_ms) / 1000) as usize;
                if t.per_sec.len() <= sec {
                    t.per_sec.resize_with(sec + 1, stats::histogram);
                }
                stats::record(&mut t.per_sec[sec], u64::from(d.latency_us));
            }
        }
    }
    if t.first_publish_us == u64::MAX {
        t.first_publish_us = 0;
    }
    t
}

pub(crate) fn pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

fn unpairs(into: &mut Histogram<u64>, p: &[(u64, u64)]) {
    for &(v, c) in p {
        let _ = into.record_n(v, c);
    }
}

/// One run's figures from its parts (one part when a single process ran
/// it). Parts hold disjoint sessions, so counts add; a post is complete
/// when every part has all it expected; the server's CPU is the first
/// part's sample (they overlap), loadgen's is every part's own.
pub fn merge(plan: &Plan, parts: &[Part]) -> (Figures, Histograms) {
    let mut h = Histograms {
        connect: stats::histogram(),
        ack: stats::histogram(),
        delivery: stats::histogram(),
        completion: stats::histogram(),
        churn: stats::histogram(),
    };
    let mut per_sec: Vec<Histogram<u64>> = Vec::new();
    let mut errors = BTreeMap::new();
    let mut dropped_sessions = BTreeMap::new();
    let n_posts = parts.iter().map(|p| p.posts.len()).max().unwrap_or(0);
    let mut posts: Vec<(u64, u64, u32, bool)> = vec![(0, 0, 0, false); n_posts];
    for p in parts {
        unpairs(&mut h.connect, &p.connect);
        unpairs(&mut h.churn, &p.churn.latency);
        unpairs(&mut h.ack, &p.ack);
        unpairs(&mut h.delivery, &p.delivery);
        if per_sec.len() < p.per_sec.len() {
            per_sec.resize_with(p.per_sec.len(), stats::histogram);
        }
        for (s, pairs) in per_sec.iter_mut().zip(&p.per_sec) {
            unpairs(s, pairs);
        }
        for (k, v) in &p.errors {
            *errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &p.dropped_sessions {
            *dropped_sessions.entry(k.clone()).or_default() += v;
        }
        for (acc, &(exp, got, max, measured)) in posts.iter_mut().zip(&p.posts) {
            acc.0 += u64::from(exp);
            acc.1 += u64::from(got.min(exp));
            acc.2 = acc.2.max(max);
            acc.3 |= measured;
        }
    }
    let (mut n, mut exp_sum, mut rec_sum) = (0u64, 0u64, 0u64);
    for &(exp, got, max, measured) in &posts {
        if !measured {
            continue;
        }
        n += 1;
        exp_sum += exp;
        rec_sum += got;
        if exp > 0 && got >= exp {
            stats::record(&mut h.completion, u64::from(max));
        }
    }
    let first = &parts[0];
    let up: usize = parts.iter().map(|p| p.up).sum();
    let login_secs = parts.iter().map(|p| p.login_secs).fold(1e-6, f64::max);
    let publish_secs = parts.iter().map(|p| p.publish_secs).fold(0.0, f64::max);
    let measured_secs = (publish_secs - plan.warmup_s).max(1e-6);
    // A burst's window: from the first publish any part sent to the last
    // delivery any part received.
    let first_publish = parts
        .iter()
        .map(|p| p.first_publish_us)
        .filter(|&t| t > 0)
        .min()
        .unwrap_or(0);
    let last_delivery = parts.iter().map(|p| p.last_delivery_us).max().unwrap_or(0);
    let burst_secs = if first_publish > 0 && last_delivery > first_publish {
        (last_delivery - first_publish) as f64 / 1e6
    } else {
        0.0
    };
    let throughput_per_s = match plan.burst {
        Some(_) if burst_secs > 0.0 => rec_sum as f64 / burst_secs,
        Some(_) => 0.0,
        None => rec_sum as f64 / measured_secs,
    };
    let server_cpu = first.server_cpu_s;
    let loadgen_cpu: f64 = parts.iter().map(|p| p.loadgen_cpu_s).sum();
    let per = |cpu: f64| {
        if rec_sum == 0 {
            0.0
        } else {
            cpu * 1e6 / rec_sum as f64
        }
    };
    let rss_before = parts.iter().map(|p| p.rss_before).min().unwrap_or(0);
    // Churn: the parts' windows are the same seconds, so logins add.
    let churn_logins: u64 = parts.iter().map(|p| p.churn.logins).sum();
    let churn_secs = parts.iter().map(|p| p.churn.secs).fold(0.0, f64::max);
    let churned = plan.churn > 0.0 && churn_secs > 0.0;
    let per_login =
        |cpu: f64| (churned && churn_logins > 0).then(|| cpu * 1e6 / churn_logins as f64);
    let rss_idle = parts.iter().map(|p| p.rss_idle).max().unwrap_or(0);
    let figures = Figures {
        sessions_up: up,
        logins_per_s: up as f64 / login_secs,
        connect: Summary::of(&h.connect),
        ack: Summary::of(&h.ack),
        delivery: Summary::of(&h.delivery),
        fanout_completion: Summary::of(&h.completion),
        posts: n,
        expected: exp_sum,
        received: rec_sum,
        lost: exp_sum - rec_sum,
        duplicates: parts.iter().map(|p| p.duplicates).sum(),
        reconnects: parts.iter().map(|p| p.reconnects).sum(),
        mean_deliveries_per_s: rec_sum as f64 / measured_secs,
        throughput_per_s,
        burst_secs,
        deliveries_per_s: per_sec.iter().map(|h| h.len()).collect(),
        intervals: per_sec
            .iter()
            .enumerate()
            .map(|(second, h)| {
                let s = Summary::of(h);
                Interval {
                    second,
                    deliveries: s.count,
                    p50_ms: s.p50_ms,
                    p99_ms: s.p99_ms,
                    max_ms: s.max_ms,
                }
            })
            .collect(),
        errors,
        dropped_sessions,
        replays: parts.iter().map(|p| p.replays).sum(),
        server_cpu_s: server_cpu,
        loadgen_cpu_s: loadgen_cpu,
        server_cpu_us_per_delivery: per(server_cpu),
        server_write_syscalls: first.server_write_syscalls,
        write_syscalls_per_delivery: first
            .server_write_syscalls
            .filter(|_| rec_sum > 0)
            .map(|w| w as f64 / rec_sum as f64),
        loadgen_cpu_us_per_delivery: per(loadgen_cpu),
        server_rss_max: parts.iter().map(|p| p.rss_max).max().unwrap_or(0),
        server_rss_before: rss_before,
        server_rss_idle: rss_idle,
        rss_per_idle_session: rss_idle.saturating_sub(rss_before) as f64 / up.max(1) as f64,
        scram_cache: parts.iter().fold((0, 0), |(a, b), p| {
            (a + p.scram_cache.0, b + p.scram_cache.1)
        }),
        churn_logins_per_s: churned.then(|| churn_logins as f64 / churn_secs),
        churn_login: churned.then(|| Summary::of(&h.churn)),
        churn_failures: parts.iter().map(|p| p.churn.failures).sum(),
        server_cpu_us_per_login: per_login(server_cpu),
        loadgen_cpu_us_per_login: per_login(loadgen_cpu),
    };
    (figures, h)
}

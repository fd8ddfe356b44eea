//! A run's measured figures, the ones compared across repetitions and
//! targets, and their (median, min, max) spread. Shared by single runs (`report`) and
//! benches (`bench`).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::stats::Summary;

/// Measured figures.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Sessions that logged in.
    pub sessions_up: usize,
    /// Logins per second over the login phase.
    pub logins_per_s: f64,
    /// TCP connect to bound session, from each login's scheduled start.
    pub connect: Summary,
    /// Publish → ack.
    pub ack: Summary,
    /// Publish → each delivery.
    pub delivery: Summary,
    /// Publish → the last expected follower has it.
    pub fanout_completion: Summary,
    /// Measured posts published.
    pub posts: u64,
    /// Expected deliveries of measured posts.
    pub expected: u64,
    /// Received deliveries of measured posts (duplicates not counted).
    pub received: u64,
    /// Expected minus received.
    pub lost: u64,
    /// Deliveries received more than once.
    pub duplicates: u64,
    /// Connections dropped on purpose (`--chaos`) and made again.
    pub reconnects: u64,
    /// Deliveries per second of the measured phase, second by second.
    pub deliveries_per_s: Vec<u64>,
    /// Mean deliveries per second over the measured phase (for a burst,
    /// the whole window, drain included: not a throughput).
    pub mean_deliveries_per_s: f64,
    /// Throughput: for a burst, deliveries ÷ (last delivery − first
    /// publish sent); at a rate, the mean over the measured phase.
    pub throughput_per_s: f64,
    /// Seconds from the first measured publish sent to the last delivery
    /// of a measured post.
    pub burst_secs: f64,
    /// Second by second of the measured phase: deliveries that arrived in
    /// it and their latency percentiles (from one histogram per second).
    pub intervals: Vec<Interval>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Sessions that ended early, by reason.
    pub dropped_sessions: BTreeMap<String, u64>,
    /// Replays (`<delay>`) seen, not counted.
    pub replays: u64,
    /// Server CPU seconds during the measured phase.
    pub server_cpu_s: f64,
    /// loadgen CPU seconds during the measured phase.
    pub loadgen_cpu_s: f64,
    /// Server CPU µs per delivery received.
    pub server_cpu_us_per_delivery: f64,
    /// The server's write-family syscalls over the measured window (when
    /// its pid is known and perf can count them).
    pub server_write_syscalls: Option<u64>,
    /// Those per delivery received.
    pub write_syscalls_per_delivery: Option<f64>,
    /// loadgen CPU µs per delivery received.
    pub loadgen_cpu_us_per_delivery: f64,
    /// Largest server RSS seen, bytes (the whole process when embedded).
    pub server_rss_max: u64,
    /// Server RSS before its first logins, bytes (a later repetition on
    /// the same server counts from the first one's).
    pub server_rss_before: u64,
    /// Server RSS with every session logged in and idle, bytes.
    pub server_rss_idle: u64,
    /// (idle − before) / sessions, bytes: memory per idle session.
    pub rss_per_idle_session: f64,
    /// SCRAM key cache (hits, misses).
    pub scram_cache: (u64, u64),
    /// With `--churn`: logins per second sustained over the measured
    /// window (sessions logging out and in again).
    pub churn_logins_per_s: Option<f64>,
    /// With `--churn`: each of those logins, from the logout to the
    /// presence sent on the new connection.
    pub churn_login: Option<Summary>,
    /// With `--churn`: logins that failed.
    pub churn_failures: u64,
    /// With `--churn`: server CPU µs per login in the window.
    pub server_cpu_us_per_login: Option<f64>,
    /// With `--churn`: loadgen CPU µs per login in the window.
    pub loadgen_cpu_us_per_login: Option<f64>,
}

/// One second of the measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// Seconds since the measured phase began.
    pub second: usize,
    /// Deliveries that arrived in this second.
    pub deliveries: u64,
    /// Their publish → delivery median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// The histograms behind the figures, for `.hgrm` files.
#[derive(Debug)]
pub struct Histograms {
    /// See [`Figures::connect`].
    pub connect: Histogram<u64>,
    /// See [`Figures::ack`].
    pub ack: Histogram<u64>,
    /// See [`Figures::delivery`].
    pub delivery: Histogram<u64>,
    /// See [`Figures::fanout_completion`].
    pub completion: Histogram<u64>,
    /// See [`Figures::churn_login`].
    pub churn: Histogram<u64>,
}

/// A figure's name and how to read it from a run.
pub type Figure = (&'static str, fn(&Figures) -> f64);

/// Median, min and max over repetitions.
pub type Spread = (f64, f64, f64);

/// The figures compared.
pub const FIGURES: &[Figure] = &[
    ("deliveries/s", |f| f.throughput_per_s),
    ("publish->delivery p50 ms", |f| f.delivery.p50_ms),
    ("publish->delivery p99 ms", |f| f.delivery.p99_ms),
    ("fan-out completion p99 ms", |f| f.fanout_completion.p99_ms),
    ("publish->ack p50 ms", |f| f.ack.p50_ms),
    ("server CPU µs/delivery", |f| f.server_cpu_us_per_delivery),
    ("loadgen CPU µs/delivery", |f| {
        f.loadgen_cpu_us_per_delivery
    }),
    ("write syscalls/delivery", |f| {
        f.write_syscalls_per_delivery.unwrap_or(f64::NAN)
    }),
    ("logins/s", |f| f.logins_per_s),
    ("churn logins/s", |f| {
        f.churn_logins_per_s.unwrap_or(f64::NAN)
    }),
    ("server CPU µs/login", |f| {
        f.server_cpu_us_per_login.unwrap_or(f64::NAN)
    }),
    ("loadgen CPU µs/login", |f| {
        f.loadgen_cpu_us_per_login.unwrap_or(f64::NAN)
    }),
    ("server RSS max MiB", |f| {
        f.server_rss_max as f64 / 1_048_576.0
    }),
    ("idle RSS KiB/session", |f| f.rss_per_idle_session / 1024.0),
    ("lost", |f| f.lost as f64),
];

/// The figures that mean nothing in an idle run (nothing is published).
pub const DELIVERY_FIGURES: usize = 8;

/// (median, min, max) of one figure over repetitions.
pub fn spread(runs: &[Figures], get: fn(&Figures) -> f64) -> Spread {
    // A figure a run could not measure (NaN) is left out; none measured
    // gives NaN throughout, not an empty range.
    let mut v: Vec<f64> = runs.iter().map(get).filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    (median(&mut v), lo, hi)
}

/// The median of `v` (sorted in place); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn the_first_figures_are_the_delivery_ones() {
        // An idle bench leaves these out of its table.
        assert_eq!(FIGURES[DELIVERY_FIGURES - 1].0, "write syscalls/delivery");
        assert_eq!(FIGURES[DELIVERY_FIGURES].0, "logins/s");
    }
}

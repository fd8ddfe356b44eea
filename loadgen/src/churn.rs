//! `--churn N`: sessions log out and back in, N per second over all parts,
//! for the run's duration, so that a login rate is measured over a
//! sustained window and not over one login phase (19,000 sessions log in
//! within 2 s).
//!
//! The sessions are taken in turn, so each churns once per
//! `sessions / N` seconds. A churned session closes its stream
//! (`</stream:stream>`), drops the connection, then logs in anew, binds
//! and sends its presence; what that took is recorded when it ends inside
//! the measured window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::{watch, Notify};

use crate::part::{pairs, Churned};
use crate::run::{Plan, Target};
use crate::stats;
use std::time::Instant;

/// The logins churn made, shared by a part's sessions.
#[derive(Debug)]
pub struct ChurnStats {
    /// The measured window opens here, µs since the epoch.
    from_us: u64,
    logins: AtomicU64,
    failures: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl ChurnStats {
    /// Counts the logins that end at or after `from_us`.
    pub fn new(from_us: u64) -> Self {
        Self {
            from_us,
            logins: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency: Mutex::new(stats::histogram()),
        }
    }

    /// A login that took `took` (logout, connect, SASL, bind, presence)
    /// ended at `done_us`.
    pub fn logged_in(&self, took: Duration, done_us: u64) {
        if done_us < self.from_us {
            return;
        }
        self.logins.fetch_add(1, Ordering::Relaxed);
        let mut h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        stats::record(&mut h, took.as_micros() as u64);
    }

    /// A login that failed (the session ends).
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Measured logins, failures, and the latency histogram.
    pub fn take(&self) -> (u64, u64, Histogram<u64>) {
        let h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        (
            self.logins.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            h.clone(),
        )
    }
}

/// The order sessions are churned in: each in turn, from `start`, so a
/// session comes round again only after all the others.
pub fn turn(start: usize, tick: usize, len: usize) -> usize {
    (start + tick) % len.max(1)
}

/// Wakes `rate` sessions per second among `sessions`, in turn, until
/// `stop`.
pub async fn drive(
    rate: f64,
    sessions: Vec<Arc<Notify>>,
    start: usize,
    mut stop: watch::Receiver<bool>,
) {
    if rate <= 0.0 || sessions.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Behind (a slow server): catch up in bursts, so the rate asked for is
    // the rate offered.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                sessions[turn(start, n, sessions.len())].notify_one();
                n += 1;
            }
            _ = stop.changed() => return,
        }
    }
}

/// Waits out the run's duration while `--churn` logs sessions out and in,
/// reading CPU when the measured window opens (`window0`); returns the
/// logins inside the window, and its length.
pub async fn window(
    plan: &Plan,
    target: &Target,
    st: &ChurnStats,
    publish_start: Instant,
    window0: &mut Option<(f64, f64)>,
) -> Churned {
    let open = publish_start + Duration::from_secs_f64(plan.warmup_s);
    tokio::time::sleep_until(open.into()).await;
    *window0 = Some(crate::run::cpu_of(target));
    let end = publish_start + Duration::from_secs_f64(plan.duration_s);
    tokio::time::sleep_until(end.into()).await;
    // Taken now: logins ending after the window are not in it.
    let (logins, failures, h) = st.take();
    Churned {
        logins,
        failures,
        secs: (plan.duration_s - plan.warmup_s).max(1e-6),
        latency: pairs(&h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_churns_once_before_any_churns_twice() {
        let seen: Vec<usize> = (0..6).map(|t| turn(4, t, 5)).collect();
        assert_eq!(seen, [4, 0, 1, 2, 3, 4]);
        assert_eq!(turn(0, 7, 0), 0);
    }

    #[test]
    fn only_logins_inside_the_window_count() {
        let s = ChurnStats::new(1_000);
        s.logged_in(Duration::from_millis(3), 999);
        s.logged_in(Duration::from_millis(5), 1_000);
        s.logged_in(Duration::from_millis(7), 2_000);
        s.failed();
        let (n, failed, h) = s.take();
        assert_eq!((n, failed, h.len()), (2, 1, 2));
        assert!(h.max() >= 7_000);
    }
}

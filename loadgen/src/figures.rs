//! The figures compared across repetitions and targets, and their
//! (median, min, max) spread. Shared by single runs (`report`) and
//! benches (`bench`).

use crate::run::Figures;

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

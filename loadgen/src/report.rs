//! The run's record: the text report, the JSON document
//! (`results/schema.json`), the `.hgrm` files, and the command that made
//! them, written together into one directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::run::{Figures, Histograms, Plan};
use crate::stats;

/// How the run was set up, recorded with every result.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    /// The server: `starling (embedded)`, `starling (child process)`, or
    /// the address of an external one.
    pub server: String,
    /// Its version, when known.
    pub server_version: String,
    /// The fan-out strategy (Starling only).
    pub fanout: Option<String>,
    /// Whether the store fsyncs before a publish is acknowledged.
    pub fsync_before_ack: Option<bool>,
    /// SCRAM iterations of the accounts.
    pub scram_iterations: Option<u32>,
    /// TLS on the client connections.
    pub tls: bool,
    /// loadgen processes holding sessions: 1, or the worker processes a
    /// run past one process's open files was split over.
    pub loadgen_processes: usize,
    /// SCRAM keys in loadgen's cache before the logins (0: a cold cache).
    pub scram_keys_preloaded: u64,
    /// The machine.
    pub machine: String,
    /// loadgen's version.
    pub loadgen_version: String,
    /// The source revision (`git describe --always --dirty`), or
    /// `unknown` outside a checkout.
    pub git_commit: String,
}

/// One run, as saved.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The schema id.
    pub schema: &'static str,
    /// The command line that produced it.
    pub command: String,
    /// When it started (UTC).
    pub started_at: String,
    /// The set-up.
    pub setup: Setup,
    /// The plan.
    pub plan: Plan,
    /// The figures: of the only repetition, or of the one whose headline
    /// figure (logins/s for an idle run, publish→delivery p50 otherwise)
    /// is the median.
    pub figures: Figures,
    /// Every repetition's figures, in order (one entry without --repeat).
    pub repetitions: Vec<Figures>,
    /// Per compared figure: (median, min, max) over the repetitions.
    pub spread: Vec<(String, crate::figures::Spread)>,
}

/// The schema id written into every record.
pub const SCHEMA: &str = "starling-loadgen-run/1";

/// The text report.
pub fn text(r: &RunRecord) -> String {
    let f = &r.figures;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("loadgen run, {}", r.started_at));
    line(format!(
        "server: {} {}{}",
        r.setup.server,
        r.setup.server_version,
        r.setup
            .fanout
            .as_ref()
            .map(|f| format!(", fan-out {f}"))
            .unwrap_or_default()
    ));
    line(format!("machine: {}", r.setup.machine));
    if r.setup.loadgen_processes > 1 {
        line(format!(
            "loadgen: {} worker processes (sessions past one process's open files)",
            r.setup.loadgen_processes
        ));
    }
    let p = &r.plan;
    line(format!(
        "plan: {} sessions, {:?} follows, {} celebrit{} at {}/s, background {:?} (k={}) at {}/s, \
         {} B payload, {}s ({}s warm-up)",
        p.sessions,
        p.mechanism,
        p.celebrities,
        if p.celebrities == 1 { "y" } else { "ies" },
        p.rate,
        p.background,
        p.follows,
        p.background_rate,
        p.payload,
        p.duration_s,
        p.warmup_s
    ));
    line(String::new());
    line(format!(
        "sessions up: {} of {}, logins {:.0}/s ({:?}; SCRAM key cache {} hits, {} misses)",
        f.sessions_up, p.sessions, f.logins_per_s, p.mech, f.scram_cache.0, f.scram_cache.1
    ));
    line(f.connect.line("connect+auth+bind"));
    if let (Some(rate), Some(l)) = (f.churn_logins_per_s, &f.churn_login) {
        line(format!(
            "churn: {rate:.0} logins/s sustained over the measured window ({} failed); \
             CPU per login: server {:.1} µs, loadgen {:.1} µs",
            f.churn_failures,
            f.server_cpu_us_per_login.unwrap_or(f64::NAN),
            f.loadgen_cpu_us_per_login.unwrap_or(f64::NAN),
        ));
        line(l.line("logout+login+presence"));
    }
    if !p.idle {
        line(f.ack.line("publish -> ack"));
        line(f.delivery.line("publish -> delivery"));
        line(f.fanout_completion.line("fan-out completion"));
        line(format!(
            "posts {}  expected {}  received {}  lost {}  duplicates {}  reconnects {}  ({:.0} deliveries/s)",
            f.posts, f.expected, f.received, f.lost, f.duplicates, f.reconnects, f.throughput_per_s
        ));
        line(format!(
            "CPU: server {:.2}s ({:.2} µs/delivery), loadgen {:.2}s ({:.2} µs/delivery)",
            f.server_cpu_s,
            f.server_cpu_us_per_delivery,
            f.loadgen_cpu_s,
            f.loadgen_cpu_us_per_delivery
        ));
    }
    line(format!(
        "server RSS: {:.1} MiB before logins, {:.1} MiB idle with {} sessions ({:.1} KiB/session), {:.1} MiB max",
        f.server_rss_before as f64 / 1048576.0,
        f.server_rss_idle as f64 / 1048576.0,
        f.sessions_up,
        f.rss_per_idle_session / 1024.0,
        f.server_rss_max as f64 / 1048576.0
    ));
    for (k, v) in &f.errors {
        line(format!("error {k}: {v}"));
    }
    for (k, v) in &f.dropped_sessions {
        line(format!("session ended early ({k}): {v}"));
    }
    if r.repetitions.len() > 1 {
        line(format!(
            "\nover {} repetitions (figures above: the median one), median [min–max]:",
            r.repetitions.len()
        ));
        // Figures no repetition measured (churn's, in a run without it)
        // are left out.
        for (name, (m, lo, hi)) in r.spread.iter().filter(|(_, (m, _, _))| !m.is_nan()) {
            line(format!("  {name:<28} {m:>12.2}  [{lo:.2}–{hi:.2}]"));
        }
    }
    if f.lost > 0 {
        line(format!(
            "LOSS: {} expected deliveries never arrived",
            f.lost
        ));
    }
    out
}

/// The figures of several repetitions: the median one (by logins/s when
/// idle, else by publish→delivery p50) with its histograms, all of them,
/// and each compared figure's spread. `runs` is not empty.
pub fn repetitions(
    mut runs: Vec<(Figures, Histograms)>,
    idle: bool,
) -> (
    Figures,
    Histograms,
    Vec<Figures>,
    Vec<(String, crate::figures::Spread)>,
) {
    let all: Vec<Figures> = runs.iter().map(|(f, _)| f.clone()).collect();
    // An idle run publishes nothing: the delivery figures mean nothing.
    let skip = if idle {
        crate::figures::DELIVERY_FIGURES
    } else {
        0
    };
    let spread = crate::figures::FIGURES[skip..]
        .iter()
        .map(|(name, get)| ((*name).to_owned(), crate::figures::spread(&all, *get)))
        .collect();
    let headline = |f: &Figures| {
        if idle {
            f.churn_logins_per_s.unwrap_or(f.logins_per_s)
        } else {
            f.delivery.p50_ms
        }
    };
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| headline(&runs[a].0).total_cmp(&headline(&runs[b].0)));
    let (f, h) = runs.swap_remove(order[(order.len() - 1) / 2]);
    (f, h, all, spread)
}

/// Writes `run.json`, the `.hgrm` files, `report.txt` and `command.txt`
/// into `dir`.
pub fn save(dir: &Path, r: &RunRecord, h: &Histograms) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))
    };
    write("run.json", serde_json::to_string_pretty(r)? + "\n")?;
    write("report.txt", text(r))?;
    write("command.txt", format!("{}\n", r.command))?;
    write("connect.hgrm", stats::hgrm(&h.connect))?;
    if !r.plan.idle {
        write("ack.hgrm", stats::hgrm(&h.ack))?;
        write("delivery.hgrm", stats::hgrm(&h.delivery))?;
        write("completion.hgrm", stats::hgrm(&h.completion))?;
    }
    if !h.churn.is_empty() {
        write("churn-login.hgrm", stats::hgrm(&h.churn))?;
    }
    Ok(())
}

/// `arg` quoted for a POSIX shell when it needs to be.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The revision of the source tree loadgen runs from: the commit, with
/// `-dirty` when tracked files outside `results/` differ from it (results
/// being rewritten do not change what ran). Read when first asked (main
/// asks at start, so edits made while a long run is going do not count);
/// `unknown` outside a checkout or without git.
pub fn git_commit() -> String {
    static REV: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    REV.get_or_init(|| {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
        };
        let Some(rev) = git(&["rev-parse", "--short=12", "HEAD"]) else {
            return "unknown".into();
        };
        let dirty = git(&[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":(exclude)results",
        ])
        .is_some_and(|s| !s.trim().is_empty());
        format!("{}{}", rev.trim(), if dirty { "-dirty" } else { "" })
    })
    .clone()
}

/// `results/runs/` of the source tree when loadgen runs from it, else
/// `./results/runs`.
pub fn runs_dir() -> PathBuf {
    let tree = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
    if tree.is_dir() {
        tree.join("runs")
    } else {
        PathBuf::from("results/runs")
    }
}

/// A filesystem-safe UTC timestamp, `20261125T130405Z`.
pub fn stamp(iso: &str) -> String {
    iso.chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .take(15)
        .collect::<String>()
        + "Z"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_only_when_a_shell_needs_it() {
        assert_eq!(shell_quote("--sessions"), "--sessions");
        assert_eq!(shell_quote("127.0.0.1:5222"), "127.0.0.1:5222");
        assert_eq!(shell_quote("starling 4e35c6e"), "'starling 4e35c6e'");
        assert_eq!(shell_quote("lg{n}:pw"), "'lg{n}:pw'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}

//! # loadgen
//!
//! Measures microblog fan-out on any XMPP server: thousands of real client
//! sessions, a follow graph, open-loop publishing, and every delivery
//! accounted for. The default run (`cargo run --release -p loadgen`)
//! targets an embedded Starling.
//!
//! # Layout
//! - [`cli`]: the command line.
//! - [`graph`]: follow graphs (celebrity, uniform, zipf).
//! - [`session`]: one XMPP client session, from TCP to deliveries.
//! - [`scram`]: the client-side SCRAM key cache.
//! - [`run`]: the plan, the login ramp, the publish schedule, accounting.
//! - [`stats`]: HdrHistograms and their summaries.
//! - [`report`]: the text report, JSON record and `.hgrm` files.
//! - [`embedded`]: the Starling loadgen starts and seeds itself.
//! - [`sys`]: CPU and RSS from /proc.

pub mod cli;
pub mod embedded;
pub mod graph;
pub mod report;
pub mod run;
pub mod scram;
pub mod session;
pub mod stats;
pub mod sys;

use anyhow::{bail, Context, Result};

use crate::report::{RunRecord, Setup};

/// File descriptors one session costs in one process: the client socket,
/// plus the server's end when the server is embedded in-process.
const FDS_PER_SESSION_EMBEDDED: u64 = 2;
/// Descriptors kept for everything else (store, listeners, logs).
const FD_HEADROOM: u64 = 500;

/// Runs what the command line asks for; returns the record (the caller
/// prints it and sets the exit code).
pub fn main_with(cli: &cli::Cli, command: String) -> Result<RunRecord> {
    let plan = cli.plan();
    let fds = sys::open_file_limit();
    let n = plan.sessions as u64;
    if n + FD_HEADROOM > fds {
        bail!(
            "--sessions {n} needs more open files than this process may have ({fds}); \
             several loadgen worker processes are not built yet, so stay under {}",
            fds.saturating_sub(FD_HEADROOM)
        );
    }
    let spawn = cli.spawn_server || n * FDS_PER_SESSION_EMBEDDED + FD_HEADROOM > fds;
    let graph = plan.graph();
    let data = tempfile::tempdir().context("a temporary data directory")?;
    embedded::seed(data.path(), &graph, plan.mechanism)?;
    let started_at = server::xep0082_datetime(session::now_us() / 1000);
    let server = if spawn {
        let bin = match &cli.starling_bin {
            Some(b) => b.clone(),
            None => embedded::sibling_binary().context(
                "no starling binary next to loadgen: build it (cargo build --release -p starling-server) \
                 or pass --starling-bin",
            )?,
        };
        embedded::Embedded::child(&bin, data.path(), &cli.fanout)?
    } else {
        embedded::Embedded::in_process(embedded::config(data.path(), &cli.fanout))?
    };
    let target = run::Target {
        addr: server.addr(),
        domain: embedded::DOMAIN.into(),
        user: embedded::user,
        password: embedded::PASSWORD.into(),
        pid: server.pid(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen")
        .enable_all()
        .build()?;
    let (figures, hist) = rt.block_on(run::run(&plan, &graph, &target, cli.quiet))?;
    drop(rt);
    server.stop();
    let record = RunRecord {
        schema: report::SCHEMA,
        command,
        started_at,
        setup: Setup {
            server: if spawn {
                "starling (child process)".into()
            } else {
                "starling (embedded)".into()
            },
            server_version: env!("CARGO_PKG_VERSION").into(),
            fanout: Some(cli.fanout.clone()),
            fsync_before_ack: Some(true),
            scram_iterations: Some(embedded::ITERATIONS),
            tls: false,
            machine: sys::machine(),
            loadgen_version: env!("CARGO_PKG_VERSION").into(),
        },
        plan,
        figures,
    };
    let label = format!(
        "{}-starling-{}",
        report::stamp(&record.started_at),
        cli.fanout
    );
    let runs = cli.runs_dir.clone().unwrap_or_else(report::runs_dir);
    report::save(&runs.join(label), &record, &hist)?;
    if let Some(dir) = &cli.save {
        report::save(dir, &record, &hist)?;
    }
    if let Some(p) = &cli.json {
        std::fs::write(p, serde_json::to_string_pretty(&record)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(record)
}

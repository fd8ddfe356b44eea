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
//! - [`run`]: the plan, the publish schedule, accounting.
//! - [`logins`]: the login phase, paced by the ramp.
//! - [`part`]: one process's measurements, merged into a run's figures.
//! - [`stats`]: HdrHistograms and their summaries.
//! - [`report`]: the text report, JSON record and `.hgrm` files.
//! - [`figures`]: the figures compared, and their spread over repetitions.
//! - [`embedded`]: the Starling loadgen starts and seeds itself.
//! - [`federated`]: publishers on one server, followers on another.
//! - [`setup`]: accounts and follow graph over XMPP, for any server.
//! - [`sm`]: stream management (`--sm`) and deliberate drops (`--chaos`).
//! - [`churn`]: sessions logging out and back in (`--churn`).
//! - [`peers`]: real servers to compare against (Prosody).
//! - [`bench`]: the same plan on several targets, A B A B, with ratios.
//! - [`compare`]: saved runs side by side, with a percentile plot.
//! - [`receive`]: the receive-capacity benchmark (a trivial sender).
//! - [`workers`]: several loadgen processes for one run, past one
//!   process's open files.
//! - [`sys`]: CPU and RSS from /proc.
//! - [`ws`]: sessions over WebSocket (RFC 7395) through a pump task.

pub mod bench;
pub mod churn;
pub mod cli;
pub mod compare;
pub mod embedded;
pub mod federated;
pub mod figures;
pub mod floor;
pub mod graph;
pub mod logins;
pub mod part;
pub mod peers;
pub mod receive;
pub mod report;
pub mod run;
pub mod scram;
pub mod session;
pub mod setup;
pub mod sm;
pub mod sse;
pub mod stats;
pub mod summary;
pub mod sys;
pub mod syscalls;
pub mod timeline;
pub mod workers;
pub mod ws;

use anyhow::{bail, Context, Result};

use crate::report::{RunRecord, Setup};

/// File descriptors one session costs in one process: the client socket,
/// plus the server's end when the server is embedded in-process.
const FDS_PER_SESSION_EMBEDDED: u64 = 2;
/// Descriptors kept for everything else (store, listeners, logs).
const FD_HEADROOM: u64 = 500;

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen")
        .enable_all()
        .build()?)
}

/// Runs what the command line asks for; returns the record of a measured
/// run (the caller prints it and sets the exit code), or `None` after a
/// set-up.
pub fn main_with(cli: &cli::Cli, command: String) -> Result<Option<RunRecord>> {
    if let Some(cli::Command::Compare { runs, svg }) = &cli.command {
        let dir = cli.runs_dir.clone().unwrap_or_else(report::runs_dir);
        compare::compare(runs, svg.as_deref(), &dir)?;
        return Ok(None);
    }
    if let Some(cli::Command::Summary { dir }) = &cli.command {
        print!("{}", summary::write(dir)?);
        return Ok(None);
    }
    if let Some(cli::Command::Floor {
        graph,
        listen,
        presence_delay_ms,
    }) = &cli.command
    {
        let delay = std::time::Duration::from_millis(*presence_delay_ms);
        return floor::main(graph, *listen, delay).map(|()| None);
    }
    if let Some(cli::Command::Timeline {
        authors,
        posts,
        follows,
        requests,
        limit,
        deep,
    }) = &cli.command
    {
        let plan = timeline::TimelinePlan {
            authors: *authors,
            posts: *posts,
            follows: follows.clone(),
            requests: *requests,
            limit: *limit,
            deep: *deep,
        };
        return timeline_bench(cli, &plan, command).map(|()| None);
    }
    if let Some(cli::Command::Receive { batch }) = &cli.command {
        return receive_bench(cli, *batch as usize, command).map(|()| None);
    }
    let plan = cli.plan();
    let fds = sys::open_file_limit();
    // One socket per session in a loadgen process: past what one process
    // may hold, the sessions are split over worker processes.
    let per_process = fds.saturating_sub(FD_HEADROOM).max(1) as usize;
    let n_workers = workers::count(plan.sessions, per_process);
    let graph = plan.graph();
    if let Some(id) = cli.worker {
        return worker(cli, &plan, &graph, id).map(|()| None);
    }
    if n_workers > 1 && matches!(cli.command, Some(cli::Command::Bench { .. })) {
        bail!(
            "--sessions {}: bench runs in one process, which may hold {per_process} sessions here",
            plan.sessions
        );
    }
    let started_at = server::xep0082_datetime(session::now_us() / 1000);
    if let Some(cli::Command::Bench { targets }) = &cli.command {
        let repeat = cli.repeat.unwrap_or(3);
        let ext = cli_target(
            cli,
            cli.server
                .unwrap_or_else(|| "127.0.0.1:5222".parse().expect("literal")),
            plan.sessions,
        )?;
        let b = bench::bench(
            targets,
            repeat as usize,
            &plan,
            &graph,
            &ext,
            cli.quiet,
            command,
        )?;
        let text = bench::text(&b);
        print!("{text}");
        let runs = cli.runs_dir.clone().unwrap_or_else(report::runs_dir);
        let mut dirs = vec![runs.join(format!("{}-bench", report::stamp(&b.started_at)))];
        dirs.extend(cli.save.clone());
        for dir in dirs {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(
                dir.join("bench.json"),
                serde_json::to_string_pretty(&b)? + "\n",
            )?;
            std::fs::write(dir.join("report.txt"), &text)?;
            std::fs::write(dir.join("command.txt"), format!("{}\n", b.command))?;
        }
        let lost: u64 = b.runs.iter().flatten().map(|f| f.lost).sum();
        if lost > 0 {
            bail!("{lost} deliveries lost over the bench's runs");
        }
        return Ok(None);
    }
    if cli.federated {
        if cli.command.is_some() || cli.server.is_some() {
            bail!("--federated starts its own servers: no subcommand, and --server-b instead of --server");
        }
        return federated_run(cli, plan, graph, command, started_at).map(Some);
    }
    let Some(addr) = cli.server else {
        if matches!(cli.command, Some(cli::Command::Setup)) {
            bail!("setup prepares an external server (--server HOST:PORT); the embedded Starling is seeded directly");
        }
        return embedded_run(cli, plan, graph, command, started_at, n_workers).map(Some);
    };
    let target = cli_target(cli, addr, plan.sessions)?;
    let key_path = cli.key_cache.clone().unwrap_or_else(|| {
        cli.runs_dir
            .clone()
            .unwrap_or_else(report::runs_dir)
            .join("scram-keys.json")
    });
    let keys = std::sync::Arc::new(if cli.cold_cache {
        scram::KeyCache::default()
    } else {
        scram::KeyCache::load(&key_path)?
    });
    let rt = runtime()?;
    if !matches!(cli.command, Some(cli::Command::Run)) {
        rt.block_on(async {
            let (created, existed) = setup::register(&target, plan.sessions, plan.sources).await?;
            if !cli.quiet {
                eprintln!("setup: {created} accounts registered, {existed} already there");
            }
            setup::follow_graph(
                &target,
                &graph,
                plan.mechanism,
                plan.mech,
                plan.sources,
                &keys,
            )
            .await?;
            if !cli.quiet {
                eprintln!("setup: {} follows ({:?})", graph.edges(), plan.mechanism);
            }
            anyhow::Ok(())
        })?;
        if !cli.cold_cache {
            keys.save(&key_path)?;
            if !cli.quiet {
                eprintln!(
                    "setup: {} SCRAM keys cached in {}",
                    keys.len(),
                    key_path.display()
                );
            }
        }
        if matches!(cli.command, Some(cli::Command::Setup)) {
            return Ok(None);
        }
    }
    let preloaded = keys.len() as u64;
    let mut worker_args = target_args(cli, &target, &cli.accounts);
    worker_args.extend(["--key-cache".into(), key_path.display().to_string()]);
    if cli.cold_cache {
        worker_args.push("--cold-cache".into());
    }
    // A cold cache is cold for every repetition.
    let keys_for_run = || {
        if cli.cold_cache {
            std::sync::Arc::new(scram::KeyCache::default())
        } else {
            keys.clone()
        }
    };
    let runs = measure(
        cli,
        &rt,
        (&plan, &graph, &target),
        keys_for_run,
        n_workers,
        worker_args,
    )?;
    let (figures, hist, repetitions, spread) = report::repetitions(runs, plan.idle);
    if !cli.cold_cache {
        keys.save(&key_path)?;
    }
    drop(rt);
    let label = cli
        .server_name
        .clone()
        .unwrap_or_else(|| format!("server at {addr}"));
    let record = RunRecord {
        schema: report::SCHEMA,
        command,
        started_at,
        setup: Setup {
            server: label.clone(),
            server_version: String::new(),
            fanout: None,
            fsync_before_ack: None,
            scram_iterations: None,
            tls: cli.tls,
            scram_keys_preloaded: preloaded,
            loadgen_processes: n_workers,
            machine: sys::machine(),
            loadgen_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: report::git_commit(),
        },
        plan,
        figures,
        repetitions,
        spread,
    };
    keep(cli, &record, &hist, &label)?;
    Ok(Some(record))
}

fn timeline_bench(cli: &cli::Cli, plan: &timeline::TimelinePlan, command: String) -> Result<()> {
    let binary = match &cli.starling_bin {
        Some(b) => b.clone(),
        None => embedded::sibling_binary()
            .context("no starling binary beside loadgen: build it, or pass --starling-bin")?,
    };
    let (record, hgrms) = timeline::run(plan, &binary, command)?;
    print!("{}", timeline::text(&record));
    let runs = cli.runs_dir.clone().unwrap_or_else(report::runs_dir);
    let mut dirs = vec![runs.join(format!("{}-timeline", report::stamp(&record.started_at)))];
    dirs.extend(cli.save.clone());
    for dir in dirs {
        timeline::save(&dir, &record, &hgrms)?;
    }
    Ok(())
}

fn receive_bench(cli: &cli::Cli, batch: usize, command: String) -> Result<()> {
    let fds = sys::open_file_limit();
    let n = cli.sessions as u64;
    if n * FDS_PER_SESSION_EMBEDDED + FD_HEADROOM > fds {
        bail!(
            "--sessions {n}: the receive benchmark holds both ends of every connection, \
             so this process may have at most {}",
            fds.saturating_sub(FD_HEADROOM) / FDS_PER_SESSION_EMBEDDED
        );
    }
    let plan = receive::ReceivePlan {
        sessions: cli.sessions as usize,
        batch,
        payload: cli.payload,
        duration_s: cli.duration,
        warmup_s: cli.warmup.min(cli.duration / 2.0),
    };
    let started_at = server::xep0082_datetime(session::now_us() / 1000);
    let figures = receive::run(&plan)?;
    let record = receive::ReceiveRecord {
        schema: "starling-loadgen-receive/1",
        command,
        started_at,
        machine: sys::machine(),
        git_commit: report::git_commit(),
        plan,
        figures,
    };
    let text = receive::text(&record);
    print!("{text}");
    let runs = cli.runs_dir.clone().unwrap_or_else(report::runs_dir);
    let mut dirs = vec![runs.join(format!("{}-receive", report::stamp(&record.started_at)))];
    dirs.extend(cli.save.clone());
    for dir in dirs {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(
            dir.join("receive.json"),
            serde_json::to_string_pretty(&record)? + "\n",
        )?;
        std::fs::write(dir.join("report.txt"), &text)?;
        std::fs::write(dir.join("command.txt"), format!("{}\n", record.command))?;
    }
    if let Some(p) = &cli.json {
        std::fs::write(p, serde_json::to_string_pretty(&record)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// The measured phase, `plan.repeat` times: in this process, or over
/// `n_workers` worker processes started with `worker_args` (the target's
/// flags; the plan's are added here).
fn measure(
    cli: &cli::Cli,
    rt: &tokio::runtime::Runtime,
    (plan, graph, target): (&run::Plan, &graph::Graph, &run::Target),
    keys: impl Fn() -> std::sync::Arc<scram::KeyCache>,
    n_workers: usize,
    mut worker_args: Vec<String>,
) -> Result<Vec<(run::Figures, run::Histograms)>> {
    worker_args.extend(workers::plan_args(plan));
    let mut runs = Vec::with_capacity(plan.repeat);
    for rep in 0..plan.repeat {
        if plan.repeat > 1 && !cli.quiet {
            eprintln!("repetition {}/{}", rep + 1, plan.repeat);
        }
        runs.push(if n_workers > 1 {
            run::merge(plan, &workers::run(plan, n_workers, &worker_args)?)
        } else {
            rt.block_on(run::run(plan, graph, target, &keys(), cli.quiet))?
        });
    }
    Ok(runs)
}

/// The server the command line names (--domain, --accounts or
/// --accounts-file, --server-pid, --tls) at `addr`.
fn cli_target(cli: &cli::Cli, addr: std::net::SocketAddr, sessions: usize) -> Result<run::Target> {
    let (user, password) = cli.account_fns(sessions)?;
    Ok(run::Target {
        addr,
        domain: cli.domain.clone(),
        user,
        password,
        pid: cli.server_pid,
        tls: cli.tls,
        ws: cli.ws_addr,
        b: None,
    })
}

/// The flags that point a worker at the run's server.
fn target_args(cli: &cli::Cli, target: &run::Target, accounts: &cli::Accounts) -> Vec<String> {
    let mut a = vec![
        "--server".into(),
        target.addr.to_string(),
        "--domain".into(),
        target.domain.clone(),
    ];
    match &cli.accounts_file {
        Some(f) => a.extend(["--accounts-file".into(), f.display().to_string()]),
        None => a.extend([
            "--accounts".into(),
            format!(
                "{}{{n}}{}:{}",
                accounts.prefix, accounts.suffix, accounts.password
            ),
        ]),
    }
    if let Some(pid) = target.pid {
        a.extend(["--server-pid".into(), pid.to_string()]);
    }
    if target.tls {
        a.push("--tls".into());
    }
    if let Some(w) = target.ws {
        a.extend(["--ws-addr".into(), w.to_string()]);
    }
    if let Some(d) = &cli.runs_dir {
        a.extend(["--runs-dir".into(), d.display().to_string()]);
    }
    a
}

/// A worker process: its slice of the sessions, one rendezvous with the
/// parent, its part reported on stdout.
fn worker(
    cli: &cli::Cli,
    plan: &run::Plan,
    graph: &graph::Graph,
    id: workers::WorkerId,
) -> Result<()> {
    let Some(addr) = cli.server else {
        bail!("--worker needs --server");
    };
    let target = cli_target(cli, addr, plan.sessions)?;
    let keys = std::sync::Arc::new(match (&cli.key_cache, cli.cold_cache) {
        (Some(p), false) => scram::KeyCache::load(p)?,
        _ => scram::KeyCache::default(),
    });
    let coord = run::Coord {
        held: workers::slice(plan.sessions, id.k, id.w),
        meet: Box::new(workers::meet_parent),
    };
    let rt = runtime()?;
    let part = rt.block_on(run::run_part(
        plan,
        graph,
        &target,
        &keys,
        true,
        Some(coord),
    ))?;
    workers::report(&part)
}

fn keep(cli: &cli::Cli, record: &RunRecord, hist: &run::Histograms, label: &str) -> Result<()> {
    let safe: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = format!("{}-{safe}", report::stamp(&record.started_at));
    let runs = cli.runs_dir.clone().unwrap_or_else(report::runs_dir);
    report::save(&runs.join(name), record, hist)?;
    if let Some(dir) = &cli.save {
        report::save(dir, record, hist)?;
    }
    if let Some(p) = &cli.json {
        std::fs::write(p, serde_json::to_string_pretty(record)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn embedded_run(
    cli: &cli::Cli,
    plan: run::Plan,
    graph: graph::Graph,
    command: String,
    started_at: String,
    n_workers: usize,
) -> Result<RunRecord> {
    let n = plan.sessions as u64;
    let fds = sys::open_file_limit();
    let spawn = cli.spawn_server || n * FDS_PER_SESSION_EMBEDDED + FD_HEADROOM > fds;
    let data = tempfile::tempdir().context("a temporary data directory")?;
    embedded::seed(data.path(), &graph, plan.mechanism)?;
    // The HTTP listener serves WebSocket and the streaming API.
    let websocket = plan.transport != session::Transport::Tcp;
    let server = if spawn {
        let bin = match &cli.starling_bin {
            Some(b) => b.clone(),
            None => embedded::sibling_binary().context(
                "no starling binary next to loadgen: build it (cargo build --release -p starling-server) \
                 or pass --starling-bin",
            )?,
        };
        embedded::Embedded::child(&bin, data.path(), &cli.fanout, cli.tls, websocket)?
    } else {
        embedded::Embedded::in_process(embedded::config(
            data.path(),
            &cli.fanout,
            cli.tls,
            websocket,
        ))?
    };
    let target = run::Target {
        addr: server.addr(),
        domain: embedded::DOMAIN.into(),
        user: std::sync::Arc::new(embedded::user),
        password: std::sync::Arc::new(|_| embedded::PASSWORD.into()),
        pid: server.pid(),
        tls: cli.tls,
        ws: server.ws(),
        b: None,
    };
    // The seeded accounts share one salt: the first login derives, the
    // rest hit (a fresh cache each run, as the salt is new each run).
    let keys = std::sync::Arc::new(scram::KeyCache::default());
    let rt = runtime()?;
    let accounts: cli::Accounts = format!("user{{n}}:{}", embedded::PASSWORD)
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let mut worker_args = target_args(cli, &target, &accounts);
    // The seeded accounts share one salt: each worker derives once.
    worker_args.push("--cold-cache".into());
    let runs = measure(
        cli,
        &rt,
        (&plan, &graph, &target),
        || keys.clone(),
        n_workers,
        worker_args,
    )?;
    let (figures, hist, repetitions, spread) = report::repetitions(runs, plan.idle);
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
            tls: cli.tls,
            scram_keys_preloaded: 0,
            loadgen_processes: n_workers,
            machine: sys::machine(),
            loadgen_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: report::git_commit(),
        },
        plan,
        figures,
        repetitions,
        spread,
    };
    keep(cli, &record, &hist, &format!("starling-{}", cli.fanout))?;
    Ok(record)
}

/// A `--federated` run: publishers on a Starling child (a.example),
/// followers on a second server (b.example).
fn federated_run(
    cli: &cli::Cli,
    plan: run::Plan,
    graph: graph::Graph,
    command: String,
    started_at: String,
) -> Result<RunRecord> {
    let bin = match &cli.starling_bin {
        Some(b) => b.clone(),
        None => embedded::sibling_binary().context(
            "no starling binary next to loadgen: build it (cargo build --release -p starling-server) \
             or pass --starling-bin",
        )?,
    };
    let fan = if cli.per_recipient {
        federated::Fan::PerRecipient
    } else {
        federated::Fan::Multicast
    };
    let receiver = match cli.server_b {
        Some(a) => federated::Receiver::External(a),
        None => federated::Receiver::Starling,
    };
    let (servers, target, label) =
        federated::start(&bin, &plan, &graph, &cli.fanout, fan, &receiver)?;
    let keys = std::sync::Arc::new(scram::KeyCache::default());
    let rt = runtime()?;
    rt.block_on(federated::set_up_external(
        &servers, &plan, &graph, &target, &keys,
    ))
    .context("setting up the followers' server")?;
    let runs = measure(
        cli,
        &rt,
        (&plan, &graph, &target),
        || keys.clone(),
        1,
        Vec::new(),
    )?;
    let (figures, hist, repetitions, spread) = report::repetitions(runs, plan.idle);
    drop(rt);
    drop(servers);
    let record = RunRecord {
        schema: report::SCHEMA,
        command,
        started_at,
        setup: Setup {
            // The label names both servers, versions and settings.
            server: label.clone(),
            server_version: String::new(),
            fanout: None,
            fsync_before_ack: Some(true),
            scram_iterations: Some(embedded::ITERATIONS),
            tls: cli.tls,
            scram_keys_preloaded: 0,
            loadgen_processes: 1,
            machine: sys::machine(),
            loadgen_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: report::git_commit(),
        },
        plan,
        figures,
        repetitions,
        spread,
    };
    let name = match (&receiver, fan) {
        (federated::Receiver::External(_), _) => "federated-external",
        (_, federated::Fan::Multicast) => "federated-multicast",
        (_, federated::Fan::PerRecipient) => "federated-per-recipient",
    };
    keep(cli, &record, &hist, name)?;
    Ok(record)
}

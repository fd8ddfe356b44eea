//! loadgen against an embedded Starling: a short scenario per follow
//! mechanism must lose nothing, and its record must validate against
//! results/schema.json. Bad command lines get one clear error.

mod common;

use std::process::Command;

use clap::Parser;
use loadgen::cli::Cli;

fn run(
    extra: &[&str],
) -> (
    loadgen::report::RunRecord,
    serde_json::Value,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let runs = dir.path().join("runs");
    let mut args = vec![
        "loadgen",
        "--sessions",
        "50",
        "--duration",
        "10",
        "--warmup",
        "2",
        "--rate",
        "5",
        "--background-rate",
        "5",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let json_s = json.to_str().unwrap().to_owned();
    let runs_s = runs.to_str().unwrap().to_owned();
    args.extend(["--json", &json_s, "--runs-dir", &runs_s]);
    let cli = Cli::parse_from(&args);
    let record = loadgen::main_with(&cli, args.join(" "))
        .expect("the run completes")
        .expect("a measured run");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The kept run holds the record, the histograms and the command.
    let kept: Vec<_> = std::fs::read_dir(&runs).unwrap().collect();
    assert_eq!(kept.len(), 1);
    let kept = kept[0].as_ref().unwrap().path();
    for f in [
        "run.json",
        "report.txt",
        "command.txt",
        "delivery.hgrm",
        "completion.hgrm",
    ] {
        assert!(kept.join(f).exists(), "{f} kept");
    }
    (record, value, dir)
}

#[test]
fn fifty_sessions_ten_seconds_no_loss_for_each_mechanism() {
    for mechanism in ["presence", "pubsub", "direct"] {
        // One mechanism also repeats its measured phase.
        let repeat = if mechanism == "direct" { "2" } else { "1" };
        // And one runs every session over STARTTLS.
        let mut args = vec!["--mechanism", mechanism, "--repeat", repeat];
        if mechanism == "pubsub" {
            args.push("--tls");
        }
        let (r, value, _dir) = run(&args);
        assert_eq!(r.setup.tls, mechanism == "pubsub");
        assert_eq!(r.repetitions.len(), repeat.parse::<usize>().unwrap());
        for f in &r.repetitions {
            assert_eq!(f.lost, 0, "{mechanism}: every repetition is lossless");
        }
        if repeat == "2" {
            let (name, (median, lo, hi)) = r
                .spread
                .iter()
                .find(|(n, _)| n == "deliveries/s")
                .expect("deliveries/s spread");
            assert!(lo <= median && median <= hi && *lo > 0.0, "{name}");
        }
        let f = &r.figures;
        assert_eq!(f.sessions_up, 50, "{mechanism}");
        assert!(f.posts >= 60, "{mechanism}: {} posts", f.posts);
        assert!(
            f.expected > 0 && f.received == f.expected,
            "{mechanism}: {f:?}"
        );
        assert_eq!(f.lost, 0, "{mechanism}");
        assert_eq!(f.delivery.count, f.received, "{mechanism}");
        // Per-second intervals agree with the per-second counts.
        assert!(f.intervals.len() >= 5, "{mechanism}: {:?}", f.intervals);
        assert_eq!(
            f.intervals.iter().map(|i| i.deliveries).collect::<Vec<_>>(),
            f.deliveries_per_s
        );
        assert!(f
            .intervals
            .iter()
            .all(|i| i.deliveries == 0 || i.p50_ms > 0.0 && i.p50_ms <= i.max_ms));
        assert!(f.errors.is_empty(), "{mechanism}: {:?}", f.errors);
        if mechanism != "direct" {
            assert_eq!(
                f.ack.count, f.posts,
                "{mechanism}: every publish acknowledged"
            );
        }
        let errors = common::schema_errors(&value);
        assert!(errors.is_empty(), "{mechanism}: schema errors {errors:?}");
    }
}

#[test]
fn followers_over_the_streaming_api_lose_nothing_for_each_mechanism() {
    for mechanism in ["presence", "pubsub"] {
        let args = [
            "--mechanism",
            mechanism,
            "--background",
            "none",
            "--transport",
            "sse",
        ];
        let (r, value, _dir) = run(&args);
        let f = &r.figures;
        assert_eq!(f.sessions_up, 50, "{mechanism}");
        assert!(
            f.expected > 0 && f.lost == 0,
            "{mechanism}: {} of {} lost",
            f.lost,
            f.expected
        );
        assert_eq!(f.duplicates, 0, "{mechanism}");
        assert!(f.errors.is_empty(), "{mechanism}: {:?}", f.errors);
        assert!(
            common::schema_errors(&value).is_empty(),
            "{:?}",
            common::schema_errors(&value)
        );
    }
}

#[test]
fn stream_management_rides_out_dropped_connections() {
    // Followers over WebSocket too: the same resumption on either transport.
    for transport in ["tcp", "websocket"] {
        let args = [
            "--mechanism",
            "pubsub",
            "--background",
            "none",
            "--sm",
            "--chaos",
            "10",
            "--transport",
            transport,
        ];
        let (r, value, _dir) = run(&args);
        let f = &r.figures;
        assert!(
            f.reconnects >= 30,
            "{transport}: {} reconnects",
            f.reconnects
        );
        assert_eq!(f.lost, 0, "{transport}: resumed sessions lose nothing");
        assert_eq!(f.duplicates, 0, "{transport}: nor get anything twice");
        assert!(f.errors.is_empty(), "{transport}: {:?}", f.errors);
        assert!(common::schema_errors(&value).is_empty());
    }
}

#[test]
fn past_one_process_s_open_files_the_sessions_split_over_workers() {
    // A 700-file limit holds 200 sessions per process (500 kept for the
    // rest), so 500 sessions take three workers and a child server.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let runs = dir.path().join("runs");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 700 && exec '{}' --sessions 500 --duration 8 --warmup 2 --quiet \
             --json '{}' --runs-dir '{}'",
            env!("CARGO_BIN_EXE_loadgen"),
            json.display(),
            runs.display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let errors = common::schema_errors(&value);
    assert!(errors.is_empty(), "schema errors {errors:?}");
    assert_eq!(value["setup"]["loadgen_processes"], 3);
    assert_eq!(value["setup"]["server"], "starling (child process)");
    let f = &value["figures"];
    assert_eq!(f["sessions_up"], 500);
    assert!(f["expected"].as_u64().unwrap() > 10_000, "{f}");
    assert_eq!(f["received"], f["expected"]);
    assert_eq!(f["lost"], 0);
    // One fan-out completion per measured post: each post was complete
    // only once every worker had all it expected.
    assert_eq!(f["fanout_completion"]["count"], f["posts"]);
}

#[test]
fn an_unreachable_server_is_one_clear_error_line() {
    // Port 1 on loopback: nothing listens there.
    for cmd in [&["run"][..], &[][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(cmd)
            .args(["--server", "127.0.0.1:1", "--sessions", "2", "--quiet"])
            .args(["--runs-dir", std::env::temp_dir().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{cmd:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{cmd:?}: {err}");
        assert!(
            err.starts_with("loadgen: ") && err.contains("127.0.0.1:1"),
            "{cmd:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{cmd:?}: {err}");
    }
}

#[test]
fn churn_logs_sessions_out_and_in_at_the_rate_asked() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let runs = dir.path().join("runs");
    let (json_s, runs_s) = (json.to_str().unwrap(), runs.to_str().unwrap());
    let args = [
        "loadgen",
        "--sessions",
        "50",
        "--idle",
        "--churn",
        "40",
        "--duration",
        "6",
        "--warmup",
        "1",
        "--quiet",
        "--json",
        json_s,
        "--runs-dir",
        runs_s,
    ];
    let cli = Cli::parse_from(args);
    let r = loadgen::main_with(&cli, args.join(" "))
        .expect("the run completes")
        .expect("a measured run");
    let f = &r.figures;
    // 40 a second over a 5 s window, each of the 50 sessions in turn: the
    // embedded server keeps up, so the rate measured is the rate asked.
    let rate = f.churn_logins_per_s.expect("churn measured");
    assert!((30.0..=45.0).contains(&rate), "{rate} logins/s");
    assert_eq!(f.churn_failures, 0);
    let l = f.churn_login.as_ref().expect("their latency");
    assert!(l.count >= 150, "{} logins timed", l.count);
    // Every churned login was a new connection, logged in from scratch.
    assert!(f.reconnects >= l.count, "{} reconnects", f.reconnects);
    assert_eq!(f.sessions_up, 50);
    assert!(f.errors.is_empty(), "{:?}", f.errors);
    assert!(f.dropped_sessions.is_empty(), "{:?}", f.dropped_sessions);
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(common::schema_errors(&value), Vec::<String>::new());
    let kept = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap();
    assert!(kept.path().join("churn-login.hgrm").exists());
}

#[test]
fn bad_command_lines_get_one_clear_error() {
    for (args, needle) in [
        (vec!["--rate", "0"], "--rate"),
        (vec!["--mechanism", "carrier-pigeon"], "--mechanism"),
        (vec!["--sessions", "1"], "--sessions"),
        (vec!["--background", "ring"], "--background"),
        (vec!["--idle", "--churn", "10", "--sm"], "--churn"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error:") && first.contains(needle),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

//! `loadgen bench` with the floor beside Starling: a burst reaches every
//! follower on both, burst throughput is deliveries over the burst's own
//! window, and the servers' write syscalls are counted.

mod common;

use std::process::Command;

#[test]
fn a_burst_on_the_floor_and_on_starling_is_measured_alike() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::bench(
        dir.path(),
        &[
            "--targets",
            "floor,starling:shared",
            "--sessions",
            "200",
            "--mechanism",
            "pubsub",
            "--background",
            "none",
            "--burst",
            "10",
            "--warmup",
            "1",
            "--duration",
            "2",
            "--repeat",
            "1",
        ],
        &[],
    );
    assert_eq!(b["targets"][0], "floor");
    for (t, runs) in b["runs"].as_array().unwrap().iter().enumerate() {
        let f = &runs[0];
        assert!(common::figures_errors(f).is_empty(), "{t}: {f}");
        // 199 followers of the one celebrity, ten posts each.
        assert_eq!(f["expected"], 1990, "{t}");
        assert_eq!(f["received"], 1990, "{t}");
        let secs = f["burst_secs"].as_f64().unwrap();
        let tput = f["throughput_per_s"].as_f64().unwrap();
        assert!(secs > 0.0 && secs < 10.0, "{t}: burst of {secs} s");
        assert!(
            (tput * secs - 1990.0).abs() < 1.0,
            "{t}: {tput}/s over {secs} s"
        );
        // Counted around the window: at least one write per follower
        // session that got anything, at most a few per delivery.
        let w = f["server_write_syscalls"].as_u64().expect("perf counted");
        assert!((199..=3 * 1990).contains(&w), "{t}: {w} writes");
    }

    // `loadgen summary` tables the kept bench from its record.
    std::fs::write(
        dir.path().join("README.md"),
        format!(
            "# kept\n\n{}\nold table\n{}\ntail\n",
            loadgen::summary::START,
            loadgen::summary::END
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("summary")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(
        !readme.contains("old table") && readme.ends_with("tail\n"),
        "{readme}"
    );
    let floor_row = readme.lines().find(|l| l.contains("| `kept` |")).unwrap();
    let starling_row = readme
        .lines()
        .find(|l| l.contains("| starling:shared |"))
        .unwrap();
    assert!(
        floor_row.contains("| floor |")
            && floor_row.contains("200 sessions, pubsub, burst of 10, ×1")
    );
    let floor_tput = b["medians"][0][1][0][0].as_f64().unwrap();
    assert!(
        floor_row.contains(&format!("| {floor_tput:.0} |")),
        "{floor_row}"
    );
    let ratio = b["ratios"][0][1][0].as_f64().unwrap();
    assert!(
        starling_row.ends_with(&format!("| {ratio:.2}× |")),
        "{starling_row}"
    );
    assert!(
        readme.contains("- `kept`: `loadgen bench --targets floor,starling:shared"),
        "{readme}"
    );
}

/// A server may count a session available only once it has processed its
/// initial presence; posts before that rightly do not reach it. A floor
/// that takes 2.5 s over each presence: loadgen must wait for each
/// session's own presence to come back before expecting deliveries (it
/// once counted a session up at bind, and reported such posts as lost).
#[test]
fn a_server_slow_to_process_presence_is_not_charged_with_losses() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::bench(
        dir.path(),
        &[
            "--targets",
            "floor",
            "--sessions",
            "50",
            "--mechanism",
            "pubsub",
            "--background",
            "none",
            "--rate",
            "20",
            "--warmup",
            "1",
            "--duration",
            "4",
            "--repeat",
            "1",
        ],
        &[("LOADGEN_FLOOR_PRESENCE_DELAY_MS", "2500")],
    );
    let f = &b["runs"][0][0];
    assert_eq!(f["sessions_up"], 50, "{f}");
    assert_eq!(f["lost"], 0, "{f}");
    // 49 followers of some 60 measured posts, all received.
    assert!(f["expected"].as_u64().unwrap() >= 49 * 59, "{f}");
    assert_eq!(f["received"], f["expected"], "{f}");
    // Each login waited for its presence to come back.
    assert!(f["connect"]["p50_ms"].as_f64().unwrap() >= 2500.0, "{f}");
}

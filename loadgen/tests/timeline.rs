//! `loadgen timeline`: the API's home timeline timed for viewers following
//! few and many authors, every page checked (count, order, authors).

use std::process::Command;

fn timeline(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("timeline")
        .args(args)
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .arg("--save")
        .arg(dir.join("kept"))
        .output()
        .unwrap()
}

#[test]
fn times_checked_home_timelines_and_saves_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = timeline(
        dir.path(),
        &[
            "--authors",
            "30",
            "--posts",
            "3",
            "--follows",
            "2,30",
            "--requests",
            "20",
            "--limit",
            "5",
            "--deep",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = dir.path().join("kept");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kept.join("timeline.json")).unwrap())
            .unwrap();
    let viewers = r["viewers"].as_array().unwrap();
    assert_eq!(viewers.len(), 2);
    for (v, follows) in viewers.iter().zip([2, 30]) {
        assert_eq!(v["follows"], follows);
        assert_eq!(v["latency"]["count"], 20);
        assert!(v["latency"]["p50_ms"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(viewers[0]["p50_ratio"], 1.0);
    assert!(kept.join("home-follows-30.hgrm").exists());
    assert!(std::fs::read_to_string(kept.join("command.txt"))
        .unwrap()
        .contains("timeline"));
}

#[test]
fn a_viewer_cannot_follow_more_authors_than_exist() {
    let dir = tempfile::tempdir().unwrap();
    let out = timeline(dir.path(), &["--authors", "10", "--follows", "20"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--follows"));
}

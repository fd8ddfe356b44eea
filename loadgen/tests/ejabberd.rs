//! loadgen's `ejabberd` bench target: Debian's ejabberd 23.01 started from
//! the configuration in loadgen/peers/ejabberd/, set up over XMPP (in-band
//! registration, then roster or pubsub follows), and a 50-session run per
//! follow mechanism that must lose nothing. scripts/test installs ejabberd.

mod common;

use std::process::Command;

#[test]
fn fifty_sessions_against_ejabberd_lose_nothing() {
    for mechanism in ["presence", "pubsub"] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["bench", "--targets", "ejabberd", "--mechanism", mechanism])
            .args(["--sessions", "50", "--duration", "8", "--warmup", "2"])
            .args(["--rate", "5", "--background-rate", "5", "--repeat", "1"])
            .arg("--quiet")
            .arg("--runs-dir")
            .arg(dir.path().join("runs"))
            .arg("--save")
            .arg(dir.path().join("kept"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mechanism}: {err}");
        let b: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("kept/bench.json")).unwrap(),
        )
        .unwrap();
        assert!(
            b["labels"][0].as_str().unwrap().starts_with("ejabberd 23"),
            "{}",
            b["labels"]
        );
        let f = &b["runs"][0][0];
        let errors = common::figures_errors(f);
        assert!(errors.is_empty(), "{mechanism}: {errors:?}");
        assert_eq!(f["sessions_up"], 50, "{mechanism}: {f}");
        assert!(f["posts"].as_u64().unwrap() >= 50, "{mechanism}: {f}");
        assert!(f["expected"].as_u64().unwrap() > 0, "{mechanism}");
        assert_eq!(f["lost"], 0, "{mechanism}: {f}");
        // The beam.smp process was found and sampled.
        assert!(f["server_rss_max"].as_u64().unwrap() > 10 << 20, "{f}");
        assert!(f["server_write_syscalls"].as_u64().unwrap() > 0, "{f}");
    }
}

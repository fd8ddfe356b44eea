//! loadgen's `ejabberd` bench target: Debian's ejabberd 23.01 started from
//! the configuration in loadgen/peers/ejabberd/, set up over XMPP (in-band
//! registration, then roster or pubsub follows), and a 50-session run per
//! follow mechanism that must lose nothing. scripts/test installs ejabberd.

mod common;

#[test]
fn fifty_sessions_against_ejabberd_lose_nothing() {
    for mechanism in ["presence", "pubsub"] {
        let dir = tempfile::tempdir().unwrap();
        let b = common::bench(
            dir.path(),
            &[
                "--targets",
                "ejabberd",
                "--mechanism",
                mechanism,
                "--sessions",
                "50",
                "--duration",
                "8",
                "--warmup",
                "2",
                "--rate",
                "5",
                "--background-rate",
                "5",
                "--repeat",
                "1",
            ],
            &[],
        );
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

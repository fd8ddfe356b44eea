//! loadgen against a real Prosody 0.12 (Debian's package, started with the
//! configuration in loadgen/peers/prosody/): set-up over XMPP, then a
//! 50-session, 10-second run that must lose nothing and write a
//! schema-valid record. scripts/test installs Prosody.

mod common;

use clap::Parser;
use loadgen::cli::Cli;
use loadgen::peers::Prosody;

#[test]
fn fifty_sessions_against_prosody_lose_nothing() {
    let prosody = Prosody::start().expect("prosody starts (scripts/test installs it)");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let addr = prosody.addr.to_string();
    let pid = prosody.pid().to_string();
    let json_s = json.to_str().unwrap().to_owned();
    let runs_s = dir.path().join("runs").to_str().unwrap().to_owned();
    for (round, mechanism) in ["presence", "pubsub"].into_iter().enumerate() {
        // Presence accounts follow a pattern; the pubsub ones come from a
        // file, each with its own password.
        let accounts_file = dir.path().join("accounts.txt");
        std::fs::write(
            &accounts_file,
            (0..50)
                .map(|i| format!("file{i}:pw-{i}\n"))
                .collect::<String>(),
        )
        .unwrap();
        let (flag, value) = if mechanism == "presence" {
            ("--accounts", format!("{mechanism}{{n}}:pw"))
        } else {
            ("--accounts-file", accounts_file.display().to_string())
        };
        let args = [
            "loadgen",
            "--server",
            &addr,
            "--server-pid",
            &pid,
            "--server-name",
            "prosody",
            "--domain",
            loadgen::peers::PROSODY_DOMAIN,
            flag,
            &value,
            "--mechanism",
            mechanism,
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
            "--json",
            &json_s,
            "--runs-dir",
            &runs_s,
        ];
        let cli = Cli::parse_from(args);
        let r = loadgen::main_with(&cli, args.join(" "))
            .expect("set-up and run complete")
            .expect("a measured run");
        let f = &r.figures;
        assert_eq!(f.sessions_up, 50, "{mechanism}: {:?}", f.errors);
        assert!(f.posts >= 60, "{mechanism}: {} posts", f.posts);
        assert!(f.expected > 0, "{mechanism}");
        assert_eq!(f.lost, 0, "{mechanism}: {f:?}");
        // Prosody salts every account differently: setup's logins warmed
        // the saved key cache, so the measured logins derive nothing.
        assert_eq!(
            r.setup.scram_keys_preloaded,
            50 * (round as u64 + 1),
            "{mechanism}"
        );
        assert_eq!(f.scram_cache, (50, 0), "{mechanism}: all hits");
        assert!(
            f.server_rss_max > 0,
            "{mechanism}: Prosody's RSS was sampled"
        );
        let text = std::fs::read_to_string(&json).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let errors = common::schema_errors(&value);
        assert!(errors.is_empty(), "{errors:?}");
    }
}

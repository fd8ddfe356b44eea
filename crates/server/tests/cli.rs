//! The `starling` binary's account commands and its errors for bad input.

use server::store::prelude::*;

mod common;

fn starling(dir: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    let (ok, _, err) = common::binary::cli(dir, args, stdin);
    (ok, err)
}

#[test]
fn account_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = starling(dir.path(), &["adduser", "jane@example.org"], "secret\n");
    assert!(ok, "{err}");
    let (ok, err) = starling(dir.path(), &["adduser", "jane@example.org"], "other\n");
    assert!(!ok && err.contains("exists"), "{err}");
    let (ok, err) = starling(dir.path(), &["passwd", "jane@example.org"], "new\n");
    assert!(ok, "{err}");
    // passwd changes a password; it does not create an account.
    let (ok, err) = starling(dir.path(), &["passwd", "nobody@example.org"], "new\n");
    assert!(!ok && err.contains("no account"), "{err}");
    let store = server::Redb::open(dir.path()).unwrap();
    let rec = store
        .account(&stanza::BareJid::new("jane@example.org").unwrap())
        .unwrap()
        .unwrap();
    assert!(rec
        .keys(server::sasl::Hash::Sha1)
        .unwrap()
        .verify_password("new"));
    drop(store);
    let (ok, err) = starling(dir.path(), &["deluser", "jane@example.org"], "");
    assert!(ok, "{err}");
    let (ok, err) = starling(dir.path(), &["deluser", "jane@example.org"], "");
    assert!(!ok && err.contains("no account"), "{err}");
}

#[test]
fn bad_input_gets_one_clear_error_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str, &str); 4] = [
        (&["adduser", "jane@elsewhere.org"], "secret\n", "not served"),
        (&["adduser", "not a jid"], "secret\n", "JID argument"),
        (&["adduser", "jane@example.org"], "\n", "empty password"),
        (
            &[
                "serve",
                "--fanout",
                "fastest",
                "--c2s-listen",
                "127.0.0.1:0",
            ],
            "",
            "`fanout`",
        ),
    ];
    for (args, stdin, want) in cases {
        let (ok, err) = starling(dir.path(), args, stdin);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

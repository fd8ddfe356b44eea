//! `loadgen bench` across two servers (#12): publishers on one starling
//! child, followers on another, per recipient and with XEP-0033 multicast;
//! every delivery crosses a server-to-server stream and none is lost.

mod common;

#[test]
fn a_burst_reaches_every_remote_follower_per_recipient_and_per_domain() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::bench(
        dir.path(),
        &[
            "--targets",
            "federated:per-recipient,federated:multicast",
            "--sessions",
            "101",
            "--mechanism",
            "pubsub",
            "--background",
            "none",
            "--burst",
            "5",
            "--warmup",
            "1",
            "--duration",
            "2",
            "--repeat",
            "1",
        ],
        &[],
    );
    let labels = b["labels"].as_array().unwrap();
    assert!(
        labels[0]
            .as_str()
            .unwrap()
            .contains("one stanza per recipient"),
        "{labels:?}"
    );
    assert!(
        labels[1].as_str().unwrap().contains("XEP-0033"),
        "{labels:?}"
    );
    for (t, runs) in b["runs"].as_array().unwrap().iter().enumerate() {
        let f = &runs[0];
        assert!(common::figures_errors(f).is_empty(), "{t}: {f}");
        // 100 followers on b.example, five posts from a.example.
        assert_eq!(f["expected"], 500, "{t}");
        assert_eq!(f["received"], 500, "{t}");
        assert_eq!(f["lost"], 0, "{t}");
    }
}

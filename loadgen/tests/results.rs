//! Every run record kept in results/ follows results/schema.json, and
//! every kept directory names the command that wrote it.

mod common;

use std::path::{Path, PathBuf};

fn kept_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        // results/runs/ is the git-ignored scratch space, not kept results.
        if p.is_dir() && p.file_name().is_some_and(|n| n != "runs") {
            out.push(p.clone());
            kept_dirs(&p, out);
        }
    }
}

#[test]
fn kept_run_records_follow_the_schema_and_name_their_command() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
    let mut dirs = Vec::new();
    kept_dirs(&root, &mut dirs);
    assert!(!dirs.is_empty());
    let mut records = 0;
    for d in &dirs {
        assert!(
            d.join("command.txt").is_file(),
            "{} has no command.txt",
            d.display()
        );
        let run = d.join("run.json");
        if run.is_file() {
            let value: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&run).unwrap()).unwrap();
            let errors = common::schema_errors(&value);
            assert!(errors.is_empty(), "{}: {errors:?}", run.display());
            records += 1;
        }
    }
    assert!(records >= 3, "only {records} run records found");
}

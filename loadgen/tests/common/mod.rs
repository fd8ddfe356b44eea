//! Shared by loadgen's integration tests.
#![allow(dead_code)] // each test binary uses some of these

/// The errors of `value` against results/schema.json (empty when valid).
pub fn schema_errors(value: &serde_json::Value) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../results/schema.json"
    ))
    .expect("results/schema.json");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    let v = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    v.iter_errors(value).map(|e| e.to_string()).collect()
}

/// The errors of a figures object against the schema's definition of one.
pub fn figures_errors(figures: &serde_json::Value) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../results/schema.json"
    ))
    .expect("results/schema.json");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
    let mut sub = schema["$defs"]["figures"].clone();
    sub["$defs"] = schema["$defs"].clone();
    let v = jsonschema::validator_for(&sub).expect("a valid JSON Schema");
    v.iter_errors(figures).map(|e| e.to_string()).collect()
}

/// Runs `loadgen bench ARGS --quiet`, keeping its record in `dir`, with
/// `env` set; fails the test with loadgen's stderr if it fails, and
/// returns the record (`bench.json`).
pub fn bench(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("bench")
        .args(args)
        .arg("--quiet")
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .arg("--save")
        .arg(dir.join("kept"))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen bench {args:?}: {err}");
    serde_json::from_str(&std::fs::read_to_string(dir.join("kept/bench.json")).unwrap()).unwrap()
}

//! Shared by loadgen's integration tests.

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

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

//! Rejects messages whose payload is not JSON matching a JSON Schema (any
//! draft the `jsonschema` crate knows; the draft is taken from `$schema`,
//! default 2020-12). The reason names the first error's location in the
//! message (a JSON pointer) and what is wrong, so the publisher can fix it.
//! The schema is given inline in the config; remote `$ref`s are not
//! fetched (plugins have no network).
//!
//! ```toml
//! [[plugin]]
//! name = "validate-order"
//! path = "plugins/dist/validate_json_schema.wasm"
//! [plugin.config.schema]
//! type = "object"
//! required = ["id", "region", "total"]
//! properties = { id = { type = "string" }, total = { type = "number", minimum = 0 } }
//! ```

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::{Message, Validator};

/// The plugin's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The JSON Schema every payload must match.
    pub schema: Value,
}

/// The validator.
pub struct ValidateJsonSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ValidateJsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValidateJsonSchema")
    }
}

impl Validator for ValidateJsonSchema {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        let validator = jsonschema::validator_for(&config.schema)
            .map_err(|e| format!("invalid JSON Schema: {e}"))?;
        Ok(ValidateJsonSchema { validator })
    }

    fn validate(&self, message: &Message<'_>) -> Result<(), String> {
        let doc: Value = message
            .json()
            .map_err(|e| format!("schema validation failed at /: {e}"))?;
        let first_error = self.validator.iter_errors(&doc).next().map(|error| {
            let path = error.instance_path().to_string();
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            format!("schema validation failed at {path}: {error}")
        });
        match first_error {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }
}

sluice_sdk::export!(validator: ValidateJsonSchema);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestOutcome};
    use sluice_sdk::ValidatorPlugin;

    use super::*;

    const ORDER: &str = r#"{"schema": {
        "type": "object",
        "required": ["id", "total"],
        "properties": {
            "id": {"type": "string"},
            "total": {"type": "number", "minimum": 0},
            "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}}
        }
    }}"#;

    fn run(config: &str, payloads: &[&str]) -> Result<Vec<TestOutcome>, String> {
        let batch = payloads
            .iter()
            .fold(BatchBuilder::new("orders"), |b, p| b.message(*p))
            .build();
        run_plugin::<ValidatorPlugin<ValidateJsonSchema>>(config, &batch)
    }

    fn reason(outcome: &TestOutcome) -> &str {
        match outcome {
            TestOutcome::Reject(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn valid_documents_pass() {
        let got = run(
            ORDER,
            &[
                r#"{"id": "o-1", "total": 10}"#,
                r#"{"id": "o-2", "total": 0, "items": [{"sku": "A"}]}"#,
            ],
        )
        .unwrap();
        assert_eq!(got, vec![TestOutcome::Pass, TestOutcome::Pass]);
    }

    #[test]
    fn rejections_name_the_path_and_the_problem() {
        let got = run(
            ORDER,
            &[
                r#"{"id": "o-1", "total": -5}"#,
                r#"{"id": 7, "total": 1}"#,
                r#"{"total": 1}"#,
                r#"{"id": "o", "total": 1, "items": [{"sku": "A"}, {"qty": 2}]}"#,
            ],
        )
        .unwrap();
        assert!(
            reason(&got[0]).starts_with("schema validation failed at /total:"),
            "{}",
            reason(&got[0])
        );
        assert!(reason(&got[0]).contains("minimum"), "{}", reason(&got[0]));
        assert!(
            reason(&got[1]).starts_with("schema validation failed at /id:"),
            "{}",
            reason(&got[1])
        );
        assert!(
            reason(&got[2]).contains("\"id\" is a required property"),
            "{}",
            reason(&got[2])
        );
        assert!(
            reason(&got[3]).starts_with("schema validation failed at /items/1:"),
            "{}",
            reason(&got[3])
        );
    }

    #[test]
    fn payloads_that_are_not_json_are_rejected() {
        let got = run(ORDER, &["not json", ""]).unwrap();
        for outcome in &got {
            assert!(
                reason(outcome).contains("not the expected JSON"),
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn bad_config_is_refused_clearly() {
        let err = run(r#"{"schema": {"type": "objekt"}}"#, &[]).unwrap_err();
        assert!(err.contains("invalid JSON Schema"), "{err}");
        let err = run(r#"{}"#, &[]).unwrap_err();
        assert!(err.contains("missing field `schema`"), "{err}");
    }
}

//! Keeps messages whose JSON payload matches configured conditions on its
//! fields, and drops the rest.
//!
//! A field is a dotted path (`customer.tier`, `items.0.sku`) or a JSON
//! pointer (`/customer/tier`). Each condition has exactly one test:
//! `equals` (any JSON value), `exists` (true/false), `gt` or `lt` (numbers).
//! `match = "all"` (default) keeps a message when every condition holds,
//! `"any"` when one does. Payloads that are not JSON are dropped unless
//! `keep_invalid = true`.
//!
//! ```toml
//! [[plugin]]
//! name = "big-eu-orders"
//! path = "plugins/dist/filter_json.wasm"
//! config = { conditions = [
//!     { field = "region", equals = "eu" },
//!     { field = "total", gt = 100 },
//! ] }
//! ```

use serde::Deserialize;
use serde_json::Value;
use sluice_sdk::{Filter, Message};

/// All or any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    /// Every condition must hold.
    #[default]
    All,
    /// One condition is enough.
    Any,
}

/// One condition as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    /// Dotted path or JSON pointer.
    pub field: String,
    /// The field equals this value.
    #[serde(default)]
    pub equals: Option<Value>,
    /// The field exists (true) or not (false).
    #[serde(default)]
    pub exists: Option<bool>,
    /// The field is a number greater than this.
    #[serde(default)]
    pub gt: Option<f64>,
    /// The field is a number less than this.
    #[serde(default)]
    pub lt: Option<f64>,
}

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The conditions.
    pub conditions: Vec<ConditionConfig>,
    /// How conditions combine.
    #[serde(default, rename = "match")]
    pub combine: Match,
    /// Keep payloads that are not JSON (default: drop them).
    #[serde(default)]
    pub keep_invalid: bool,
}

#[derive(Debug, Clone)]
enum Test {
    Equals(Value),
    Exists(bool),
    Gt(f64),
    Lt(f64),
}

#[derive(Debug, Clone)]
struct Condition {
    pointer: String,
    test: Test,
}

impl Condition {
    fn holds(&self, doc: &Value) -> bool {
        let value = doc.pointer(&self.pointer);
        match &self.test {
            Test::Equals(expected) => value == Some(expected),
            Test::Exists(should) => value.is_some() == *should,
            Test::Gt(bound) => value.and_then(Value::as_f64).is_some_and(|v| v > *bound),
            Test::Lt(bound) => value.and_then(Value::as_f64).is_some_and(|v| v < *bound),
        }
    }
}

/// The filter.
#[derive(Debug)]
pub struct FilterJson {
    conditions: Vec<Condition>,
    combine: Match,
    keep_invalid: bool,
}

impl Filter for FilterJson {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.conditions.is_empty() {
            return Err("`conditions` must list at least one condition".into());
        }
        let mut conditions = Vec::with_capacity(config.conditions.len());
        for c in config.conditions {
            let tests = [
                c.equals.clone().map(Test::Equals),
                c.exists.map(Test::Exists),
                c.gt.map(Test::Gt),
                c.lt.map(Test::Lt),
            ];
            let mut given = tests.into_iter().flatten();
            let (Some(test), None) = (given.next(), given.next()) else {
                return Err(format!(
                    "condition on `{}` needs exactly one of `equals`, `exists`, `gt`, `lt`",
                    c.field
                ));
            };
            if c.field.is_empty() {
                return Err("a condition has an empty `field`".into());
            }
            conditions.push(Condition {
                pointer: sluice_sdk::json_pointer(&c.field),
                test,
            });
        }
        Ok(FilterJson {
            conditions,
            combine: config.combine,
            keep_invalid: config.keep_invalid,
        })
    }

    fn keep(&self, message: &Message<'_>) -> bool {
        let Ok(doc) = message.json_value() else {
            return self.keep_invalid;
        };
        match self.combine {
            Match::All => self.conditions.iter().all(|c| c.holds(&doc)),
            Match::Any => self.conditions.iter().any(|c| c.holds(&doc)),
        }
    }
}

sluice_sdk::export!(filter: FilterJson);

#[cfg(test)]
mod tests {
    use sluice_sdk::testing::{run_plugin, BatchBuilder, TestOutcome};
    use sluice_sdk::FilterPlugin;

    use super::*;

    fn run(config: &str, payloads: &[&str]) -> Result<Vec<TestOutcome>, String> {
        let batch = payloads
            .iter()
            .fold(BatchBuilder::new("orders"), |b, p| b.message(*p))
            .build();
        run_plugin::<FilterPlugin<FilterJson>>(config, &batch)
    }

    use TestOutcome::{Drop, Pass};

    #[test]
    fn equals_and_greater_than_all_must_hold() {
        let config = r#"{"conditions": [{"field": "region", "equals": "eu"}, {"field": "total", "gt": 100}]}"#;
        let got = run(
            config,
            &[
                r#"{"region": "eu", "total": 250}"#,
                r#"{"region": "eu", "total": 50}"#,
                r#"{"region": "us", "total": 250}"#,
                r#"{"region": "eu", "total": "250"}"#,
            ],
        )
        .unwrap();
        assert_eq!(got, vec![Pass, Drop, Drop, Drop]);
    }

    #[test]
    fn any_exists_and_nested_paths() {
        let config = r#"{"match": "any", "conditions": [
            {"field": "customer.vip", "equals": true},
            {"field": "/items/0/sku", "exists": true},
            {"field": "total", "lt": 1}
        ]}"#;
        let got = run(
            config,
            &[
                r#"{"customer": {"vip": true}}"#,
                r#"{"items": [{"sku": "A-1"}]}"#,
                r#"{"total": 0.5}"#,
                r#"{"customer": {"vip": false}, "items": []}"#,
            ],
        )
        .unwrap();
        assert_eq!(got, vec![Pass, Pass, Pass, Drop]);
    }

    #[test]
    fn exists_false_keeps_messages_without_the_field() {
        let config = r#"{"conditions": [{"field": "test", "exists": false}]}"#;
        assert_eq!(
            run(config, &[r#"{"a": 1}"#, r#"{"test": null}"#]).unwrap(),
            vec![Pass, Drop]
        );
    }

    #[test]
    fn malformed_payloads_are_dropped_or_kept_as_configured() {
        let config = r#"{"conditions": [{"field": "a", "exists": true}]}"#;
        assert_eq!(
            run(config, &["not json", "", "[1,2"]).unwrap(),
            vec![Drop, Drop, Drop]
        );
        let config = r#"{"keep_invalid": true, "conditions": [{"field": "a", "exists": true}]}"#;
        assert_eq!(
            run(config, &["not json", r#"{"b": 1}"#]).unwrap(),
            vec![Pass, Drop]
        );
        // A JSON document of another shape is not an error either.
        let config = r#"{"conditions": [{"field": "a.b", "gt": 1}]}"#;
        assert_eq!(
            run(config, &["42", r#"{"a": "str"}"#, r#"{"a": [1]}"#]).unwrap(),
            vec![Drop, Drop, Drop]
        );
    }

    #[test]
    fn bad_config_is_refused_clearly() {
        let err = run(r#"{"conditions": []}"#, &[]).unwrap_err();
        assert!(err.contains("at least one condition"), "{err}");
        let err = run(r#"{"conditions": [{"field": "a"}]}"#, &[]).unwrap_err();
        assert!(err.contains("exactly one of"), "{err}");
        let err = run(r#"{"conditions": [{"field": "a", "gt": 1, "lt": 2}]}"#, &[]).unwrap_err();
        assert!(err.contains("exactly one of"), "{err}");
        let err = run(r#"{"conditions": [{"field": "a", "gt": "x"}]}"#, &[]).unwrap_err();
        assert!(err.contains("invalid plugin config"), "{err}");
        let err = run(
            r#"{"match": "some", "conditions": [{"field": "a", "gt": 1}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(err.contains("unknown variant"), "{err}");
    }
}

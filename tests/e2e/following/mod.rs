//! Following one message: `sluice trace` over the broker's event record
//! (`record`), OpenTelemetry spans sent to an in-test OTLP collector
//! (`spans`), through a two-stage pipeline to a consumer group, and what
//! plugins log (`logs`).

mod logs;
mod record;
mod spans;

use sluice_tests::plugin_dist;

/// A validating stage, then a router by the `region` header, on
/// `orders.in`.
fn pipeline() -> String {
    format!(
        r#"
[[plugin]]
name = "validate-order"
path = "{validate}"
[plugin.config.schema]
type = "object"
required = ["id", "total"]
properties = {{ id = {{ type = "string" }}, total = {{ type = "number", minimum = 0 }} }}

[[plugin]]
name = "route-by-region"
path = "{route}"
config = {{ header = "region", prefix = "orders.", fallback = "orders.unrouted" }}

[[pipeline]]
topics = "orders.in"
stages = ["validate-order", "route-by-region"]
"#,
        validate = plugin_dist("validate_json_schema.wasm").display(),
        route = plugin_dist("route_by_header.wasm").display(),
    )
}

/// Applies the plugins and pipelines of `toml`, and `telemetry`.
fn configure(
    toml: &str,
    telemetry: impl FnOnce(&mut sluice::config::TelemetryConfig),
) -> impl FnOnce(&mut sluice::Config) {
    let plugins = crate::pipelines::with_plugins(toml);
    move |c| {
        plugins(c);
        telemetry(&mut c.telemetry);
    }
}

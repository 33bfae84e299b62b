//! Where the bench clients connect: the broker at `--server`, or one
//! started in this process on a temporary directory (`--embedded`), with
//! the bench pipelines configured when a pipeline scenario asks for them.

use anyhow::{bail, Context};
use sluice_client::{Client, ClientOptions, Trust};

use crate::cli::args::{BenchArgs, FsyncArg, Scenario};
use crate::cli::connect::trust;
use crate::config::{Config, FsyncPolicy};

/// The components the pipeline scenario loads from `--plugins-dir`.
const PIPELINE_PLUGINS: [&str; 5] = [
    "test_hostile.wasm",
    "validate_json_schema.wasm",
    "filter_json.wasm",
    "redact_pii.wasm",
    "route_by_header.wasm",
];

/// Where the clients connect.
pub struct Target {
    options: ClientOptions,
    /// Kept alive while the bench runs.
    embedded: Option<(crate::Running, tempfile::TempDir)>,
    /// Topics of the pipeline variants, when the broker has them.
    pub pipelines: bool,
}

impl Target {
    /// The broker the flags name, started first with `--embedded`.
    pub async fn new(args: &BenchArgs) -> anyhow::Result<Target> {
        if !args.embedded {
            let options = ClientOptions::new(args.client.server.clone())
                .trust(trust(&args.client)?)
                .client_name("sluice-bench");
            return Ok(Target {
                options,
                embedded: None,
                pipelines: false,
            });
        }
        let dir = tempfile::Builder::new().prefix("sluice-bench-").tempdir()?;
        let config = embedded_config(args, dir.path())?;
        let pipelines = !config.pipelines.is_empty();
        let running = crate::start(config)
            .await
            .context("failed to start the embedded broker")?;
        let options = ClientOptions::new(running.local_addr().to_string())
            .trust(Trust::CaFile(running.cert_path().to_path_buf()))
            .client_name("sluice-bench");
        Ok(Target {
            options,
            embedded: Some((running, dir)),
            pipelines,
        })
    }

    /// A new connection.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Client::connect(self.options.clone())
            .await
            .with_context(|| format!("failed to connect to {}", self.options.server))
    }

    /// Deletes `topic` after a timed run (`--duration`): seconds at full
    /// speed write gigabytes, and the next run should not start on a full
    /// disk. A run of `--count` keeps it (`cargo xtask bench-vs-nats
    /// --cluster` reads where its stream was placed afterwards).
    pub async fn clean_up(&self, args: &BenchArgs, topic: &str) {
        if args.duration.is_none() {
            return;
        }
        let deleted = match self.client().await {
            Ok(client) => {
                let deleted = client
                    .delete_topic(topic)
                    .await
                    .map_err(anyhow::Error::from);
                client.close().await;
                deleted
            }
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            eprintln!("bench: could not delete {topic} after the run: {e:#}");
        }
    }

    /// Stops the embedded broker, if there is one.
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some((running, _dir)) = self.embedded {
            running.stop().await?;
        }
        Ok(())
    }
}

impl From<FsyncArg> for FsyncPolicy {
    fn from(f: FsyncArg) -> FsyncPolicy {
        match f {
            FsyncArg::Always => FsyncPolicy::Always,
            FsyncArg::Interval => FsyncPolicy::Interval,
            FsyncArg::Never => FsyncPolicy::Never,
        }
    }
}

fn embedded_config(args: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<Config> {
    let mut text = String::from("[plugins]\nwatch = false\n");
    let wants_pipelines = args.scenarios.iter().any(|s| {
        matches!(
            s,
            Scenario::Pipeline | Scenario::PluginCosts | Scenario::All
        )
    });
    if wants_pipelines {
        let dist = std::path::absolute(&args.plugins_dir)?;
        for file in PIPELINE_PLUGINS {
            if !dist.join(file).exists() {
                bail!(
                    "the pipeline scenario needs {} (build the plugins with `cargo xtask plugins`, or pass --plugins-dir)",
                    dist.join(file).display()
                );
            }
        }
        text.push_str(&format!(
            r#"
[[plugin]]
name = "pass"
path = "{d}/test_hostile.wasm"
config = {{ mode = "pass" }}

[[plugin]]
name = "validate-order"
path = "{d}/validate_json_schema.wasm"
[plugin.config.schema]
type = "object"
required = ["id", "region", "total"]
[plugin.config.schema.properties]
id = {{ type = "string" }}
region = {{ type = "string", enum = ["eu", "us", "apac"] }}
total = {{ type = "number", minimum = 0 }}

[[plugin]]
name = "drop-test-orders"
path = "{d}/filter_json.wasm"
config = {{ conditions = [{{ field = "test", exists = false }}] }}

[[plugin]]
name = "redact-pii"
path = "{d}/redact_pii.wasm"
config = {{ fields = ["customer.phone"] }}

[[plugin]]
name = "route-by-region"
path = "{d}/route_by_header.wasm"
config = {{ header = "region", prefix = "bench.orders.", fallback = "bench.orders.unrouted" }}

[[plugin]]
name = "shadowed"
path = "{d}/test_hostile.wasm"
config = {{ mode = "pass" }}

[[plugin]]
name = "stateful"
path = "{d}/test_hostile.wasm"
config = {{ mode = "state" }}

[[pipeline]]
topics = "bench.pipeline.pass.>"
stages = ["pass"]

[[pipeline]]
topics = "bench.pipeline.shadowed.>"
stages = ["shadowed"]

[[pipeline]]
topics = "bench.pipeline.state.>"
stages = ["stateful"]

[[pipeline]]
topics = "bench.pipeline.orders.>"
stages = ["validate-order", "drop-test-orders", "redact-pii", "route-by-region"]
"#,
            d = dist.display()
        ));
    }
    let mut config = Config::parse(&text, "<bench>")?;
    config.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.data_dir = dir.join("data");
    config.storage.fsync = args.fsync.into();
    config.admin.enabled = false;
    if let Some(sampling) = args.sampling {
        config.telemetry.sampling = sampling;
        config.telemetry.endpoint = Some(args.otlp.clone());
    }
    config.telemetry.record.enabled = !args.no_record;
    config.validate()?;
    Ok(config)
}

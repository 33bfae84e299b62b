//! The command line of `sluice`: every subcommand's flags, and nothing
//! else. The subcommand modules read these types; this module reads none
//! of them (it is the leaf of `cli`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use super::connect::ClientArgs;
use super::flags::parse_header;
use super::reply::{ReplyArgs, ReqArgs};
use super::rollout::{CanaryArgs, PluginNameArgs, ShadowArgs};

/// sluice: a message broker programmed with WebAssembly, spoken to over QUIC.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker.
    Serve(ServeArgs),
    /// Publish messages.
    Pub(PubArgs),
    /// Subscribe to a topic or pattern and print what arrives.
    Sub(SubArgs),
    /// List, create, inspect and delete topics.
    Topics(TopicsArgs),
    /// List, inspect and reset consumer groups.
    Groups(GroupsArgs),
    /// Create and build WebAssembly plugins.
    Plugin(PluginArgs),
    /// Measure throughput and latency (against --server, or --embedded).
    Bench(BenchArgs),
    /// Make tokens and their hashes for `[[auth.principal]]`.
    Token(TokenArgs),
    /// Show what happened to a message: its stages, where it was stored,
    /// its deliveries, acks, nacks and dead letters.
    Trace(TraceArgs),
    /// Send a request and print its reply (exit 1 on no responders, a
    /// timeout or an error reply).
    Req(ReqArgs),
    /// Answer requests on a topic or pattern by running a command per
    /// request.
    Reply(ReplyArgs),
}

/// `sluice trace`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["at", "id", "trace"])))]
pub struct TraceArgs {
    /// The stored message, as TOPIC@OFFSET.
    pub at: Option<String>,
    /// Messages published with this message id (also those a stage
    /// rejected or dropped, which have no offset).
    #[arg(long)]
    pub id: Option<String>,
    /// Messages of this W3C trace id (32 hex digits).
    #[arg(long)]
    pub trace: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sluice token`
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: TokenAction,
}

/// `sluice token ...`
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Print the argon2 hash of a secret, for `token_hash` in the config.
    /// Without SECRET, the secret is read from the first line of standard
    /// input (keeps it out of shell history).
    Hash {
        /// The secret clients send with --token.
        secret: Option<String>,
    },
    /// Make a random secret and print it and its hash.
    Generate,
}

/// `sluice plugin`
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: PluginAction,
}

/// `sluice plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginAction {
    /// Create a plugin crate with a working example and its tests.
    New {
        /// Crate name (letters, digits, '-', '_').
        name: String,
        /// What the plugin does.
        #[arg(long, value_enum)]
        kind: PluginKind,
        /// Directory to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path to the sluice-sdk crate (default: the one this sluice was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate into a WebAssembly component and print its path.
    Build {
        /// The plugin's directory (default: the current one).
        dir: Option<PathBuf>,
    },
    /// Show the plugins loaded in a running broker: version, calls, errors, latency.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Connection flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print what a plugin logged (`_sluice.logs.NAME`): its log lines,
    /// stdout and stderr, with version, topic and message.
    Logs {
        /// The plugin.
        name: String,
        /// Keep printing new lines as they come.
        #[arg(long)]
        follow: bool,
        /// Only lines since then: a duration ago (10m) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Connection flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace a configured plugin's component in a running broker (every
    /// node of a cluster): checked, then hot-reloaded with no message lost.
    Deploy {
        /// The component (.wasm).
        file: PathBuf,
        /// The `[[plugin]]` it replaces.
        #[arg(long)]
        name: String,
        /// Connection flags.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a new version beside the current one on the same live batches:
    /// its outcomes are compared (see `plugin diff`), never acted on.
    Shadow(ShadowArgs),
    /// Give a new version a share of live traffic; rolled back
    /// automatically when it fails, rejects or slows down more than the
    /// current version.
    Canary(CanaryArgs),
    /// Show how a shadow differs from the current version (counts by kind
    /// and samples), or how a canary compares.
    Diff(PluginNameArgs),
    /// Make the shadow or canary the current version (zero-loss swap),
    /// kept across restarts until the plugin's file changes.
    Promote(PluginNameArgs),
    /// End a shadow or canary: the current version keeps all traffic.
    Rollback(PluginNameArgs),
    /// Run a component over messages from a file, with the broker's engine
    /// and limits but no broker, and print each outcome.
    Test {
        /// The component (.wasm).
        file: PathBuf,
        /// Messages, one per line: a JSON object with `payload` (and
        /// optional `key`, `headers`), or plain text used as the payload.
        #[arg(long)]
        input: PathBuf,
        /// The plugin's configuration, as JSON.
        #[arg(long, default_value = "{}")]
        config: String,
        /// The topic the messages are published to.
        #[arg(long, default_value = "test")]
        topic: String,
        /// Deadline of the call.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

/// The kinds `sluice plugin new --kind` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PluginKind {
    /// Keeps or drops messages.
    Filter,
    /// Turns each message into zero or more messages.
    Transform,
    /// Picks destination topics.
    Router,
    /// Accepts or rejects messages.
    Validator,
}

/// `sluice serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). Without it every setting takes its default.
    #[arg(long, short, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// QUIC listen address (overrides server.listen).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Data directory (overrides server.data_dir).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// Help of `sluice pub MESSAGE`.
pub const MESSAGE_HELP: &str =
    "The payload, a template: `{n}` is replaced by the message's number \
    (1 to --count). With --size it is padded with spaces to --size bytes. Without it (and \
    without --file or --size), each line of standard input is one message";

/// Help of `sluice pub --size`.
pub const SIZE_HELP: &str = "Payloads of exactly this many bytes (load tests): MESSAGE padded \
    with spaces, or without MESSAGE that many `x`. A MESSAGE longer than this once `{n}` is \
    replaced is refused before anything is sent, never truncated";

/// `text` for clap's help with its `{n}` intact. Clap turns a literal
/// `{n}` in help into a line break; with the `n` set in bold it does not
/// match, and plain (non-terminal) output drops the styling.
fn with_number(text: &str) -> String {
    let bold = clap::builder::styling::Style::new().bold();
    text.replace("{n}", &format!("{{{bold}n{bold:#}}}"))
}

/// `sluice pub`
#[derive(Debug, Args)]
pub struct PubArgs {
    /// Destination topic.
    pub topic: String,
    /// The payload template: [`MESSAGE_HELP`].
    #[arg(help = with_number(MESSAGE_HELP))]
    pub message: Option<String>,
    /// Message key (`{n}` is replaced as in the payload).
    #[arg(long, help = with_number("Message key (`{n}` is replaced as in the payload)"))]
    pub key: Option<String>,
    /// Header NAME=VALUE (repeatable).
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// De-duplication id (`{n}` is replaced as in the payload).
    #[arg(long, help = with_number("De-duplication id (`{n}` is replaced as in the payload)"))]
    pub id: Option<String>,
    /// Publish this many messages, numbered from 1.
    #[arg(long, short = 'n', default_value_t = 1)]
    pub count: u64,
    /// Read the payload from this file.
    #[arg(long, conflicts_with = "message")]
    pub file: Option<PathBuf>,
    /// Payloads of exactly this many bytes: [`SIZE_HELP`].
    #[arg(long, conflicts_with = "file", help = with_number(SIZE_HELP))]
    pub size: Option<usize>,
    /// Messages per publish request.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Publish requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Deliver no earlier than this long after the broker stores the
    /// message (e.g. 30s, 2h).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "at")]
    pub delay: Option<std::time::Duration>,
    /// Deliver no earlier than this time (RFC 3339, e.g.
    /// 2026-12-24T08:00:00Z).
    #[arg(long)]
    pub at: Option<String>,
    /// Time-to-live, counted from when the message is due: a message not
    /// delivered by then is not delivered (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<std::time::Duration>,
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sluice sub`
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Topic or pattern (`*` one token, `>` the rest).
    pub pattern: String,
    /// Where to start: earliest, latest, an offset, an RFC 3339 time, or a
    /// duration ago (`10m`). Default: latest for a subscription; earliest
    /// for a new consumer group (an existing group continues where it is).
    #[arg(long)]
    pub from: Option<String>,
    /// Exit after this many messages.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Print one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// A plugin loaded in the broker that filters or transforms what this
    /// subscription or group member receives (with --group, what it
    /// filters out is acked for this member).
    #[arg(long)]
    pub plugin: Option<String>,
    /// JSON config for this subscription's instance of --plugin (default:
    /// the plugin's configured one).
    #[arg(long, requires = "plugin")]
    pub plugin_config: Option<String>,
    /// Consume as a member of this consumer group (a work queue): each
    /// message goes to one member and is acked after it is printed.
    /// `--from` then sets where a new group starts.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// With --group: nack every message instead of acking it (testing retries).
    #[arg(long, requires = "group", conflicts_with = "reject")]
    pub nack: bool,
    /// With --group: reject every message to the dead-letter topic (testing).
    #[arg(long, requires = "group")]
    pub reject: bool,
    /// With --group: unsettled messages this member holds at once.
    #[arg(long, requires = "group", default_value_t = 64)]
    pub max_in_flight: u32,
    /// With --group, for a new group: one message per key in flight.
    #[arg(long, requires = "group")]
    pub key_ordered: bool,
    /// With --group, for a new group: deliveries before dead-lettering.
    #[arg(long, requires = "group")]
    pub max_deliver: Option<u32>,
    /// With --group, for a new group: redeliver unacked messages after this long.
    #[arg(long, requires = "group", value_parser = humantime::parse_duration)]
    pub ack_wait: Option<std::time::Duration>,
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sluice groups`
#[derive(Debug, Args)]
pub struct GroupsArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub action: Option<GroupsAction>,
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sluice groups ...`
#[derive(Debug, Subcommand)]
pub enum GroupsAction {
    /// List consumer groups with their lag and pending counts.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one group: members, per-topic position, lag, pending, redeliveries.
    Info {
        /// Group name.
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Move a group to a position (earliest, latest, offset, time); pending deliveries are forgotten.
    Reset {
        /// Group name.
        name: String,
        /// The new position.
        #[arg(long)]
        to: String,
    },
}

/// `sluice topics`
#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub action: Option<TopicsAction>,
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sluice topics ...`
#[derive(Debug, Subcommand)]
pub enum TopicsAction {
    /// List all topics.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Remove segments older than this (e.g. 7days, 12h).
        #[arg(long, value_parser = humantime::parse_duration)]
        max_age: Option<std::time::Duration>,
        /// Keep about this many bytes.
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Keep about this many messages.
        #[arg(long)]
        max_messages: Option<u64>,
        /// Segment file size in bytes.
        #[arg(long)]
        segment_bytes: Option<u64>,
        /// Remember message ids this long for de-duplication (0s: off).
        #[arg(long, value_parser = humantime::parse_duration)]
        dedup_window: Option<std::time::Duration>,
        /// Time-to-live of messages published without one, counted from
        /// when each is due (0s: they do not expire).
        #[arg(long, value_parser = humantime::parse_duration)]
        default_ttl: Option<std::time::Duration>,
        /// Consumer groups send messages that expired before they were
        /// delivered to the dead-letter topic (reason `expired`).
        #[arg(long)]
        dead_letter_expired: bool,
    },
    /// Delete a topic and all its messages.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Show one topic.
    Info {
        /// Topic name.
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

/// `sluice bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenarios to run, in order.
    #[arg(value_enum, required = true)]
    pub scenarios: Vec<Scenario>,
    /// Start a broker in this process on a temporary data directory
    /// (otherwise `--server` is used).
    #[arg(long)]
    pub embedded: bool,
    /// With --embedded: the broker's fsync policy.
    #[arg(long, value_enum, default_value = "always")]
    pub fsync: FsyncArg,
    /// With --embedded: trace this fraction of messages, spans to --otlp.
    #[arg(long)]
    pub sampling: Option<f64>,
    /// With --sampling: the OTLP/HTTP endpoint.
    #[arg(long, default_value = "http://127.0.0.1:4318")]
    pub otlp: String,
    /// With --embedded: keep no event record (`sluice trace`), to measure it.
    #[arg(long)]
    pub no_record: bool,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Messages per scenario (per run of a pipeline variant): 100,000
    /// when neither this nor --duration is given. With --duration, the
    /// most a scenario sends (its window ends early when they are through)
    /// and what `queue` preloads; without it, there is no bound and
    /// `queue` preloads for twice the warm-up and the window.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Run each scenario for --warmup, then this long a steady window, and
    /// report what the clients received or had acked inside the window
    /// only, per second of it (`latency`: the round trips of what was sent
    /// inside it). Without it a scenario runs --count messages and reports
    /// from its start to its last message.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// With --duration: how long each scenario runs before its window
    /// opens (connections, buffers and caches settle).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Messages per publish request.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Publish requests in flight per producer.
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Producers (`publish`), each on its own connection.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Subscribers (`pubsub`), each on its own connection.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Workers (`queue`), each on its own connection.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Connections (`connections`).
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// The broker's admin address (`connections`: read its memory from /metrics).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Messages per second (`latency`).
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// Longest one scenario may run; it then stops and reports what it measured.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub max_time: Duration,
    /// Where the example plugins are (`pipeline`): test_hostile.wasm and the
    /// four example components.
    #[arg(long, default_value = "plugins/dist")]
    pub plugins_dir: PathBuf,
    /// One JSON object per scenario on standard output instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Connection flags (without --embedded).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A scenario of `sluice bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Acked durable publish throughput.
    Publish,
    /// Live pub/sub fan-out throughput, as received.
    Pubsub,
    /// Consumer-group throughput with acks.
    Queue,
    /// Acked publish round trip at a fixed rate.
    Latency,
    /// Publish throughput with no plugin, a pass-through stage, the order pipeline.
    Pipeline,
    /// Open `--connections` idle connections and hold them; with `--admin`,
    /// the broker's resident memory before and while they are held.
    Connections,
    /// Every scenario above.
    All,
    /// Request-reply round trips: one echoing responder, `--producers`
    /// requester connections, one request at a time each (not part of
    /// `all`).
    Request,
    /// What plugin rollouts and state cost: a pass-through stage alone,
    /// with a shadow version beside it, and a stage doing one state get +
    /// set per message (`--embedded` only; not part of `all`).
    PluginCosts,
}

/// `sluice bench --fsync`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncArg {
    /// fsync before each ack (group commit).
    Always,
    /// fsync every 100 ms.
    Interval,
    /// Leave it to the OS.
    Never,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn pub_help_shows_the_number_placeholder() {
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand_mut("pub")
            .expect("pub")
            .render_help()
            .to_string();
        assert!(help.contains("a template: `{n}` is replaced"), "{help}");
        assert!(help.contains("once `{n}` is replaced is refused"), "{help}");
        assert!(help.contains("never truncated"), "{help}");
    }
}

//! The comparison's rows: each sluice figure beside its like-for-like
//! NATS figure, their ratio, the goal of issue 17 and whether it is met;
//! as markdown for the terminal and `target/bench-vs-nats.md`, and as
//! JSON beside the raw runs.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::plan::{
    bytes, count, Fsync, Key, Stages, Sync, CONNECTIONS, FAN_OUT, KIB, LATENCY_RATE, REQUESTERS,
    SMALL,
};
use super::stats::{compact, Figure};

/// A MiB in bytes, and in KiB.
const MIB: f64 = 1024.0 * 1024.0;
const KIB_PER_MIB: f64 = 1024.0;

/// What a comparison measured: every run's JSON by figure, the command
/// behind each, and the idle brokers' memory (KiB, one reading per broker
/// started).
#[derive(Debug, Default)]
pub struct Results {
    pub runs: BTreeMap<Key, Vec<Value>>,
    pub commands: BTreeMap<Key, String>,
    pub nats_idle_kib: Vec<u64>,
    pub sluice_idle_kib: Vec<u64>,
}

impl Results {
    fn values(&self, key: Key, field: impl Fn(&Value) -> Option<f64>) -> Vec<f64> {
        let runs = self.runs.get(&key).map_or(&[][..], Vec::as_slice);
        runs.iter().map(|v| field(v).unwrap_or(f64::NAN)).collect()
    }

    /// Messages per second, over the runs of `key`.
    fn rate(&self, key: Key) -> Option<Figure> {
        Figure::of(self.values(key, |v| v["msgs_per_s"].as_f64()))
    }

    /// The 99th percentile latency (µs), over the runs of `key`.
    fn p99(&self, key: Key) -> Option<Figure> {
        Figure::of(self.values(key, |v| v["p99_us"].as_f64()))
    }

    /// What holding the idle connections added to the broker (MiB).
    fn connections_mib(&self) -> Option<Figure> {
        let added = |v: &Value| {
            let (held, before) = (
                v["rss_held_bytes"].as_f64()?,
                v["rss_before_bytes"].as_f64()?,
            );
            Some((held - before) / MIB)
        };
        Figure::of(self.values(Key::SluiceConnections, added))
    }

    /// What a pass-through stage costs (% of the throughput without it),
    /// run by run: each run measures both, one after the other.
    fn pass_through_cost(&self, size: u32) -> Option<Figure> {
        let none = self.values(
            Key::Pipeline {
                stages: Stages::None,
                size,
            },
            |v| v["msgs_per_s"].as_f64(),
        );
        let pass = self.values(
            Key::Pipeline {
                stages: Stages::PassThrough,
                size,
            },
            |v| v["msgs_per_s"].as_f64(),
        );
        Figure::of(none.iter().zip(&pass).map(|(n, p)| 100.0 * (1.0 - p / n)))
    }
}

/// What a row's figures are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Rate,
    Micros,
    Mib,
    Percent,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Rate => compact(v),
            Unit::Micros => format!("{v:.0}"),
            Unit::Mib => format!("{v:.1}"),
            Unit::Percent => format!("{v:.1}"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Rate => " msg/s",
            Unit::Micros => " µs",
            Unit::Mib => " MiB",
            Unit::Percent => "%",
        }
    }

    /// `median (min–max) unit`; a single run without its range.
    fn figure(self, f: Option<Figure>) -> String {
        match f {
            None => "?".into(),
            Some(f) if f.runs == 1 => format!("{}{}", self.show(f.median), self.name()),
            Some(f) => format!(
                "{} ({}–{}){}",
                self.show(f.median),
                self.show(f.min),
                self.show(f.max),
                self.name()
            ),
        }
    }
}

/// A goal: a bound on the sluice/NATS ratio, or on sluice's own figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    RatioAtLeast(f64),
    RatioAtMost(f64),
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    /// Whether the row meets it; none when a figure is missing.
    fn met(self, sluice: Option<f64>, ratio: Option<f64>) -> Option<bool> {
        match self {
            Goal::RatioAtLeast(g) => ratio.map(|r| r >= g),
            Goal::RatioAtMost(g) => ratio.map(|r| r <= g),
            Goal::AtLeast(g) => sluice.map(|s| s >= g),
            Goal::AtMost(g) => sluice.map(|s| s <= g),
        }
    }

    fn show(self, unit: Unit) -> String {
        match self {
            Goal::RatioAtLeast(g) => format!("≥ {g}×"),
            Goal::RatioAtMost(g) => format!("≤ {g}×"),
            Goal::AtLeast(g) => format!("≥ {}{}", unit.show(g), unit.name()),
            Goal::AtMost(g) => format!("≤ {}{}", unit.show(g), unit.name()),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub what: String,
    pub unit: Unit,
    pub sluice: Option<Figure>,
    pub nats: Option<Figure>,
    /// Whether there is a NATS figure to compare with (`—` if not).
    pub compared: bool,
    /// NATS core without TLS, whose ratio is printed beside.
    pub plaintext: Option<Figure>,
    pub goal: Option<Goal>,
}

/// `a / b` of two medians, when both are there and `b` is not 0.
fn ratio(a: Option<Figure>, b: Option<Figure>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.median != 0.0 => Some(a.median / b.median),
        _ => None,
    }
}

impl Row {
    fn new(what: impl Into<String>, unit: Unit, sluice: Option<Figure>) -> Row {
        Row {
            what: what.into(),
            unit,
            sluice,
            nats: None,
            compared: false,
            plaintext: None,
            goal: None,
        }
    }

    fn nats(self, nats: Option<Figure>) -> Row {
        Row {
            nats,
            compared: true,
            ..self
        }
    }

    fn plaintext(self, plaintext: Option<Figure>) -> Row {
        Row { plaintext, ..self }
    }

    fn goal(self, goal: Goal) -> Row {
        Row {
            goal: Some(goal),
            ..self
        }
    }

    pub fn ratio(&self) -> Option<f64> {
        ratio(self.sluice, self.nats)
    }

    /// Whether the goal is met: none without a goal or a figure.
    pub fn met(&self) -> Option<bool> {
        let sluice = self.sluice.map(|f| f.median);
        self.goal.and_then(|g| g.met(sluice, self.ratio()))
    }

    fn markdown(&self) -> String {
        let mut ratios = self.ratio().map_or("—".into(), |r| format!("{r:.2}×"));
        if let Some(r) = ratio(self.sluice, self.plaintext) {
            ratios.push_str(&format!(" (plaintext {r:.2}×)"));
        }
        let nats = match self.compared {
            true => self.unit.figure(self.nats),
            false => "—".to_owned(),
        };
        let met = match (self.goal, self.met()) {
            (None, _) => "—",
            (Some(_), None) => "?",
            (Some(_), Some(true)) => "yes",
            (Some(_), Some(false)) => "**no**",
        };
        let goal = self.goal.map_or("—".into(), |g| g.show(self.unit));
        format!(
            "| {} | {} | {nats} | {ratios} | {goal} | {met} |\n",
            self.what,
            self.unit.figure(self.sluice),
        )
    }

    fn json(&self) -> Value {
        json!({
            "what": self.what,
            "unit": self.unit.name().trim(),
            "sluice": self.sluice.map(|f| f.json()),
            "nats": self.nats.map(|f| f.json()),
            "nats_plaintext": self.plaintext.map(|f| f.json()),
            "ratio": self.ratio(),
            "plaintext_ratio": ratio(self.sluice, self.plaintext),
            "goal": self.goal.map(|g| g.show(self.unit)),
            "met": self.met(),
        })
    }
}

/// Every row, in the order of the goals.
pub fn rows(r: &Results) -> Vec<Row> {
    use Goal::{AtLeast, AtMost, RatioAtLeast, RatioAtMost};
    let core = |tls: bool, size: u32, subscribers: u32| {
        r.rate(Key::NatsCore {
            tls,
            size,
            subscribers,
        })
    };
    let mut rows = Vec::new();
    for (size, subscribers, goal) in [(SMALL, 1, 1.0), (KIB, 1, 0.8), (KIB, FAN_OUT, 1.0)] {
        let what = match subscribers {
            1 => format!("live pub/sub 1:1, {}", bytes(size)),
            n => format!("fan-out 1 → {n} subscribers, {}", bytes(size)),
        };
        let sluice = r.rate(Key::SluicePubsub { size, subscribers });
        rows.push(
            Row::new(
                format!("{what} (fsync=never) vs NATS core with TLS"),
                Unit::Rate,
                sluice,
            )
            .nats(core(true, size, subscribers))
            .plaintext(core(false, size, subscribers))
            .goal(RatioAtLeast(goal)),
        );
    }
    let js = |sync: Sync, size: u32| r.rate(Key::NatsPublish { sync, size });
    for size in [KIB, SMALL] {
        let publish = |fsync: Fsync| r.rate(Key::SluicePublish { fsync, size });
        let durable = |fsync: Fsync, peer: &str| {
            format!(
                "durable publish {}, fsync={} vs JetStream {peer}",
                bytes(size),
                fsync.name()
            )
        };
        let pairs = [
            (
                Fsync::Always,
                Sync::Always,
                "sync_interval always",
                Some(20.0),
            ),
            (Fsync::Always, Sync::Default, "default", Some(2.0)),
            (Fsync::Interval, Sync::Default, "default", Some(1.5)),
            (Fsync::Never, Sync::Default, "default", None),
        ];
        for (fsync, sync, peer, goal) in pairs {
            let row =
                Row::new(durable(fsync, peer), Unit::Rate, publish(fsync)).nats(js(sync, size));
            rows.push(match goal {
                Some(g) => row.goal(RatioAtLeast(g)),
                None => row,
            });
        }
    }
    for fsync in [Fsync::Always, Fsync::Interval] {
        for workers in [1, 4] {
            let what = format!(
                "acked consume, {workers} worker{}, 1 KiB, fsync={} vs JetStream pull consumer",
                if workers == 1 { "" } else { "s" },
                fsync.name()
            );
            let sluice = r.rate(Key::SluiceConsume { fsync, workers });
            let nats = r.rate(Key::NatsConsume { workers });
            rows.push(
                Row::new(what, Unit::Rate, sluice)
                    .nats(nats)
                    .goal(RatioAtLeast(1.5)),
            );
        }
    }
    for (fsync, sync, peer, goal) in [
        (Fsync::Interval, Sync::Default, "default", 1.0),
        (Fsync::Always, Sync::Always, "sync_interval always", 0.5),
    ] {
        let what = format!(
            "p99 of acked publish at {LATENCY_RATE} msg/s, 1 KiB, fsync={} vs JetStream {peer}",
            fsync.name()
        );
        let sluice = r.p99(Key::SluiceLatency { fsync });
        let nats = r.p99(Key::NatsLatency { sync });
        rows.push(
            Row::new(what, Unit::Micros, sluice)
                .nats(nats)
                .goal(RatioAtMost(goal)),
        );
    }
    for conns in REQUESTERS {
        let on = count(conns, "connection");
        let sluice = Key::SluiceRequest { conns };
        let nats = |tls: bool| Key::NatsRequest { tls, conns };
        rows.push(
            Row::new(
                format!("request-reply round trips, {on}, 128 B vs NATS core with TLS"),
                Unit::Rate,
                r.rate(sluice),
            )
            .nats(r.rate(nats(true)))
            .plaintext(r.rate(nats(false))),
        );
        rows.push(
            Row::new(
                format!("p99 request-reply round trip, {on}, 128 B vs NATS core with TLS"),
                Unit::Micros,
                r.p99(sluice),
            )
            .nats(r.p99(nats(true)))
            .plaintext(r.p99(nats(false))),
        );
    }
    for size in [SMALL, KIB] {
        let what = format!(
            "one pass-through WASM stage, {}: throughput cost",
            bytes(size)
        );
        let cost = r.pass_through_cost(size);
        rows.push(Row::new(what, Unit::Percent, cost).goal(AtMost(10.0)));
    }
    for size in [KIB, SMALL] {
        let what = format!(
            "order pipeline (validate → filter → redact → route), {}",
            bytes(size)
        );
        let stages = Stages::Orders;
        let row = Row::new(what, Unit::Rate, r.rate(Key::Pipeline { stages, size }));
        rows.push(match size {
            KIB => row.goal(AtLeast(100_000.0)),
            _ => row,
        });
    }
    let idle = |kib: &[u64]| Figure::of(kib.iter().map(|&k| k as f64 / KIB_PER_MIB));
    rows.push(
        Row::new("idle broker RSS", Unit::Mib, idle(&r.sluice_idle_kib))
            .nats(idle(&r.nats_idle_kib))
            .goal(AtMost(30.0)),
    );
    let what = format!("{CONNECTIONS} idle connections: broker RSS added");
    rows.push(Row::new(what, Unit::Mib, r.connections_mib()).goal(AtMost(40.0)));
    rows
}

/// The table: `header`, the rows, then `notes` (one paragraph each).
pub fn markdown(header: &str, rows: &[Row], notes: &[String]) -> String {
    let mut t = format!("{header}\n\n");
    t.push_str("| scenario | sluice | NATS | sluice/NATS | goal | met |\n");
    t.push_str("|---|---:|---:|---:|---|---|\n");
    for row in rows {
        t.push_str(&row.markdown());
    }
    for note in notes {
        t.push_str(&format!("\n{note}\n"));
    }
    t
}

/// The latency percentiles and the pipeline's own rates, medians, as a
/// note under the table.
pub fn details(r: &Results) -> String {
    let percentiles = |key: Key| {
        let at = |q: &str| {
            Figure::of(r.values(key, |v| v[q].as_f64()))
                .map_or("?".into(), |f| format!("{:.0}", f.median))
        };
        format!("{key}: {}/{}/{}", at("p50_us"), at("p99_us"), at("p999_us"))
    };
    let latency = [
        Key::SluiceLatency {
            fsync: Fsync::Always,
        },
        Key::SluiceLatency {
            fsync: Fsync::Interval,
        },
        Key::NatsLatency { sync: Sync::Always },
        Key::NatsLatency {
            sync: Sync::Default,
        },
    ]
    .map(percentiles)
    .join("; ");
    let mut rates = Vec::new();
    for size in [SMALL, KIB] {
        for stages in [Stages::None, Stages::PassThrough] {
            let key = Key::Pipeline { stages, size };
            rates.push(format!("{key}: {}", Unit::Rate.figure(r.rate(key))));
        }
    }
    format!(
        "Acked publish latency p50/p99/p99.9 (µs, medians): {latency}.\n\nPipeline throughput (fsync=never, embedded): {}.",
        rates.join("; ")
    )
}

/// The rows as JSON.
pub fn json_rows(rows: &[Row]) -> Value {
    Value::Array(rows.iter().map(Row::json).collect())
}

/// Every run, by figure, with the command that made it.
pub fn json_runs(r: &Results) -> Value {
    let figures = r.runs.iter().map(|(key, runs)| {
        json!({ "figure": key.to_string(), "command": r.commands.get(key), "runs": runs })
    });
    json!({
        "figures": figures.collect::<Vec<_>>(),
        "idle_rss_kib": { "nats": r.nats_idle_kib, "sluice": r.sluice_idle_kib },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(v: f64) -> Option<Figure> {
        Figure::of([v])
    }

    #[test]
    fn goals_bound_the_ratio_or_the_figure() {
        assert_eq!(Goal::RatioAtLeast(1.5).met(None, Some(1.5)), Some(true));
        assert_eq!(Goal::RatioAtLeast(1.5).met(None, Some(1.49)), Some(false));
        assert_eq!(Goal::RatioAtMost(0.5).met(None, Some(0.4)), Some(true));
        assert_eq!(Goal::AtMost(30.0).met(Some(31.0), None), Some(false));
        assert_eq!(Goal::AtLeast(100_000.0).met(Some(1e5), None), Some(true));
        assert_eq!(Goal::AtLeast(1.0).met(None, Some(9.0)), None);
    }

    #[test]
    fn a_row_pairs_medians_and_prints_the_plaintext_ratio_beside() {
        let row = Row::new("pub/sub", Unit::Rate, Figure::of([900.0, 1000.0, 1100.0]))
            .nats(figure(800.0))
            .plaintext(figure(1250.0))
            .goal(Goal::RatioAtLeast(1.0));
        assert_eq!(row.ratio(), Some(1.25));
        assert_eq!(row.met(), Some(true));
        let line = row.markdown();
        assert!(line.contains("| 1.00k (900–1.10k) msg/s |"), "{line}");
        assert!(line.contains("1.25× (plaintext 0.80×)"), "{line}");
        assert!(line.ends_with("| ≥ 1× | yes |\n"), "{line}");
        let missing = Row::new("x", Unit::Rate, None)
            .nats(figure(1.0))
            .goal(Goal::RatioAtLeast(1.0));
        assert!(missing
            .markdown()
            .contains("| ? | 1 msg/s | — | ≥ 1× | ? |"));
        let alone = Row::new("rss", Unit::Mib, figure(31.0)).goal(Goal::AtMost(30.0));
        assert!(alone
            .markdown()
            .contains("| 31.0 MiB | — | — | ≤ 30.0 MiB | **no** |"));
    }

    #[test]
    fn the_pass_through_cost_pairs_the_runs() {
        let mut r = Results::default();
        let size = KIB;
        let put = |r: &mut Results, stages, rates: &[f64]| {
            let runs = rates.iter().map(|v| json!({ "msgs_per_s": v })).collect();
            r.runs.insert(Key::Pipeline { stages, size }, runs);
        };
        put(&mut r, Stages::None, &[100.0, 200.0, 400.0]);
        put(&mut r, Stages::PassThrough, &[50.0, 150.0, 400.0]);
        let cost = r.pass_through_cost(size).unwrap();
        assert_eq!((cost.median, cost.min, cost.max), (25.0, 0.0, 50.0));
    }

    #[test]
    fn every_row_has_a_number_when_every_figure_was_measured() {
        let mut r = Results::default();
        let run = json!({
            "msgs_per_s": 1000.0, "p50_us": 50, "p99_us": 100, "p999_us": 200,
            "rss_before_bytes": 10 * 1048576, "rss_held_bytes": 30 * 1048576,
        });
        for stage in super::super::plan::stages() {
            for job in stage.jobs {
                for key in job.keys {
                    r.runs
                        .insert(key, vec![run.clone(), run.clone(), run.clone()]);
                }
            }
        }
        r.nats_idle_kib = vec![20_000; 3];
        r.sluice_idle_kib = vec![10_000; 3];
        let rows = rows(&r);
        assert_eq!(rows.len(), 3 + 8 + 4 + 2 + 4 + 2 + 2 + 2);
        for row in &rows {
            let line = row.markdown();
            assert!(!line.contains('?'), "{line}");
        }
        assert!(!details(&r).contains('?'));
    }
}

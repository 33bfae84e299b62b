use bytes::Bytes;

use super::super::answer::decode_headers;
use super::super::{fixture, hostile};
use super::*;
use crate::trace::record::StepOutcome;

#[test]
fn a_log_line_about_a_message_names_its_trace_and_offset() {
    use super::super::logs::Handling;
    let records = [
        NewRecord::default(),
        NewRecord {
            headers: vec![(
                "traceparent".into(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            )],
            ..NewRecord::default()
        },
    ];
    let mut batch = to_batch("t", records.iter(), 0);
    batch.flags[1] |= 2;
    batch.offsets[1] = 7;
    assert_eq!(batch.message(0), Some((None, None)));
    assert_eq!(
        batch.message(1),
        Some((Some("4bf92f3577b34da6a3ce929d0e0e4736".into()), Some(7)))
    );
    assert_eq!(batch.message(2), None);
}

#[test]
fn batches_are_laid_out_flat() {
    let records = [
        NewRecord {
            key: Some(Bytes::from_static(b"k")),
            headers: vec![("a".into(), "1".into())],
            payload: Bytes::from_static(b"hello"),
            id: None,
        },
        NewRecord {
            payload: Bytes::from_static(b"!"),
            ..NewRecord::default()
        },
    ];
    let b = to_batch("t", records.iter(), 5);
    assert_eq!(b.payloads, b"hello!");
    assert_eq!(b.payload_ends, vec![5, 6]);
    assert_eq!(b.key_ends, vec![1, 1]);
    assert_eq!(b.flags, vec![1, 0]);
    assert_eq!(
        decode_headers(&b.headers[..b.header_ends[0] as usize]).unwrap(),
        vec![("a".to_owned(), "1".to_owned())]
    );
    assert_eq!(b.timestamps, vec![5, 5]);
}

/// A pipeline on `t` of the one plugin (`hostile`) of `registry`.
fn one_stage(registry: &super::super::registry::PluginRegistry, on_error: OnError) -> Pipeline {
    Pipeline {
        pattern: Pattern::parse("t").unwrap(),
        stages: vec![registry.current().plugins["hostile"].clone()],
        rollouts: vec![None],
        on_error,
        version_header: false,
        last_run: LastRun::default(),
    }
}

/// A pipeline of one `test_hostile` stage in `mode`, and what it makes
/// of three messages (kept alive: the registry's cache dir).
fn run_hostile(mode: &str, on_error: OnError) -> (Vec<NewRecord>, Vec<Disposition>) {
    let (registry, _dir) = hostile(mode);
    let pipeline = one_stage(&registry, on_error);
    let records: Vec<NewRecord> = ["a", "b", "c"]
        .into_iter()
        .map(|p| NewRecord {
            payload: Bytes::from(p),
            id: Some(format!("id-{p}")),
            ..NewRecord::default()
        })
        .collect();
    let (dispositions, _) = pipeline.run("t", records.clone(), 0);
    (records, dispositions)
}

#[test]
fn a_pipeline_runs_on_an_async_worker_only_after_a_quick_run() {
    let (registry, _dir) = hostile("loop");
    let pipeline = one_stage(&registry, OnError::Drop);
    assert!(!pipeline.runs_quickly(), "a new pipeline's cost is unknown");
    pipeline.last_run.record(Duration::from_micros(20));
    assert!(pipeline.runs_quickly());
    // A stage that spins to its deadline (100 ms) makes it slow again.
    let records = vec![NewRecord::default()];
    let (dispositions, report) = pipeline.run("t", records, 0);
    assert!(dispositions[0].outputs.is_empty(), "dropped on the timeout");
    assert!(
        report.runs[0].error.is_some(),
        "the stage's error is reported"
    );
    assert_eq!(report.steps.len(), 1);
    assert_eq!(report.steps[0].outcome, StepOutcome::Failed);
    assert!(!pipeline.runs_quickly());
}

#[test]
fn well_formed_replacements_go_on_in_place_of_the_message() {
    let (records, dispositions) = run_hostile("stamp", OnError::DeadLetter);
    for (record, d) in records.iter().zip(&dispositions) {
        let [(Destination::Own, stored)] = &d.outputs[..] else {
            panic!("replaced: {d:?}");
        };
        assert_eq!((&stored.payload, &stored.id), (&record.payload, &record.id));
        assert!(stored.headers.iter().any(|(n, _)| n == "x-stamp"));
    }
}

/// Only the last message's replacement is malformed; the whole batch is
/// handled by `on_error`, like a trap, and nothing is replaced.
#[test]
fn a_malformed_replacement_fails_the_stage_for_the_whole_batch() {
    for mode in ["replace-past-end", "replace-bad-headers"] {
        let (records, dispositions) = run_hostile(mode, OnError::DeadLetter);
        for (record, d) in records.iter().zip(&dispositions) {
            match &d.outputs[..] {
                [(Destination::DeadLetter { reason, stage }, original)] => {
                    assert_eq!(stage, "hostile");
                    assert!(reason.contains("malformed replacement"), "{reason}");
                    assert_eq!(original, record, "the message as published");
                }
                other => panic!("{mode}: dead-lettered: {other:?}"),
            }
            assert_eq!(d.rejected, None);
        }

        let (_, dispositions) = run_hostile(mode, OnError::Reject);
        for d in &dispositions {
            let reason = d.rejected.as_deref().expect("rejected");
            assert!(reason.contains("malformed replacement"), "{reason}");
            assert!(d.outputs.is_empty());
        }

        let (_, dispositions) = run_hostile(mode, OnError::Drop);
        assert!(dispositions.iter().all(|d| *d == Disposition::default()));

        let (records, dispositions) = run_hostile(mode, OnError::Pass);
        for (record, d) in records.iter().zip(&dispositions) {
            assert_eq!(d.outputs, vec![(Destination::Own, record.clone())]);
        }
    }
}

/// A quick pipeline runs on a tokio worker itself; a plugin that prints
/// there (here: a log line and a line on stdout, as a panic message
/// would) must not reach wasmtime-wasi's `block_on`, which panics on a
/// worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_plugin_that_prints_on_an_async_worker_runs_to_the_end() {
    let (registry, _dir) = hostile("log");
    let pipeline = one_stage(&registry, OnError::Reject);
    for _ in 0..3 {
        let records = vec![NewRecord::default(), NewRecord::default()];
        let (dispositions, report) = pipeline.run("t", records, 0);
        assert!(report.runs.iter().all(|run| run.error.is_none()));
        assert!(dispositions.iter().all(|d| d.outputs.len() == 1), "passed");
    }
}

/// A plugin that sleeps is told it may not wait (a trap, its batch's
/// stage failed) instead of reaching wasmtime-wasi's `block_on`, which
/// panics on a worker; its other batches pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_plugin_that_tries_to_wait_fails_its_batch_on_an_async_worker() {
    let (registry, _dir) = fixture("test_sleepy.wasm", "{}");
    let pipeline = one_stage(&registry, OnError::Reject);
    let record = |payload: &'static str| NewRecord {
        payload: Bytes::from(payload),
        ..NewRecord::default()
    };
    let (dispositions, report) = pipeline.run("t", vec![record("x")], 0);
    assert!(report.runs.iter().all(|run| run.error.is_none()));
    assert_eq!(dispositions[0].outputs.len(), 1, "passed");
    let (dispositions, report) = pipeline.run("t", vec![record("nap")], 0);
    let error = report.runs[0].error.clone().expect("the stage failed");
    assert!(format!("{error:?}").contains("may not wait"), "{error:?}");
    assert!(dispositions[0].outputs.is_empty(), "rejected");
    let (dispositions, _) = pipeline.run("t", vec![record("y")], 0);
    assert_eq!(dispositions[0].outputs.len(), 1, "the next batch passes");
}

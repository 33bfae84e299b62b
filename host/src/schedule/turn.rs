//! [`Turn`]: whether this node fires due messages. On one machine always;
//! in cluster mode the node holding the lease, a key in the JetStream
//! bucket `sluice-schedule-lease` written with compare-and-set (JetStream
//! keeps the consensus; sluice writes none of its own).
//!
//! The holder renews every second. Another node takes the lease over once
//! it has seen the same revision for [`TAKEOVER`] by its own clock, and a
//! holder that could not renew for [`FENCE`] stops firing, so two nodes
//! fire at once only across a pause longer than the difference; what they
//! both fire is de-duplicated by message id. A node stopping cleanly
//! deletes the key, so another takes over at its next renewal.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The lease's bucket.
pub(crate) const LEASE_BUCKET: &str = "sluice-schedule-lease";
/// The lease's key; its value is the holder's node name.
const KEY: &str = "firer";
/// How often the holder renews and the others look.
const RENEW: Duration = Duration::from_secs(1);
/// How long a holder fires without a renewal.
const FENCE: Duration = Duration::from_secs(3);
/// How long a revision must stand still before another node takes over.
const TAKEOVER: Duration = Duration::from_secs(5);

/// Whether this node fires; see the module.
pub(crate) struct Turn {
    mine: watch::Receiver<bool>,
    /// One machine: keeps `mine` open (always true).
    _always: Option<watch::Sender<bool>>,
    /// Cluster mode: the task holding the lease, and its stop.
    lease: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
}

impl Turn {
    /// One machine: always this node's turn.
    pub(crate) fn always() -> Turn {
        let (tx, rx) = watch::channel(true);
        Turn {
            mine: rx,
            _always: Some(tx),
            lease: None,
        }
    }

    /// Cluster mode: this node's turn while it holds the lease in `bucket`
    /// under the name `node`.
    pub(crate) fn lease(bucket: kv::Store, node: String) -> Turn {
        let (tx, rx) = watch::channel(false);
        let stop = CancellationToken::new();
        let task = tokio::spawn(hold(bucket, node, tx, stop.clone()));
        Turn {
            mine: rx,
            _always: None,
            lease: Some((task, stop)),
        }
    }

    /// Whether this node fires now.
    pub(crate) fn is_mine(&self) -> bool {
        *self.mine.borrow()
    }

    /// Changes of [`Turn::is_mine`].
    pub(crate) fn changes(&self) -> watch::Receiver<bool> {
        self.mine.clone()
    }

    /// Gives the lease up (cluster mode).
    pub(crate) async fn release(self) {
        if let Some((task, stop)) = self.lease {
            stop.cancel();
            let _ = task.await;
        }
    }
}

/// Takes, renews and finally gives up the lease.
async fn hold(bucket: kv::Store, node: String, mine: watch::Sender<bool>, stop: CancellationToken) {
    let mut held_until: Option<Instant> = None;
    let mut seen: Option<(u64, Instant)> = None;
    loop {
        let asked = Instant::now();
        match try_hold(&bucket, &node, &mut seen).await {
            Ok(true) => held_until = Some(asked + FENCE),
            Ok(false) => held_until = None,
            Err(error) => tracing::debug!(%error, "schedule lease: cannot reach the bucket"),
        }
        let now_mine = held_until.is_some_and(|until| Instant::now() < until);
        if *mine.borrow() != now_mine {
            if now_mine {
                tracing::info!(%node, "this node fires the delayed messages that come due");
            } else {
                tracing::info!(%node, "this node no longer fires delayed messages");
            }
            mine.send_replace(now_mine);
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(RENEW) => {}
        }
    }
    if mine.send_replace(false) {
        if let Err(error) = bucket.delete(KEY).await {
            tracing::debug!(%error, "schedule lease: cannot give it up; another node takes it over when it runs out");
        }
    }
}

/// One look at the lease: true if this node holds it afterwards.
async fn try_hold(
    bucket: &kv::Store,
    node: &str,
    seen: &mut Option<(u64, Instant)>,
) -> Result<bool, String> {
    let value = Bytes::copy_from_slice(node.as_bytes());
    let entry = bucket
        .entry(KEY)
        .await
        .map_err(|e| e.to_string())?
        .filter(|e| e.operation == kv::Operation::Put);
    let Some(entry) = entry else {
        return match bucket.create(KEY, value).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.to_string()),
        };
    };
    let holder = entry.value == node.as_bytes();
    if !holder {
        match seen {
            Some((revision, since)) if *revision == entry.revision => {
                if since.elapsed() < TAKEOVER {
                    return Ok(false);
                }
            }
            _ => {
                *seen = Some((entry.revision, Instant::now()));
                return Ok(false);
            }
        }
        tracing::info!(holder = %String::from_utf8_lossy(&entry.value), "schedule lease: the holder stopped renewing it; taking it over");
    }
    match bucket.update(KEY, value, entry.revision).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

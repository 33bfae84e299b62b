//! One group as one node sees it: its members on this node and the
//! deliveries they hold. JetStream keeps the group's position and what is
//! acknowledged; the node keeps what only it can know, which delivery of a
//! message it handed to whom, so that a settlement is applied to the
//! delivery it answers and to no other.
//!
//! JetStream acknowledges by stream sequence and does not check which
//! delivery an acknowledgement is for. So a settlement is applied only by
//! the node that holds the delivery, for the member it went to and the
//! attempt in flight; any other (a connection that failed over, an attempt
//! whose ack wait ran out and that JetStream may have handed to another
//! node) is refused as stale, clearly, and the message is delivered again.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::Message;
use sluice_proto::{GroupOptions, MemberInfo, Pattern, SettleAction};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::BrokerError;
use crate::groups::policy::{self, AfterFailure, Staleness};
use crate::groups::{store_dead_letter, GroupDelivery, SettleItem};
use crate::store::{Record, Store};
use crate::sync::lock;

/// A message of a topic: (topic, offset).
pub(super) type MessageId = (Arc<str>, u64);

/// A member on this node.
pub(super) struct MemberEntry {
    pub client: String,
    pub max_in_flight: u32,
    pub delivered: u64,
    pub tx: mpsc::UnboundedSender<GroupDelivery>,
    pub stop: CancellationToken,
}

/// A delivery a member of this node holds.
pub(super) struct InFlight {
    member: u64,
    attempt: u32,
    deadline: Instant,
    message: Message,
    record: Record,
    /// One unit of the member's credit, given back when it ends.
    _credit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct State {
    members: HashMap<u64, MemberEntry>,
    in_flight: HashMap<MessageId, InFlight>,
    /// In-flight deliveries by deadline.
    deadlines: BTreeSet<(Instant, MessageId)>,
}

/// One group on this node.
pub(super) struct Group {
    pub name: Arc<str>,
    pub pattern: Pattern,
    pub options: GroupOptions,
    store: Arc<dyn Store>,
    /// Where dead letters are recorded for `sluice trace`.
    record: Arc<crate::trace::Journal>,
    state: Mutex<State>,
    /// Woken when an earlier deadline is set.
    wake: Notify,
    pub stop: CancellationToken,
    pub redeliveries: AtomicU64,
    pub dead_lettered: AtomicU64,
}

/// What to do with a delivery once it is out of the table.
enum Outcome {
    Ack,
    Fail {
        reason: String,
        delay: Option<Duration>,
    },
    DeadLetter(String),
    InProgress,
}

impl Group {
    pub fn new(
        name: &str,
        pattern: Pattern,
        options: GroupOptions,
        store: Arc<dyn Store>,
        record: Arc<crate::trace::Journal>,
    ) -> Group {
        Group {
            record,
            name: Arc::from(name),
            pattern,
            options,
            store,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            stop: CancellationToken::new(),
            redeliveries: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
        }
    }

    /// Adds member `id`.
    pub fn add_member(&self, id: u64, entry: MemberEntry) {
        lock(&self.state).members.insert(id, entry);
    }

    /// The members on this node.
    pub fn members(&self) -> Vec<MemberInfo> {
        let state = lock(&self.state);
        let mut members: Vec<MemberInfo> = state
            .members
            .iter()
            .map(|(id, m)| MemberInfo {
                id: *id,
                client: m.client.clone(),
                in_flight: state.in_flight.values().filter(|f| f.member == *id).count() as u32,
                max_in_flight: m.max_in_flight,
                delivered: m.delivered,
            })
            .collect();
        members.sort_by_key(|m| m.id);
        members
    }

    /// Hands `message` (attempt `attempt` of `record` on `topic`) to
    /// member `member`. Gives the message back when the member is gone.
    pub fn deliver(
        &self,
        member: u64,
        topic: Arc<str>,
        record: Record,
        attempt: u32,
        message: Message,
        credit: OwnedSemaphorePermit,
    ) -> Option<Message> {
        let mut state = lock(&self.state);
        let Some(entry) = state.members.get_mut(&member) else {
            return Some(message);
        };
        let delivery = GroupDelivery {
            topic: topic.clone(),
            record: record.clone(),
            attempt,
        };
        if entry.tx.send(delivery).is_err() {
            return Some(message);
        }
        entry.delivered += 1;
        let deadline = Instant::now() + policy::ack_wait(&self.options);
        let id = (topic, record.offset);
        let earliest = state.deadlines.first().map(|(d, _)| *d);
        // JetStream handed out again a message this node still held (its
        // own timer ran first): the older delivery is over.
        if let Some(old) = state.in_flight.remove(&id) {
            state.deadlines.remove(&(old.deadline, id.clone()));
        }
        state.deadlines.insert((deadline, id.clone()));
        state.in_flight.insert(
            id,
            InFlight {
                member,
                attempt,
                deadline,
                message,
                record,
                _credit: credit,
            },
        );
        drop(state);
        if earliest.is_none_or(|e| deadline < e) {
            self.wake.notify_one();
        }
        None
    }

    /// Settles `items` for one of `members`: one result per item.
    pub async fn settle(
        &self,
        members: &[u64],
        items: Vec<SettleItem>,
    ) -> Vec<Result<(), BrokerError>> {
        let mut taken = Vec::with_capacity(items.len());
        {
            let mut state = lock(&self.state);
            for item in items {
                taken.push(self.take_for_settle(&mut state, members, item));
            }
        }
        // Each is confirmed by the server; they go out together, so a batch
        // costs one round trip, not one per message.
        futures_util::future::join_all(taken.into_iter().map(|taken| async move {
            match taken {
                Ok((id, flight, outcome)) => self.finish(id, flight, outcome).await,
                Err(e) => Err(e),
            }
        }))
        .await
    }

    fn take_for_settle(
        &self,
        state: &mut State,
        members: &[u64],
        item: SettleItem,
    ) -> Result<(MessageId, Option<InFlight>, Outcome), BrokerError> {
        let id: MessageId = (Arc::from(item.topic.as_str()), item.offset);
        let held = state.in_flight.get(&id);
        if let Some(stale) = Staleness::of(
            held.map(|f| f.member),
            held.map_or(0, |f| f.attempt),
            members,
            item.attempt,
        ) {
            return Err(BrokerError::StaleSettle(format!(
                "message {}@{} of group {:?} cannot be settled here: {stale} (in cluster mode, a delivery is settled through the node and connection it came on; after a failover it is delivered again)",
                item.topic, item.offset, self.name
            )));
        }
        let outcome = match item.action {
            SettleAction::Ack => Outcome::Ack,
            SettleAction::Nack { delay_ms } => Outcome::Fail {
                reason: "nacked".into(),
                delay: delay_ms.map(Duration::from_millis),
            },
            SettleAction::Reject { reason } => Outcome::DeadLetter(policy::rejected(&reason)),
            SettleAction::InProgress => {
                let deadline = Instant::now() + policy::ack_wait(&self.options);
                if let Some(flight) = state.in_flight.get_mut(&id) {
                    state.deadlines.remove(&(flight.deadline, id.clone()));
                    flight.deadline = deadline;
                    state.deadlines.insert((deadline, id.clone()));
                }
                return Ok((id, None, Outcome::InProgress));
            }
        };
        let flight = state.in_flight.remove(&id);
        if let Some(f) = &flight {
            state.deadlines.remove(&(f.deadline, id.clone()));
        }
        Ok((id, flight, outcome))
    }

    /// Carries a settlement out on JetStream; resolves when it is durable.
    async fn finish(
        &self,
        id: MessageId,
        flight: Option<InFlight>,
        outcome: Outcome,
    ) -> Result<(), BrokerError> {
        let failed = |e: &dyn std::fmt::Display| {
            BrokerError::Internal(format!(
                "cannot settle {}@{} of group {:?} on the cluster: {e}; it will be delivered again",
                id.0, id.1, self.name
            ))
        };
        match outcome {
            Outcome::InProgress => {
                let message = lock(&self.state)
                    .in_flight
                    .get(&id)
                    .map(|f| f.message.clone());
                if let Some(message) = message {
                    message
                        .ack_with(AckKind::Progress)
                        .await
                        .map_err(|e| failed(&e))?;
                }
                Ok(())
            }
            Outcome::Ack => {
                let Some(flight) = flight else { return Ok(()) };
                flight.message.double_ack().await.map_err(|e| failed(&e))
            }
            Outcome::Fail { reason, delay } => {
                let Some(flight) = flight else { return Ok(()) };
                self.fail(&id.0, flight, &reason, delay).await;
                Ok(())
            }
            Outcome::DeadLetter(reason) => {
                let Some(flight) = flight else { return Ok(()) };
                self.dead_letter(&id.0, flight, &reason).await;
                Ok(())
            }
        }
    }

    /// A delivery that failed: delivered again after the policy's delay,
    /// or dead-lettered when it has had its deliveries.
    pub async fn fail(&self, topic: &str, flight: InFlight, reason: &str, delay: Option<Duration>) {
        match policy::after_failure(&self.options, flight.attempt, reason, delay) {
            AfterFailure::Redeliver { after } => {
                self.redeliveries.fetch_add(1, Ordering::Relaxed);
                nak(&flight.message, after).await;
            }
            AfterFailure::DeadLetter { reason } => self.dead_letter(topic, flight, &reason).await,
        }
    }

    /// Stores the dead letter, then ends the message (TERM). If the dead
    /// letter cannot be stored the message is delivered again later.
    async fn dead_letter(&self, topic: &str, flight: InFlight, reason: &str) {
        let stored = self
            .store_letter(topic, &flight.record, flight.attempt, reason)
            .await;
        match stored {
            Ok(()) => {
                if let Err(e) = flight.message.double_ack_with(AckKind::Term).await {
                    tracing::warn!(group = %self.name, %topic, offset = flight.record.offset, error = %e, "dead-lettered, but ending the message failed; it may be delivered again and is then dead-lettered once more under the same id");
                }
            }
            Err(e) => {
                tracing::error!(group = %self.name, %topic, offset = flight.record.offset, error = %e, "cannot store the dead letter; the message will be delivered again");
                nak(&flight.message, DEAD_LETTER_RETRY).await;
            }
        }
    }

    /// Whether `topic` dead-letters the messages that expired.
    pub fn dead_letters_expired(&self, topic: &str) -> bool {
        self.store
            .topic(topic)
            .is_some_and(|t| t.dead_letter_expired)
    }

    /// Stores the dead letter of `record`; its id makes a second copy (the
    /// same letter stored again after a failover) a duplicate.
    pub async fn store_letter(
        &self,
        topic: &str,
        record: &Record,
        attempt: u32,
        reason: &str,
    ) -> Result<(), crate::store::StoreError> {
        let dlq = self
            .options
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| crate::dead_letter::topic_for(topic));
        let mut letter = crate::dead_letter::from_group(record, topic, &self.name, attempt, reason);
        letter.id = Some(format!(
            "sluice-dlq:{}:{topic}:{}",
            self.name, record.offset
        ));
        let at = store_dead_letter(&*self.store, &dlq, letter).await?;
        crate::trace::record::dead_lettered(
            &self.record,
            &self.name,
            (topic, record.offset),
            attempt,
            reason,
            (&dlq, at),
        );
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        tracing::info!(group = %self.name, %topic, offset = record.offset, dead_letter_topic = %dlq, %reason, "message dead-lettered");
        Ok(())
    }

    /// Removes member `id`; the deliveries it held are handed back.
    pub fn remove_member(&self, id: u64) -> Vec<InFlight> {
        let mut state = lock(&self.state);
        if let Some(member) = state.members.remove(&id) {
            member.stop.cancel();
        }
        let ids: Vec<MessageId> = state
            .in_flight
            .iter()
            .filter(|(_, f)| f.member == id)
            .map(|(id, _)| id.clone())
            .collect();
        let mut held = Vec::with_capacity(ids.len());
        for mid in ids {
            if let Some(f) = state.in_flight.remove(&mid) {
                state.deadlines.remove(&(f.deadline, mid));
                held.push(f);
            }
        }
        held
    }

    /// Forgets every delivery held (the group was reset); returns them.
    pub fn forget_all(&self) -> Vec<InFlight> {
        let mut state = lock(&self.state);
        state.deadlines.clear();
        state.in_flight.drain().map(|(_, f)| f).collect()
    }

    /// Fails deliveries whose ack wait ran out, until the group stops.
    pub async fn expire(self: Arc<Self>) {
        loop {
            let next = lock(&self.state).deadlines.first().map(|(d, _)| *d);
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = self.wake.notified() => continue,
                () = sleep => {}
            }
            let now = Instant::now();
            let due: Vec<(MessageId, InFlight)> = {
                let mut state = lock(&self.state);
                let mut due = Vec::new();
                while let Some((at, id)) = state.deadlines.first().cloned() {
                    if at > now {
                        break;
                    }
                    state.deadlines.pop_first();
                    if let Some(f) = state.in_flight.remove(&id) {
                        due.push((id, f));
                    }
                }
                due
            };
            for (id, flight) in due {
                self.fail(&id.0, flight, "ack wait expired", None).await;
            }
        }
    }
}

/// How long a message whose dead letter could not be stored waits.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(1);

/// Hands a message back to JetStream, to be delivered after `after`.
pub(super) async fn nak(message: &Message, after: Duration) {
    let kind = AckKind::Nak((!after.is_zero()).then_some(after));
    if let Err(e) = message.ack_with(kind).await {
        tracing::debug!(error = %e, "cannot NAK; JetStream redelivers after its ack wait");
    }
}

impl InFlight {
    /// The JetStream message.
    pub fn message(&self) -> &Message {
        &self.message
    }
}

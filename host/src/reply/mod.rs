//! Request-reply on one broker: the live responders by pattern, and the
//! requests waiting for their first reply. Nothing here is stored: a
//! request lives in memory from `ask` to its reply, its timeout, or the
//! departure of every responder that got it.
//!
//! A request goes to every responder without a queue group whose pattern
//! matches its topic, and to one responder of each matching group (round
//! robin). In cluster mode ([`nats`]) it goes through NATS instead, to the
//! responders of every node. Each gets it as a `Delivered` (offset 0) with the header
//! [`REPLY_HEADER`]: a random token that is the right to answer it, for
//! whoever holds it. The first reply wins; later ones are told that no
//! request waits for them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sluice_proto::{Delivered, Pattern, Reply, REPLY_HEADER};
use tokio::sync::{mpsc, oneshot};

use crate::error::BrokerError;
use crate::sync::lock;

pub mod nats;

/// Requests a responder may hold undelivered to its client; past it, the
/// responder is skipped: the next member of its queue group takes the
/// request, and a responder without a group misses it.
pub const RESPONDER_QUEUE: usize = 1024;

/// The longest a request may wait for its reply.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// One request, as asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its topic.
    pub topic: String,
    /// Its key.
    pub key: Option<Bytes>,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub payload: Bytes,
}

/// The live responders of the broker and the requests waiting.
#[derive(Debug, Default)]
pub struct Responders {
    table: Mutex<Table>,
    next_id: AtomicU64,
    /// Cluster mode: requests and responders go through NATS.
    relay: std::sync::OnceLock<Arc<nats::NatsRelay>>,
}

/// Which responders a request relayed by NATS is for: those of one
/// pattern, in one queue group or none.
pub(crate) type Only<'a> = Option<(&'a str, Option<&'a str>)>;

#[derive(Debug, Default)]
struct Table {
    responders: BTreeMap<u64, Entry>,
    /// Per queue group, how many requests it was given (its turn).
    turns: HashMap<String, u64>,
    waiting: HashMap<String, Waiting>,
}

#[derive(Debug)]
struct Entry {
    pattern: Pattern,
    group: Option<String>,
    requests: mpsc::Sender<Delivered>,
    /// Tokens of requests it was given and that still wait.
    holds: HashSet<String>,
}

#[derive(Debug)]
struct Waiting {
    answer: oneshot::Sender<Result<Reply, BrokerError>>,
    /// The responders that got it and are still there.
    holders: HashSet<u64>,
}

/// One responder's requests, in the order they were asked. Dropping it
/// takes the responder away: requests only it held are answered
/// `no_responders` at once.
#[derive(Debug)]
pub struct Responder {
    id: u64,
    requests: mpsc::Receiver<Delivered>,
    owner: Arc<Responders>,
}

impl Responder {
    /// The next request; waits for one.
    pub async fn next(&mut self) -> Option<Delivered> {
        self.requests.recv().await
    }

    /// A request already waiting, if any.
    pub fn try_next(&mut self) -> Option<Delivered> {
        self.requests.try_recv().ok()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.owner.leave(self.id);
    }
}

/// A token no one can guess: 128 bits from the operating system, as hex.
fn new_token() -> Result<String, BrokerError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| BrokerError::Internal(format!("no randomness for a reply token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Responders {
    /// From now on, requests and responders go through `relay` (cluster
    /// mode).
    pub fn relay_through(&self, relay: Arc<nats::NatsRelay>) {
        let _ = self.relay.set(relay);
    }

    /// A responder on `pattern`, in queue group `group` if given. In
    /// cluster mode it listens through NATS before this returns.
    pub async fn join(
        self: &Arc<Self>,
        pattern: Pattern,
        group: Option<String>,
    ) -> Result<Responder, BrokerError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(RESPONDER_QUEUE);
        let listening = (pattern.as_str().to_owned(), group.clone());
        lock(&self.table).responders.insert(
            id,
            Entry {
                pattern,
                group,
                requests: tx,
                holds: HashSet::new(),
            },
        );
        // Made first: dropping it on a failure below takes the entry away.
        let responder = Responder {
            id,
            requests: rx,
            owner: self.clone(),
        };
        if let Some(relay) = self.relay.get() {
            relay
                .listen(self, &listening.0, listening.1.as_deref())
                .await?;
        }
        Ok(responder)
    }

    /// How many responders are live.
    pub fn count(&self) -> usize {
        lock(&self.table).responders.len()
    }

    /// Sends `request` to its responders and waits up to `timeout` for the
    /// first reply.
    /// Cancel-safe: a dropped `ask` forgets its request.
    pub async fn ask(&self, request: Request, timeout: Duration) -> Result<Reply, BrokerError> {
        match self.relay.get() {
            Some(relay) => relay.ask(request, timeout).await,
            None => self.ask_local(request, timeout, None).await,
        }
    }

    /// [`Responders::ask`] of this broker's responders only (`only`: of
    /// one pattern and queue group).
    pub(crate) async fn ask_local(
        &self,
        request: Request,
        timeout: Duration,
        only: Only<'_>,
    ) -> Result<Reply, BrokerError> {
        let token = new_token()?;
        let (answer, answered) = oneshot::channel();
        self.send(&request, &token, answer, only)?;
        let _forget = Forget {
            owner: self,
            token: &token,
        };
        match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(BrokerError::Internal(
                "a request was forgotten before its answer".into(),
            )),
            Err(_) => Err(BrokerError::RequestTimeout(format!(
                "no reply to the request on {:?} within {} ms",
                request.topic,
                timeout.as_millis()
            ))),
        }
    }

    /// Hands `request` to its responders, waiting under `token`.
    fn send(
        &self,
        request: &Request,
        token: &str,
        answer: oneshot::Sender<Result<Reply, BrokerError>>,
        only: Only<'_>,
    ) -> Result<(), BrokerError> {
        let mut table = lock(&self.table);
        let targets = table.targets(&request.topic, only);
        if targets.is_empty() {
            return Err(BrokerError::NoResponders(format!(
                "no responder listens on {:?}",
                request.topic
            )));
        }
        let mut headers = request.headers.clone();
        headers.push((REPLY_HEADER.to_owned(), token.to_owned()));
        let delivered = Delivered {
            topic: request.topic.clone(),
            offset: 0,
            timestamp_ms: now_ms(),
            key: request.key.clone(),
            headers,
            payload: request.payload.clone(),
            id: None,
            attempt: 0,
        };
        let mut holders = HashSet::new();
        for candidates in targets {
            // The first of the candidates with room takes it.
            for id in candidates {
                let Some(entry) = table.responders.get_mut(&id) else {
                    continue;
                };
                if entry.requests.try_send(delivered.clone()).is_ok() {
                    entry.holds.insert(token.to_owned());
                    holders.insert(id);
                    break;
                }
            }
        }
        if holders.is_empty() {
            return Err(BrokerError::LimitExceeded(format!(
                "every responder on {:?} has {RESPONDER_QUEUE} requests not yet delivered",
                request.topic
            )));
        }
        table
            .waiting
            .insert(token.to_owned(), Waiting { answer, holders });
        Ok(())
    }

    /// Answers the request waiting under `token`.
    pub fn reply(&self, token: &str, reply: Result<Reply, String>) -> Result<(), BrokerError> {
        let waiting = lock(&self.table).take(token).ok_or_else(|| {
            BrokerError::NotWaiting(
                "no request waits for this reply: it was answered already, timed out, or the token is unknown"
                    .into(),
            )
        })?;
        // The requester may have gone meanwhile: nothing more to do.
        let _ = waiting
            .answer
            .send(reply.map_err(BrokerError::ResponderError));
        Ok(())
    }

    /// Takes responder `id` away.
    fn leave(&self, id: u64) {
        let mut table = lock(&self.table);
        let Some(entry) = table.responders.remove(&id) else {
            return;
        };
        if let Some(relay) = self.relay.get() {
            relay.stop_listening(entry.pattern.as_str(), entry.group.as_deref());
        }
        if let Some(group) = &entry.group {
            let left = table
                .responders
                .values()
                .any(|e| e.group.as_ref() == Some(group));
            if !left {
                table.turns.remove(group);
            }
        }
        for token in entry.holds {
            let Some(waiting) = table.waiting.get_mut(&token) else {
                continue;
            };
            waiting.holders.remove(&id);
            if waiting.holders.is_empty() {
                if let Some(waiting) = table.waiting.remove(&token) {
                    let _ = waiting.answer.send(Err(BrokerError::NoResponders(
                        "every responder that got the request went away before answering".into(),
                    )));
                }
            }
        }
    }
}

/// Forgets a request when its `ask` ends, however it ends.
struct Forget<'a> {
    owner: &'a Responders,
    token: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.owner.table).take(self.token);
    }
}

impl Table {
    /// Where a request on `topic` goes: each list names the candidates
    /// for one copy, in order. A responder without a group is a list of
    /// one; a queue group is one list, its members from the one whose
    /// turn it is.
    fn targets(&mut self, topic: &str, only: Only<'_>) -> Vec<Vec<u64>> {
        let mut targets = Vec::new();
        let mut groups: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (id, entry) in &self.responders {
            if !entry.pattern.matches(topic) || entry.requests.is_closed() {
                continue;
            }
            if let Some((pattern, group)) = only {
                if entry.pattern.as_str() != pattern || entry.group.as_deref() != group {
                    continue;
                }
            }
            match &entry.group {
                None => targets.push(vec![*id]),
                Some(group) => groups.entry(group).or_default().push(*id),
            }
        }
        for (group, mut members) in groups {
            let turn = self.turns.entry(group.to_owned()).or_default();
            let len = members.len() as u64;
            members.rotate_left((*turn % len) as usize);
            *turn = turn.wrapping_add(1);
            targets.push(members);
        }
        targets
    }

    /// Removes the request waiting under `token` from the table and from
    /// its holders.
    fn take(&mut self, token: &str) -> Option<Waiting> {
        let waiting = self.waiting.remove(token)?;
        for id in &waiting.holders {
            if let Some(entry) = self.responders.get_mut(id) {
                entry.holds.remove(token);
            }
        }
        Some(waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(topic: &str) -> Request {
        Request {
            topic: topic.into(),
            key: None,
            headers: vec![("h".into(), "v".into())],
            payload: Bytes::from_static(b"ping"),
        }
    }

    fn token_of(d: &Delivered) -> String {
        d.header(REPLY_HEADER).expect("a reply token").to_owned()
    }

    #[tokio::test]
    async fn a_request_gets_its_first_reply_and_a_second_is_told_it_is_late() {
        let responders = Arc::new(Responders::default());
        let mut a = responders
            .join(Pattern::parse("svc.>").unwrap(), None)
            .await
            .unwrap();
        let mut b = responders
            .join(Pattern::parse("svc.echo").unwrap(), None)
            .await
            .unwrap();
        let asking = {
            let r = responders.clone();
            tokio::spawn(async move { r.ask(request("svc.echo"), Duration::from_secs(5)).await })
        };
        let (got_a, got_b) = (a.next().await.unwrap(), b.next().await.unwrap());
        assert_eq!(got_a.payload, "ping");
        assert_eq!(got_a.header("h"), Some("v"));
        let token = token_of(&got_a);
        assert_eq!(token, token_of(&got_b), "one request, one token");
        let reply = |p: &'static str| Reply {
            headers: vec![],
            payload: Bytes::from_static(p.as_bytes()),
        };
        responders.reply(&token, Ok(reply("pong"))).unwrap();
        let late = responders.reply(&token, Ok(reply("again")));
        assert!(matches!(late, Err(BrokerError::NotWaiting(_))), "{late:?}");
        assert_eq!(asking.await.unwrap().unwrap().payload, "pong");
    }

    #[tokio::test]
    async fn no_responder_a_responder_leaving_and_a_timeout_each_answer_at_once() {
        let responders = Arc::new(Responders::default());
        let none = responders
            .ask(request("svc.x"), Duration::from_secs(5))
            .await;
        assert!(
            matches!(none, Err(BrokerError::NoResponders(_))),
            "{none:?}"
        );

        let mut gone = responders
            .join(Pattern::parse("svc.x").unwrap(), None)
            .await
            .unwrap();
        let asking = {
            let r = responders.clone();
            tokio::spawn(async move { r.ask(request("svc.x"), Duration::from_secs(60)).await })
        };
        assert!(gone.next().await.is_some());
        drop(gone);
        let left = asking.await.unwrap();
        assert!(
            matches!(left, Err(BrokerError::NoResponders(_))),
            "{left:?}"
        );

        let _silent = responders
            .join(Pattern::parse("svc.x").unwrap(), None)
            .await
            .unwrap();
        let slow = responders
            .ask(request("svc.x"), Duration::from_millis(20))
            .await;
        assert!(
            matches!(slow, Err(BrokerError::RequestTimeout(_))),
            "{slow:?}"
        );
        assert!(
            lock(&responders.table).waiting.is_empty(),
            "nothing left waiting"
        );
    }

    #[tokio::test]
    async fn a_queue_group_takes_turns_and_plain_responders_get_everything() {
        let responders = Arc::new(Responders::default());
        let pattern = || Pattern::parse("jobs").unwrap();
        let plain = responders.join(pattern(), None).await.unwrap();
        let g1 = responders
            .join(pattern(), Some("workers".into()))
            .await
            .unwrap();
        let g2 = responders
            .join(pattern(), Some("workers".into()))
            .await
            .unwrap();
        let mut table = lock(&responders.table);
        let picks: Vec<Vec<Vec<u64>>> = (0..4).map(|_| table.targets("jobs", None)).collect();
        for pick in &picks {
            assert_eq!(pick.len(), 2, "the plain responder and the group");
            assert_eq!(pick[0], [plain.id]);
        }
        // The group's member in turn first, the other next (if the first
        // has no room).
        let workers: Vec<Vec<u64>> = picks.iter().map(|p| p[1].clone()).collect();
        assert_eq!(
            workers,
            [
                vec![g1.id, g2.id],
                vec![g2.id, g1.id],
                vec![g1.id, g2.id],
                vec![g2.id, g1.id]
            ]
        );
        assert!(table.targets("other", None).is_empty());
        // Relayed for one pattern and group: only those.
        assert_eq!(
            table.targets("jobs", Some(("jobs", None))),
            [vec![plain.id]]
        );
        drop(table);
        // The last member leaving forgets the group's turn.
        drop((g1, g2));
        assert!(lock(&responders.table).turns.is_empty());
    }
}

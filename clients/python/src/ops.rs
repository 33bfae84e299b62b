//! The futures behind both APIs: each takes owned arguments, runs on the
//! shared runtime, and ends in the package's own types or a Python
//! exception.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use sluice_client::{ClientError, ConsumeOptions, Message};
use sluice_proto::{MessageOutcome, RetentionSpec, StartPosition};

use crate::errors::{py, to_py};
use crate::shared::Shared;
use crate::types::{GroupInfo, Stored, TopicInfo};

pub type SharedSubscription = Arc<Shared<sluice_client::Subscription>>;
pub type SharedConsumer = Arc<Shared<sluice_client::Consumer>>;

/// The outcome of one published message: where it was stored, or why not.
fn stored(outcome: MessageOutcome) -> Result<Stored, ClientError> {
    match outcome {
        MessageOutcome::Stored(places) => Stored::new(places)
            .ok_or_else(|| ClientError::Protocol("a stored message with no place".into())),
        other => Err(ClientError::NotStored(other)),
    }
}

pub async fn connect(options: sluice_client::ClientOptions) -> PyResult<sluice_client::Client> {
    py(sluice_client::Client::connect(options).await)
}

pub async fn publish(client: sluice_client::Client, message: Message) -> PyResult<Stored> {
    let ack = py(client.publish_batch(vec![message]).await)?;
    let outcome = ack
        .outcomes
        .into_iter()
        .next()
        .ok_or_else(|| to_py(ClientError::Protocol("an ack with no outcome".into())))?;
    py(stored(outcome))
}

/// Each message's outcome: a `Stored`, or the exception saying why it was
/// not stored.
pub async fn publish_many(
    client: sluice_client::Client,
    messages: Vec<Message>,
) -> PyResult<Vec<Result<Stored, PyErr>>> {
    let count = messages.len();
    if count == 0 {
        return Ok(Vec::new());
    }
    let ack = py(client.publish_batch(messages).await)?;
    if ack.outcomes.len() != count {
        return Err(to_py(ClientError::Protocol(format!(
            "{count} messages published, {} outcomes",
            ack.outcomes.len()
        ))));
    }
    Ok(ack
        .outcomes
        .into_iter()
        .map(|o| stored(o).map_err(to_py))
        .collect())
}

pub async fn subscribe(
    client: sluice_client::Client,
    pattern: String,
    start: StartPosition,
) -> PyResult<SharedSubscription> {
    let subscription = py(client.subscribe(pattern, start).await)?;
    Ok(Shared::new(subscription))
}

pub async fn consume(
    client: sluice_client::Client,
    pattern: String,
    group: String,
    options: ConsumeOptions,
) -> PyResult<SharedConsumer> {
    let consumer = py(client.consume(pattern, group, options).await)?;
    Ok(Shared::new(consumer))
}

/// How to settle a delivery.
pub enum Settle {
    Ack,
    Nack(Option<Duration>),
    Reject(String),
    InProgress,
}

pub async fn settle(delivery: sluice_client::Delivery, how: Settle) -> PyResult<()> {
    py(match how {
        Settle::Ack => delivery.ack().await,
        Settle::Nack(delay) => delivery.nack(delay).await,
        Settle::Reject(reason) => delivery.reject(reason).await,
        Settle::InProgress => delivery.in_progress().await,
    })
}

/// Acks every delivery in one go (the client sends them in as few
/// requests as it can); the first error, if any, after all were tried.
pub async fn ack_all(deliveries: Vec<Arc<sluice_client::Delivery>>) -> PyResult<()> {
    let acks = futures_util::future::join_all(deliveries.iter().map(|d| d.ack())).await;
    py(acks.into_iter().collect::<Result<Vec<()>, _>>().map(drop))
}

/// Topic and group administration.
pub enum Admin {
    CreateTopic {
        name: String,
        retention: Option<RetentionSpec>,
    },
    DeleteTopic(String),
    ListTopics,
    TopicInfo(String),
    ListGroups,
    GroupInfo(String),
    ResetGroup(String, StartPosition),
}

/// What an admin call answers.
pub enum Answer {
    None,
    Topic(TopicInfo),
    Topics(Vec<TopicInfo>),
    Group(GroupInfo),
    Groups(Vec<GroupInfo>),
}

impl<'py> IntoPyObject<'py> for Answer {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            Answer::None => py.None().into_bound(py),
            Answer::Topic(t) => t.into_pyobject(py)?.into_any(),
            Answer::Topics(t) => t.into_pyobject(py)?.into_any(),
            Answer::Group(g) => g.into_pyobject(py)?.into_any(),
            Answer::Groups(g) => g.into_pyobject(py)?.into_any(),
        })
    }
}

pub async fn admin(client: sluice_client::Client, request: Admin) -> PyResult<Answer> {
    py(answer(client, request).await)
}

async fn answer(client: sluice_client::Client, request: Admin) -> Result<Answer, ClientError> {
    Ok(match request {
        Admin::CreateTopic { name, retention } => {
            Answer::Topic(client.create_topic(name, retention, None).await?.into())
        }
        Admin::DeleteTopic(name) => {
            client.delete_topic(name).await?;
            Answer::None
        }
        Admin::ListTopics => Answer::Topics(
            client
                .list_topics()
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        ),
        Admin::TopicInfo(name) => Answer::Topic(client.topic_info(name).await?.into()),
        Admin::ListGroups => Answer::Groups(
            client
                .list_groups()
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        ),
        Admin::GroupInfo(name) => Answer::Group(client.group_info(name).await?.into()),
        Admin::ResetGroup(name, to) => Answer::Group(client.reset_group(name, to).await?.into()),
    })
}

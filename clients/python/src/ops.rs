//! The futures behind both APIs: each takes owned arguments, runs on the
//! shared runtime and ends in the package's own types or an [`Error`],
//! which becomes an exception where the GIL is held.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use sluice_client::{ClientError, ConsumeOptions, DeliveryPlugin, Message};
use sluice_proto::{RetentionSpec, StartPosition};

use crate::errors::{Error, Result};
use crate::shared::Shared;
use crate::types::{GroupInfo, Stored, TopicInfo};

pub type SharedSubscription = Arc<Shared<sluice_client::Subscription>>;
pub type SharedConsumer = Arc<Shared<sluice_client::Consumer>>;
pub type SharedResponder = Arc<Shared<sluice_client::Responder>>;

pub async fn connect(options: sluice_client::ClientOptions) -> Result<sluice_client::Client> {
    Ok(sluice_client::Client::connect(options).await?)
}

pub async fn publish(client: sluice_client::Client, message: Message) -> Result<Stored> {
    Ok(client.publish_message(message).await?.into())
}

/// Each message's outcome: where it was stored, or why it was not.
pub async fn publish_many(
    client: sluice_client::Client,
    messages: Vec<Message>,
) -> Result<Vec<Result<Stored>>> {
    let count = messages.len();
    if count == 0 {
        return Ok(Vec::new());
    }
    let ack = client.publish_batch(messages).await?;
    if ack.outcomes.len() != count {
        return Err(ClientError::Protocol(format!(
            "{count} messages published, {} outcomes",
            ack.outcomes.len()
        ))
        .into());
    }
    Ok(ack
        .outcomes
        .into_iter()
        .map(|o| Ok(sluice_client::Stored::from_outcome(o)?.into()))
        .collect())
}

pub async fn subscribe(
    client: sluice_client::Client,
    pattern: String,
    start: StartPosition,
    plugin: Option<DeliveryPlugin>,
) -> Result<SharedSubscription> {
    Ok(Shared::new(
        client.subscribe_with(pattern, start, plugin).await?,
    ))
}

pub async fn request(
    client: sluice_client::Client,
    message: Message,
    timeout: Duration,
) -> Result<crate::types::Reply> {
    Ok(client.request_message(message, timeout).await?.into())
}

pub async fn respond(
    client: sluice_client::Client,
    pattern: String,
    group: Option<String>,
) -> Result<SharedResponder> {
    let responder = match group {
        Some(group) => client.respond_in_group(pattern, group).await?,
        None => client.respond(pattern).await?,
    };
    Ok(Shared::new(responder))
}

/// Answers a request: a reply, or the error message the requester gets.
pub async fn answer(
    request: Arc<sluice_client::IncomingRequest>,
    reply: std::result::Result<sluice_client::Reply, String>,
) -> Result<()> {
    match reply {
        Ok(reply) => request.reply_with(reply).await?,
        Err(message) => request.reply_error(message).await?,
    }
    Ok(())
}

pub async fn consume(
    client: sluice_client::Client,
    pattern: String,
    group: String,
    options: ConsumeOptions,
) -> Result<SharedConsumer> {
    Ok(Shared::new(client.consume(pattern, group, options).await?))
}

/// How to settle a delivery.
pub enum Settle {
    Ack,
    Nack(Option<Duration>),
    Reject(String),
    InProgress,
}

pub async fn settle(delivery: Arc<sluice_client::Delivery>, how: Settle) -> Result<()> {
    Ok(match how {
        Settle::Ack => delivery.ack().await,
        Settle::Nack(delay) => delivery.nack(delay).await,
        Settle::Reject(reason) => delivery.reject(reason).await,
        Settle::InProgress => delivery.in_progress().await,
    }?)
}

/// Acks every delivery in one go (the client sends them in as few
/// requests as it can); the first error, if any, after all were tried.
pub async fn ack_all(deliveries: Vec<Arc<sluice_client::Delivery>>) -> Result<()> {
    let acks = futures_util::future::join_all(deliveries.iter().map(|d| d.ack())).await;
    acks.into_iter()
        .collect::<std::result::Result<Vec<()>, _>>()
        .map(drop)
        .map_err(Error::from)
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

pub async fn admin(client: sluice_client::Client, request: Admin) -> Result<Answer> {
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

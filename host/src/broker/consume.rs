//! Consumer groups as the broker serves them: arguments checked, the
//! member's delivery plugin made, then the [`crate::groups::Groups`]
//! backend does the rest.

use std::sync::Arc;

use sluice_proto::{ErrorBody, GroupInfo, Settle, SettleBatch, StartPosition};

use super::checks;
use super::consumer::Consumer;
use super::Broker;
use crate::error::BrokerError;
use crate::groups::JoinRequest;

impl Broker {
    /// Joins (creating if needed) a consumer group, for `client` (its name,
    /// for group status). The request's consumer id is the server's business.
    pub async fn consume(
        &self,
        request: sluice_proto::Consume,
        client: &str,
    ) -> Result<Consumer, BrokerError> {
        let sluice_proto::Consume {
            group,
            pattern,
            options,
            max_in_flight,
            limit,
            plugin,
            consumer: _,
        } = request;
        checks::group(&group)?;
        checks::pattern(&pattern)?;
        if max_in_flight == 0 {
            return Err(BrokerError::InvalidArgument(
                "max_in_flight must be at least 1".into(),
            ));
        }
        checks::group_options(&options)?;
        let filter = match &plugin {
            Some(spec) => Some(self.delivery_plugin(spec).await?),
            None => None,
        };
        let groups = &self.inner.groups;
        groups.open(&group, &pattern, options).await?;
        let member = groups.join(
            &group,
            JoinRequest {
                client: client.to_owned(),
                max_in_flight,
                limit,
            },
        )?;
        Ok(Consumer::new(member, Arc::clone(groups), filter))
    }

    /// Settles one delivered message.
    pub async fn settle(&self, settle: Settle) -> Result<(), BrokerError> {
        checks::group(&settle.group)?;
        checks::settle(&settle.topic, &settle.action)?;
        let item = (settle.topic, settle.offset, settle.action);
        let results = self.inner.groups.settle(&settle.group, vec![item]).await?;
        results
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(BrokerError::Internal("settlement not answered".into())))
    }

    /// Settles several messages of one group; one result per item (a bad
    /// item fails alone).
    pub async fn settle_batch(
        &self,
        batch: SettleBatch,
    ) -> Result<Vec<Option<ErrorBody>>, BrokerError> {
        checks::group(&batch.group)?;
        let mut errors: Vec<Option<ErrorBody>> = vec![None; batch.items.len()];
        let mut valid = Vec::with_capacity(batch.items.len());
        let mut positions = Vec::with_capacity(batch.items.len());
        for (i, item) in batch.items.into_iter().enumerate() {
            if let Err(e) = checks::settle(&item.topic, &item.action) {
                errors[i] = Some(e.to_body());
                continue;
            }
            positions.push(i);
            valid.push((item.topic, item.offset, item.action));
        }
        if !valid.is_empty() {
            let results = self.inner.groups.settle(&batch.group, valid).await?;
            for (i, result) in positions.into_iter().zip(results) {
                errors[i] = result.err().map(|e| e.to_body());
            }
        }
        Ok(errors)
    }

    /// Every consumer group, by name.
    pub async fn list_groups(&self) -> Vec<GroupInfo> {
        self.inner.groups.list().await
    }

    /// One consumer group.
    pub async fn group_info(&self, name: &str) -> Result<GroupInfo, BrokerError> {
        checks::group(name)?;
        self.inner.groups.info(name).await
    }

    /// Moves a group to a position; pending deliveries are forgotten.
    pub async fn reset_group(
        &self,
        name: &str,
        to: StartPosition,
    ) -> Result<GroupInfo, BrokerError> {
        checks::group(name)?;
        self.inner.groups.reset(name, to).await
    }
}

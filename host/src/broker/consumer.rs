//! [`Consumer`]: a member of a consumer group as the server streams it,
//! with the member's delivery plugin if it asked for one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::delivery::{Chunk, Slice};
use crate::error::BrokerError;
use crate::groups::{GroupDelivery, Groups, Member, SettleItem};
use crate::plugin::delivery::DeliveryFilter;
use crate::store::StoredBatch;

/// Most deliveries handed to the server for one member at once.
const CHUNK_DELIVERIES: usize = 256;

/// A member of a group: a source of deliveries. Dropping it leaves the
/// group; its unsettled messages go to the others.
pub struct Consumer {
    member: Member,
    groups: Arc<dyn Groups>,
    /// A plugin that filters or transforms what this member receives.
    filter: Option<Arc<DeliveryFilter>>,
}

impl Consumer {
    pub(super) fn new(
        member: Member,
        groups: Arc<dyn Groups>,
        filter: Option<Arc<DeliveryFilter>>,
    ) -> Consumer {
        Consumer {
            member,
            groups,
            filter,
        }
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        self.member.group()
    }

    /// Its member id in the group: its settlements are made as this member.
    pub fn member_id(&self) -> u64 {
        self.member.id()
    }

    /// Waits for the next deliveries, through the member's plugin if it
    /// has one (messages it filters out are settled for the member as the
    /// plugin module says, and never reach it). Cancel-safe: deliveries
    /// lost to a cancel are this member's, which is leaving, and go to the
    /// others.
    pub async fn next_chunk(&mut self) -> Result<Chunk, BrokerError> {
        loop {
            let chunk = self.next_raw_chunk().await?;
            let Some(filter) = self.filter.clone() else {
                return Ok(chunk);
            };
            // What the plugin settles answers these deliveries, attempt and all.
            let attempts: HashMap<(Arc<str>, u64), u32> = chunk
                .slices
                .iter()
                .flat_map(|s| {
                    s.records()
                        .iter()
                        .map(|r| ((s.batch.topic.clone(), r.offset), s.attempt))
                })
                .collect();
            let (chunk, settles) = tokio::task::spawn_blocking(move || {
                crate::plugin::delivery::apply_group(&filter, chunk)
            })
            .await
            .map_err(|e| BrokerError::Internal(format!("delivery plugin task failed: {e}")))?;
            if !settles.is_empty() {
                // Answered once journaled; nobody waits for it here.
                let items = settles
                    .into_iter()
                    .map(|(topic, offset, action)| SettleItem {
                        attempt: attempts.get(&(topic.clone(), offset)).copied(),
                        topic: topic.to_string(),
                        offset,
                        action,
                    })
                    .collect();
                let (groups, group) = (self.groups.clone(), self.group().to_owned());
                let member = self.member_id();
                tokio::spawn(async move {
                    if let Err(e) = groups.settle(&group, vec![member], items).await {
                        tracing::debug!(%group, error = %e, "settling what a delivery plugin filtered failed");
                    }
                });
            }
            if !chunk.slices.is_empty() {
                return Ok(chunk);
            }
        }
    }

    async fn next_raw_chunk(&mut self) -> Result<Chunk, BrokerError> {
        let first = self.member.next().await.ok_or(BrokerError::ShuttingDown)?;
        let mut slices = vec![slice(first)];
        while slices.len() < CHUNK_DELIVERIES {
            match self.member.try_next() {
                Some(delivery) => slices.push(slice(delivery)),
                None => break,
            }
        }
        Ok(Chunk { slices, dropped: 0 })
    }
}

fn slice(delivery: GroupDelivery) -> Slice {
    Slice {
        batch: Arc::new(StoredBatch {
            topic: delivery.topic,
            incarnation: 0,
            records: vec![delivery.record],
        }),
        skip: 0,
        attempt: delivery.attempt,
    }
}

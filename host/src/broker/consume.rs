//! The broker's side of consumer groups: recovering them at start,
//! creating one on the first consume, joining, settling, info and reset.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sluice_proto::{ErrorBody, GroupInfo, Settle, SettleBatch, StartPosition};

use super::checks;
use super::error::BrokerError;
use super::group::{self, Consumer, GroupHandle, GroupSettings};
use super::Broker;
use crate::store::StoreError;
use crate::sync::lock;

impl Broker {
    pub(super) async fn load_groups(&self) -> Result<(), BrokerError> {
        let dir = self.inner.groups_dir.clone();
        let found = tokio::task::spawn_blocking(move || group::list_saved(&dir))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))?
            .map_err(|source| BrokerError::Storage {
                topic: String::new(),
                source,
            })?;
        for (name, path, settings) in found {
            let handle = self
                .spawn_group(name.clone(), path, settings, false)
                .await?;
            lock(&self.inner.groups).insert(name, handle);
        }
        Ok(())
    }

    async fn spawn_group(
        &self,
        name: String,
        dir: std::path::PathBuf,
        settings: GroupSettings,
        created: bool,
    ) -> Result<Arc<GroupHandle>, BrokerError> {
        group::spawn(group::Spawn {
            store: self.inner.store.clone(),
            fsync: self.fsync_policy(),
            name,
            dir,
            settings,
            created,
            stop: self.inner.stop.child_token(),
            tasks: self.inner.tasks.clone(),
        })
        .await
    }

    fn group(&self, name: &str) -> Result<Arc<GroupHandle>, BrokerError> {
        checks::group(name)?;
        lock(&self.inner.groups)
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::GroupNotFound(name.to_owned()))
    }

    /// The group, created with the request's pattern and options if it is
    /// new. Creation writes `group.json` on the blocking pool, serialised
    /// by the groups admin lock; the map is only locked to look up and
    /// insert.
    async fn open_group(
        &self,
        name: &str,
        pattern: &str,
        parsed: &sluice_proto::Pattern,
        options: sluice_proto::GroupOptions,
    ) -> Result<Arc<GroupHandle>, BrokerError> {
        let existing = |handle: Arc<GroupHandle>| {
            if handle.settings.pattern != pattern {
                return Err(BrokerError::InvalidArgument(format!(
                    "group {name:?} consumes {:?}, not {pattern:?} (use another group name)",
                    handle.settings.pattern
                )));
            }
            Ok(handle)
        };
        if let Some(handle) = lock(&self.inner.groups).get(name).cloned() {
            return existing(handle);
        }
        let _admin = self.inner.groups_admin.lock().await;
        if let Some(handle) = lock(&self.inner.groups).get(name).cloned() {
            return existing(handle);
        }
        if parsed.is_literal() && self.inner.store.topic(pattern).is_none() {
            return Err(BrokerError::TopicNotFound(pattern.to_owned()));
        }
        checks::group_options(&options)?;
        let settings = GroupSettings {
            pattern: pattern.to_owned(),
            options,
        };
        let dir = self.inner.groups_dir.join(name);
        let (saved, to) = (settings.clone(), dir.clone());
        tokio::task::spawn_blocking(move || saved.save(&to))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))?
            .map_err(|e| BrokerError::Storage {
                topic: format!("group {name}"),
                source: StoreError::io("create", &dir, e),
            })?;
        let handle = self
            .spawn_group(name.to_owned(), dir, settings, true)
            .await?;
        lock(&self.inner.groups).insert(name.to_owned(), handle.clone());
        tracing::info!(group = %name, %pattern, "consumer group created");
        Ok(handle)
    }

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
        let parsed = checks::pattern(&pattern)?;
        if max_in_flight == 0 {
            return Err(BrokerError::InvalidArgument(
                "max_in_flight must be at least 1".into(),
            ));
        }
        let filter = match &plugin {
            Some(spec) => Some(self.delivery_plugin(spec).await?),
            None => None,
        };
        let handle = self.open_group(&group, &pattern, &parsed, options).await?;
        let member = self.inner.next_member.fetch_add(1, Ordering::Relaxed);
        handle.join(member, client, max_in_flight, limit, filter)
    }

    /// Settles one delivered message.
    pub async fn settle(&self, settle: Settle) -> Result<(), BrokerError> {
        checks::settle(&settle.topic, &settle.action)?;
        self.group(&settle.group)?
            .settle(settle.topic, settle.offset, settle.action)
            .await
    }

    /// Settles several messages of one group; one result per item (a bad
    /// item fails alone).
    pub async fn settle_batch(
        &self,
        batch: SettleBatch,
    ) -> Result<Vec<Option<ErrorBody>>, BrokerError> {
        let group = self.group(&batch.group)?;
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
            let results = group.settle_many(valid).await?;
            for (i, result) in positions.into_iter().zip(results) {
                errors[i] = result.err().map(|e| e.to_body());
            }
        }
        Ok(errors)
    }

    /// Every consumer group, by name.
    pub async fn list_groups(&self) -> Vec<GroupInfo> {
        let handles: Vec<_> = lock(&self.inner.groups).values().cloned().collect();
        let mut infos = Vec::with_capacity(handles.len());
        for handle in handles {
            if let Ok(info) = handle.info().await {
                infos.push(info);
            }
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// One consumer group.
    pub async fn group_info(&self, name: &str) -> Result<GroupInfo, BrokerError> {
        self.group(name)?.info().await
    }

    /// Moves a group to a position; pending deliveries are forgotten.
    pub async fn reset_group(
        &self,
        name: &str,
        to: StartPosition,
    ) -> Result<GroupInfo, BrokerError> {
        self.group(name)?.reset(to).await
    }
}

//! What a principal may do ([`Permissions`]), and the one check every
//! request kind, routed output and dead-letter target goes through:
//! [`authorize`].
//!
//! Reading a topic and taking part in a consumer group are separate
//! rights: a group's members take its deliveries away from each other and
//! settle them, so joining a group (or settling in it) needs the group's
//! name in `groups`, on top of read rights on what it consumes.

use sluice_proto::Pattern;

use super::Principal;
use crate::config::PrincipalConfig;

/// What a principal may do. Patterns use `*` (one token) and `>` (one or
/// more trailing tokens).
#[derive(Debug, Clone)]
pub struct Permissions {
    /// `None`: anything.
    publish: Option<Vec<Pattern>>,
    subscribe: Option<Vec<Pattern>>,
    /// Consumer groups it may join and settle in.
    groups: Option<Vec<Pattern>>,
    admin_topics: bool,
    admin_groups: bool,
    admin_plugins: bool,
}

/// An admin right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRight {
    /// Create and delete topics.
    Topics,
    /// List, inspect and reset consumer groups.
    Groups,
    /// Plugin status.
    Plugins,
}

impl AdminRight {
    /// The name used in the config.
    pub fn name(self) -> &'static str {
        match self {
            AdminRight::Topics => "topics",
            AdminRight::Groups => "groups",
            AdminRight::Plugins => "plugins",
        }
    }
}

impl Permissions {
    /// Everything (development mode, and the broker's own work).
    pub fn all() -> Permissions {
        Permissions {
            publish: None,
            subscribe: None,
            groups: None,
            admin_topics: true,
            admin_groups: true,
            admin_plugins: true,
        }
    }

    pub(crate) fn from_config(p: &PrincipalConfig) -> Permissions {
        let patterns = |list: &[String]| {
            list.iter()
                .filter_map(|s| Pattern::parse(s).ok())
                .collect::<Vec<_>>()
        };
        let has = |right: &str| p.admin.iter().any(|r| r == right || r == "*");
        Permissions {
            publish: Some(patterns(&p.publish)),
            subscribe: Some(patterns(&p.subscribe)),
            groups: Some(patterns(&p.groups)),
            admin_topics: has("topics"),
            admin_groups: has("groups"),
            admin_plugins: has("plugins"),
        }
    }

    /// May publish to `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        match &self.publish {
            None => true,
            Some(allowed) => allowed.iter().any(|a| a.matches(topic)),
        }
    }

    /// May subscribe to (or consume, or fetch from) everything `pattern`
    /// matches: one allowed pattern must cover it wholly.
    pub fn may_subscribe(&self, pattern: &str) -> bool {
        match &self.subscribe {
            None => true,
            Some(allowed) => allowed.iter().any(|a| covers(a.as_str(), pattern)),
        }
    }

    /// May join consumer group `group` and settle its deliveries.
    pub fn may_join_group(&self, group: &str) -> bool {
        match &self.groups {
            None => true,
            Some(allowed) => allowed.iter().any(|a| a.matches(group)),
        }
    }

    /// Holds `right`.
    pub fn may_admin(&self, right: AdminRight) -> bool {
        match right {
            AdminRight::Topics => self.admin_topics,
            AdminRight::Groups => self.admin_groups,
            AdminRight::Plugins => self.admin_plugins,
        }
    }
}

/// Whether every topic `wanted` matches is matched by `allowed` (both
/// valid patterns; a topic is a pattern without wildcards).
pub fn covers(allowed: &str, wanted: &str) -> bool {
    let allowed: Vec<&str> = allowed.split('.').collect();
    let wanted: Vec<&str> = wanted.split('.').collect();
    for (i, a) in allowed.iter().enumerate() {
        if *a == ">" {
            // `>` takes one or more tokens: anything left in `wanted`.
            return wanted.len() > i;
        }
        let Some(w) = wanted.get(i) else {
            return false;
        };
        match (*a, *w) {
            (_, ">") => return false,
            ("*", _) => {}
            (_, "*") => return false,
            (a, w) if a != w => return false,
            _ => {}
        }
    }
    allowed.len() == wanted.len()
}

/// What a principal asks to do, for [`authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publish to a topic (a routed output or dead letter included).
    Publish,
    /// Subscribe to a pattern or consume it in a group.
    Subscribe,
    /// Settle a message of a topic (needs read rights on it).
    Settle,
    /// Join a consumer group or settle its deliveries; the target is the
    /// group's name.
    Group,
    /// An admin operation; the target describes it.
    Admin(AdminRight),
    /// See a topic's info: topic admins, and whoever may publish to it or
    /// read it.
    Describe,
}

impl Action {
    /// The label of refusals in `sluice_permission_denials_total`.
    pub fn label(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe | Action::Settle => "subscribe",
            Action::Group => "group",
            Action::Admin(_) | Action::Describe => "admin",
        }
    }
}

/// A refusal: who may not do what.
#[derive(Debug, Clone, thiserror::Error)]
#[error("principal {principal:?} may not {what}")]
pub struct Denied {
    /// The principal's name.
    pub principal: String,
    /// What was refused.
    pub action: Action,
    what: String,
}

/// Whether `principal` may do `action` on `target` (a topic, a pattern,
/// or for admin actions a description of the operation).
pub fn authorize(principal: &Principal, action: Action, target: &str) -> Result<(), Denied> {
    let p = &principal.permissions;
    let allowed = match action {
        Action::Publish => p.may_publish(target),
        Action::Subscribe | Action::Settle => p.may_subscribe(target),
        Action::Group => p.may_join_group(target),
        Action::Admin(right) => p.may_admin(right),
        Action::Describe => {
            p.may_admin(AdminRight::Topics) || p.may_publish(target) || p.may_subscribe(target)
        }
    };
    if allowed {
        return Ok(());
    }
    // Only a refusal pays for its message (this runs per message settled).
    let what = match action {
        Action::Publish => format!("publish to {target:?}"),
        Action::Subscribe => format!("subscribe to {target:?}"),
        Action::Settle => format!("settle messages of {target:?}"),
        Action::Group => {
            format!("join or settle in consumer group {target:?} (not in its `groups` list)")
        }
        Action::Admin(right) => format!("{target} (needs admin right {:?})", right.name()),
        Action::Describe => format!("see topic {target:?}"),
    };
    Err(Denied {
        principal: principal.name.clone(),
        action,
        what,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PrincipalConfig;

    fn principal(subscribe: &[&str], groups: &[&str]) -> Principal {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Principal::configured(&PrincipalConfig {
            name: "orders".into(),
            token_hash: None,
            publish: strings(&["orders.>"]),
            subscribe: strings(subscribe),
            groups: strings(groups),
            admin: Vec::new(),
            max_connections: None,
        })
    }

    #[test]
    fn groups_are_a_right_of_their_own() {
        let reader = principal(&["orders.>"], &[]);
        assert!(authorize(&reader, Action::Subscribe, "orders.>").is_ok());
        assert!(authorize(&reader, Action::Settle, "orders.eu").is_ok());
        let denied = authorize(&reader, Action::Group, "fulfil").unwrap_err();
        assert_eq!(denied.action.label(), "group");
        assert!(
            denied.to_string().contains("\"fulfil\"") && denied.to_string().contains("groups"),
            "{denied}"
        );

        let worker = principal(&["orders.>"], &["fulfil", "orders.*"]);
        for allowed in ["fulfil", "orders.eu", "orders.us"] {
            assert!(
                authorize(&worker, Action::Group, allowed).is_ok(),
                "{allowed}"
            );
        }
        for refused in ["billing", "fulfil.x", "orders", "orders.eu.x"] {
            assert!(
                authorize(&worker, Action::Group, refused).is_err(),
                "{refused}"
            );
        }
        // A group right is no read right.
        assert!(authorize(&worker, Action::Subscribe, "billing.>").is_err());

        let every = principal(&[], &[">"]);
        assert!(authorize(&every, Action::Group, "any.group").is_ok());
        assert!(authorize(&every, Action::Subscribe, "orders.eu").is_err());
    }

    #[test]
    fn the_anonymous_principal_may_join_any_group() {
        let anonymous = Principal::anonymous();
        assert!(authorize(&anonymous, Action::Group, "anything").is_ok());
        assert!(authorize(&anonymous, Action::Publish, "dlq.x").is_ok());
    }
}

//! `[auth]`: whether clients must authenticate, the principals the broker
//! knows, and what each one may do.

use std::path::PathBuf;

use serde::Deserialize;

/// Whether clients must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Development: anyone who can reach the port may do everything.
    None,
    /// Every client authenticates with a token or a client certificate and
    /// may do what its principal allows.
    Required,
}

/// `[auth]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `"none"` or `"required"`. Unset: `required` if any principal or a
    /// client CA is configured, else `none`.
    pub mode: Option<AuthMode>,
    /// PEM file of the CA(s) that issue client certificates (mutual TLS).
    /// A client certificate's subject common name (CN) names its principal.
    pub client_ca: Option<PathBuf>,
    /// `[[auth.principal]]`: the identities the broker knows.
    #[serde(rename = "principal")]
    pub principals: Vec<PrincipalConfig>,
}

/// One `[[auth.principal]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// The principal's name (logs, metrics; a client certificate's CN).
    pub name: String,
    /// The argon2 hash of the principal's token (`sluice token hash`).
    /// Without it the principal can only authenticate by certificate.
    #[serde(default)]
    pub token_hash: Option<String>,
    /// Topics or patterns it may publish to (`*` one token, `>` the rest).
    #[serde(default)]
    pub publish: Vec<String>,
    /// Patterns it may subscribe to, consume as a group, or fetch from. A
    /// subscription's pattern must lie wholly inside one of these.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Consumer groups it may join and settle in, by name or pattern
    /// (`*` one token, `>` the rest; `[">"]` is every group). Joining
    /// also needs `subscribe` rights on what the group consumes. Empty
    /// (the default): no group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Admin rights: `"topics"` (create, delete), `"groups"` (list, info,
    /// reset), `"plugins"` (status), or `"*"` for all.
    #[serde(default)]
    pub admin: Vec<String>,
    /// Connections open at once (default `limits.max_connections_per_principal`).
    #[serde(default)]
    pub max_connections: Option<usize>,
}

/// The admin rights a principal can hold.
pub const ADMIN_RIGHTS: &[&str] = &["topics", "groups", "plugins", "*"];

/// Why a `token_hash` cannot check tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenHashError {
    /// The text is not a PHC hash string (`$argon2id$v=19$...`).
    #[error("{0}")]
    Malformed(argon2::password_hash::Error),
    /// A hash string, but of another algorithm.
    #[error("algorithm {0} is not argon2")]
    NotArgon2(String),
}

/// Why `[auth]` was refused: what serde cannot check.
///
/// A cause (a hash or pattern error) is part of the message, not also the
/// source, because the message is shown whole in the error chain of
/// [`super::ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// `auth.mode = "none"` next to principals or a client CA, which it
    /// would silently ignore.
    #[error(
        "auth.mode = \"none\" lets every client in with all rights, but {principals} [[auth.principal]] and {} client CA are configured; set auth.mode = \"required\" or remove them",
        if *client_ca { "a" } else { "no" }
    )]
    NoneWithPrincipals {
        /// How many principals are configured.
        principals: usize,
        /// Whether `auth.client_ca` is set.
        client_ca: bool,
    },
    /// Authentication is required but nobody could pass it.
    #[error(
        "auth.mode = \"required\" but no [[auth.principal]] is configured: no client could connect"
    )]
    RequiredWithoutPrincipals,
    /// A principal name that is empty, too long or has control characters.
    #[error("auth.principal name {0:?}: 1 to 255 printable characters")]
    BadName(String),
    /// Two principals with one name.
    #[error("auth.principal {0:?} is defined twice")]
    Duplicate(String),
    /// A `token_hash` that cannot check tokens.
    #[error("auth.principal {principal:?}: token_hash is not an argon2 hash from `sluice token hash`: {reason}")]
    BadTokenHash {
        /// The principal.
        principal: String,
        /// What is wrong with the hash.
        reason: TokenHashError,
    },
    /// A `publish`, `subscribe` or `groups` entry that is not a valid
    /// pattern.
    #[error("auth.principal {principal:?}: {field} pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The principal.
        principal: String,
        /// `publish`, `subscribe` or `groups`.
        field: &'static str,
        /// The entry.
        pattern: String,
        /// What is wrong with it.
        reason: sluice_proto::SubjectError,
    },
    /// An `admin` entry that is not one of [`ADMIN_RIGHTS`].
    #[error("auth.principal {principal:?}: admin right {right:?} is not one of {}", ADMIN_RIGHTS.join(", "))]
    UnknownAdminRight {
        /// The principal.
        principal: String,
        /// The entry.
        right: String,
    },
    /// `max_connections = 0`, which would lock the principal out.
    #[error("auth.principal {0:?}: max_connections must be above zero")]
    ZeroMaxConnections(String),
}

/// Checks that `hash` is an argon2 hash string the broker can verify
/// tokens against.
pub fn check_token_hash(hash: &str) -> Result<(), TokenHashError> {
    let parsed =
        argon2::password_hash::PasswordHash::new(hash).map_err(TokenHashError::Malformed)?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(TokenHashError::NotArgon2(parsed.algorithm.to_string()));
    }
    Ok(())
}

impl AuthConfig {
    /// The mode in force.
    pub fn effective_mode(&self) -> AuthMode {
        self.mode
            .unwrap_or(if self.principals.is_empty() && self.client_ca.is_none() {
                AuthMode::None
            } else {
                AuthMode::Required
            })
    }

    /// Checks what serde cannot: the mode fits the principals, and each
    /// principal's name, token hash, patterns and rights are usable.
    pub(super) fn check(&self) -> Result<(), AuthConfigError> {
        if self.mode == Some(AuthMode::None)
            && (!self.principals.is_empty() || self.client_ca.is_some())
        {
            return Err(AuthConfigError::NoneWithPrincipals {
                principals: self.principals.len(),
                client_ca: self.client_ca.is_some(),
            });
        }
        if self.effective_mode() == AuthMode::Required && self.principals.is_empty() {
            return Err(AuthConfigError::RequiredWithoutPrincipals);
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.principals {
            if p.name.is_empty() || p.name.len() > 255 || p.name.chars().any(char::is_control) {
                return Err(AuthConfigError::BadName(p.name.clone()));
            }
            if !names.insert(p.name.as_str()) {
                return Err(AuthConfigError::Duplicate(p.name.clone()));
            }
            if let Some(hash) = &p.token_hash {
                check_token_hash(hash).map_err(|reason| AuthConfigError::BadTokenHash {
                    principal: p.name.clone(),
                    reason,
                })?;
            }
            for (field, patterns) in [
                ("publish", &p.publish),
                ("subscribe", &p.subscribe),
                ("groups", &p.groups),
            ] {
                for pattern in patterns {
                    sluice_proto::Pattern::parse(pattern).map_err(|reason| {
                        AuthConfigError::BadPattern {
                            principal: p.name.clone(),
                            field,
                            pattern: pattern.clone(),
                            reason,
                        }
                    })?;
                }
            }
            if let Some(right) = p.admin.iter().find(|r| !ADMIN_RIGHTS.contains(&r.as_str())) {
                return Err(AuthConfigError::UnknownAdminRight {
                    principal: p.name.clone(),
                    right: right.clone(),
                });
            }
            if p.max_connections == Some(0) {
                return Err(AuthConfigError::ZeroMaxConnections(p.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> AuthConfig {
        toml::from_str(toml_text).expect("the [auth] table parses")
    }

    #[test]
    fn group_rights_are_patterns_and_default_to_none() {
        let config = parse("[[principal]]\nname = \"a\"\nsubscribe = [\"orders.>\"]\n");
        config.check().unwrap();
        assert!(config.principals[0].groups.is_empty());
        let config = parse("[[principal]]\nname = \"a\"\ngroups = [\"orders.>\", \"audit\"]\n");
        config.check().unwrap();
        let config = parse("[[principal]]\nname = \"a\"\ngroups = [\"orders.>.x\"]\n");
        match config.check() {
            Err(AuthConfigError::BadPattern { field, pattern, .. }) => {
                assert_eq!((field, pattern.as_str()), ("groups", "orders.>.x"))
            }
            other => panic!("expected a bad groups pattern, got {other:?}"),
        }
    }
}

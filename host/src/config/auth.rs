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

/// Checks that `hash` is an argon2 hash string the broker can verify
/// tokens against.
pub fn check_token_hash(hash: &str) -> Result<(), String> {
    let parsed = argon2::password_hash::PasswordHash::new(hash).map_err(|e| e.to_string())?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!("algorithm {} is not argon2", parsed.algorithm));
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
    pub(super) fn check(&self) -> Result<(), String> {
        if self.mode == Some(AuthMode::None)
            && (!self.principals.is_empty() || self.client_ca.is_some())
        {
            return Err(format!(
                "auth.mode = \"none\" lets every client in with all rights, but {} [[auth.principal]] and {} client CA are configured; set auth.mode = \"required\" or remove them",
                self.principals.len(),
                if self.client_ca.is_some() { "a" } else { "no" }
            ));
        }
        if self.effective_mode() == AuthMode::Required && self.principals.is_empty() {
            return Err(
                "auth.mode = \"required\" but no [[auth.principal]] is configured: no client could connect".into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for p in &self.principals {
            if p.name.is_empty() || p.name.len() > 255 || p.name.chars().any(char::is_control) {
                return Err(format!(
                    "auth.principal name {:?}: 1 to 255 printable characters",
                    p.name
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(format!("auth.principal {:?} is defined twice", p.name));
            }
            if let Some(hash) = &p.token_hash {
                if let Err(e) = check_token_hash(hash) {
                    return Err(format!(
                        "auth.principal {:?}: token_hash is not an argon2 hash from `sluice token hash`: {e}",
                        p.name
                    ));
                }
            }
            for (field, patterns) in [("publish", &p.publish), ("subscribe", &p.subscribe)] {
                for pattern in patterns {
                    if let Err(e) = sluice_proto::Pattern::parse(pattern) {
                        return Err(format!(
                            "auth.principal {:?}: {field} pattern {pattern:?}: {e}",
                            p.name
                        ));
                    }
                }
            }
            if let Some(right) = p.admin.iter().find(|r| !ADMIN_RIGHTS.contains(&r.as_str())) {
                return Err(format!(
                    "auth.principal {:?}: admin right {right:?} is not one of {}",
                    p.name,
                    ADMIN_RIGHTS.join(", ")
                ));
            }
            if p.max_connections == Some(0) {
                return Err(format!(
                    "auth.principal {:?}: max_connections must be above zero",
                    p.name
                ));
            }
        }
        Ok(())
    }
}

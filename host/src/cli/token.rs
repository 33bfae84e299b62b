//! `sluice token`: secrets for clients, argon2 hashes for the config.

use std::io::BufRead;

use anyhow::{bail, Context};
use base64::Engine;

use super::args::{TokenAction, TokenArgs};
use crate::auth::hash_token;

/// Shorter secrets get a warning: guessing must be out of reach even
/// though each guess costs the attacker only one connection.
const MIN_SECRET_CHARS: usize = 16;

/// Runs `sluice token`.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.action {
        TokenAction::Hash { secret } => {
            let secret = match secret {
                Some(secret) => secret,
                None => read_secret()?,
            };
            check_secret(&secret)?;
            println!("{}", hash_token(&secret)?);
        }
        TokenAction::Generate => {
            let mut bytes = [0u8; 32];
            argon2::password_hash::rand_core::RngCore::fill_bytes(
                &mut argon2::password_hash::rand_core::OsRng,
                &mut bytes,
            );
            let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            println!("token:      {secret}");
            println!("token_hash: {}", hash_token(&secret)?);
        }
    }
    Ok(())
}

fn read_secret() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("failed to read the secret from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn check_secret(secret: &str) -> anyhow::Result<()> {
    if secret.is_empty() {
        bail!("the secret is empty");
    }
    if secret.chars().count() < MIN_SECRET_CHARS {
        eprintln!(
            "warning: the secret has {} characters; {MIN_SECRET_CHARS} or more are advised (`sluice token generate` makes one)",
            secret.chars().count()
        );
    }
    if secret.chars().any(char::is_control) {
        bail!("the secret has control characters");
    }
    Ok(())
}

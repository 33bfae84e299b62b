//! `sluice req` and `sluice reply`: request-reply from the shell. `req`
//! sends one request and prints its reply; `reply` answers requests by
//! running a command once per request, the payload on its standard input
//! and its standard output the reply.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use futures_util::StreamExt;
use sluice_client::{IncomingRequest, Message, Reply};
use tokio::io::AsyncWriteExt;

use super::connect::{connect, ClientArgs};
use super::flags::parse_header;

/// `sluice req`
#[derive(Debug, Args)]
pub struct ReqArgs {
    /// The topic whose responders answer.
    pub topic: String,
    /// The request's body.
    pub payload: String,
    /// How long to wait for the reply.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The request's key.
    #[arg(long)]
    pub key: Option<String>,
    /// A header, NAME=VALUE (repeatable).
    #[arg(long = "header", short = 'H', value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sluice reply`
#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// The topic or pattern (`*`, `>`) to answer on.
    pub pattern: String,
    /// The command to run for each request, with `sh -c`: the request's
    /// payload on its standard input, its standard output the reply, and a
    /// non-zero exit an error reply (with the last line of its standard
    /// error). `SLUICE_TOPIC` holds the request's topic.
    #[arg(long)]
    pub exec: String,
    /// Answer as a member of this queue group: each request goes to one
    /// member.
    #[arg(long)]
    pub group: Option<String>,
    /// Stop after answering this many requests.
    #[arg(long)]
    pub count: Option<u64>,
    /// Connection flags.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sluice req`: prints the reply's payload; an error (no responders, a
/// timeout, an error reply) exits 1 with its message.
pub async fn request(args: ReqArgs) -> anyhow::Result<()> {
    let client = connect(&args.client).await?;
    let mut message = Message::new(args.topic.clone(), args.payload.clone());
    if let Some(key) = &args.key {
        message = message.key(key.clone());
    }
    for (name, value) in &args.headers {
        message = message.header(name.clone(), value.clone());
    }
    let reply = client.request_message(message, args.timeout).await;
    client.close().await;
    let reply = reply.with_context(|| format!("request on {} failed", args.topic))?;
    let mut out = std::io::stdout().lock();
    std::io::Write::write_all(&mut out, &reply.payload)?;
    if !reply.payload.ends_with(b"\n") {
        std::io::Write::write_all(&mut out, b"\n")?;
    }
    Ok(())
}

/// `sluice reply`: answers requests one at a time until interrupted (or
/// `--count` of them).
pub async fn reply(args: ReplyArgs) -> anyhow::Result<()> {
    if args.exec.trim().is_empty() {
        bail!("--exec needs a command");
    }
    let client = connect(&args.client).await?;
    let mut responder = match &args.group {
        Some(group) => client.respond_in_group(&args.pattern, group).await?,
        None => client.respond(&args.pattern).await?,
    };
    eprintln!(
        "answering requests on {}{} with `{}`",
        args.pattern,
        args.group
            .as_deref()
            .map(|g| format!(" in group {g}"))
            .unwrap_or_default(),
        args.exec
    );
    let mut answered = 0u64;
    while args.count.is_none_or(|count| answered < count) {
        let request = tokio::select! {
            request = responder.next() => match request {
                Some(request) => request?,
                None => bail!("the broker ended the responder"),
            },
            _ = tokio::signal::ctrl_c() => break,
        };
        answer(&request, &args.exec).await;
        answered += 1;
    }
    drop(responder);
    client.close().await;
    Ok(())
}

/// Runs `command` for `request` and sends what it made of it.
async fn answer(request: &IncomingRequest, command: &str) {
    let sent = match run(command, request).await {
        Ok(Ok(stdout)) => {
            request
                .reply_with(Reply {
                    headers: Vec::new(),
                    payload: stdout.into(),
                })
                .await
        }
        Ok(Err(failure)) => request.reply_error(failure).await,
        Err(e) => {
            request
                .reply_error(format!("the responder could not run its command: {e:#}"))
                .await
        }
    };
    if let Err(e) = sent {
        // The requester timed out or went away: the next request goes on.
        eprintln!(
            "warning: the reply to a request on {} was not delivered: {e}",
            request.topic
        );
    }
}

/// The command's standard output if it exited 0; otherwise why not.
async fn run(command: &str, request: &IncomingRequest) -> anyhow::Result<Result<Vec<u8>, String>> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("SLUICE_TOPIC", &request.topic)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start `sh`")?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    let payload = request.payload.clone();
    // Written beside the wait, so a command that does not read all of its
    // input (or writes much before reading) cannot stall it.
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&payload).await;
    });
    let output = child
        .wait_with_output()
        .await
        .context("the command failed")?;
    let _ = feed.await;
    if output.status.success() {
        return Ok(Ok(output.stdout));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let status = match output.status.code() {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_owned(),
    };
    Ok(Err(if last.is_empty() {
        format!("the command failed ({status})")
    } else {
        format!("the command failed ({status}): {last}")
    }))
}

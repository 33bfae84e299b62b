//! A plugin's stdout and stderr, line by line into its log (stdout at
//! info level, stderr at warn).
//!
//! The stream is synchronous and always ready: a write is a line split and
//! a bounded channel send, never a wait. That is what lets the engine's
//! blocking stream calls (see `engine`) finish without entering tokio,
//! so a plugin that prints (a panic message, say) while running on an
//! async worker does not take the worker down.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::sync::lock;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use super::logs::{LogContext, MAX_LINE};

/// Where a plugin's output stream goes.
#[derive(Clone)]
pub struct LogStream {
    log: Arc<LogContext>,
    stream: &'static str,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl LogStream {
    pub fn new(log: Arc<LogContext>, stream: &'static str) -> Self {
        LogStream {
            log,
            stream,
            partial: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn write(&self, bytes: &[u8]) {
        let mut partial = lock(&self.partial);
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&partial).into_owned();
                partial.clear();
                let level = if self.stream == "stderr" {
                    "warn"
                } else {
                    "info"
                };
                self.log.line(level, self.stream, None, line);
            } else if partial.len() < MAX_LINE {
                partial.push(b);
            }
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

/// Lines are cut at [`MAX_LINE`]; a write of any size is taken at once.
const WRITE_PERMIT: usize = 1024 * 1024;

impl OutputStream for LogStream {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        LogStream::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

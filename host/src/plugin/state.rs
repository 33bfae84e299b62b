//! [`StoreState`]: what each plugin instance's `Store` owns: its WASI
//! context (nothing granted), its memory cap, its log, and its key-value
//! state.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::kv::KvHandle;
use super::log_stream::LogStream;
use super::logs::LogContext;

/// Data of one plugin instance's store.
pub struct StoreState {
    /// Where its lines go, and the batch being handled.
    pub log: Arc<LogContext>,
    /// Where its state calls go.
    pub kv: KvHandle,
    wasi: WasiCtx,
    table: ResourceTable,
    memory_cap: usize,
    /// Set when the guest asked for more memory than its cap: the trap
    /// that usually follows is reported as out of memory.
    pub memory_denied: bool,
}

impl StoreState {
    /// A fresh state: no files, no sockets, no environment, no arguments;
    /// stdout and stderr go to the plugin's log, line by line.
    pub fn new(log: Arc<LogContext>, kv: KvHandle, memory_cap: usize) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(LogStream::new(log.clone(), "stdout"))
            .stderr(LogStream::new(log.clone(), "stderr"))
            .allow_blocking_current_thread(true)
            .build();
        StoreState {
            log,
            kv,
            wasi,
            table: ResourceTable::new(),
            memory_cap,
            memory_denied: false,
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Tables and instances this many elements at most (per instance).
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

//! [`PluginEngine`]: the one wasmtime `Engine` of the broker, its linker,
//! and the epoch ticker that enforces per-call deadlines.
//!
//! Choices: the component model with `concurrency_support(false)` (a plain
//! call costs about 0.2 µs instead of 1.1 µs), the pooling allocator (a new
//! instance after a trap is a cheap slot reuse), epoch interruption (a
//! ticker thread bumps the epoch every [`TICK`]; each call gets a deadline
//! in ticks), and WASI preview 2 linked with nothing granted.
//!
//! The engine compiles components; turning one into a running plugin
//! version (`PluginEngine::load` and friends) lives with [`LoadedPlugin`]
//! in `instance`, so that the engine does not depend on what it loads.
//!
//! [`LoadedPlugin`]: super::LoadedPlugin

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::bindings::{Plugin, PluginPre};
use super::cache::{ComponentCache, LoadSource};
use super::error::PluginError;
use super::kv::{KvStores, Limits};
use super::logs::PluginLogs;
use super::state::StoreState;

/// Epoch tick: the resolution of call deadlines.
pub const TICK: Duration = Duration::from_millis(5);

pub use crate::config::MAX_PLUGIN_MEMORY;

/// Instances alive at once across all plugins.
const POOL_INSTANCES: u32 = 256;

/// The engine, shared by every plugin.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<StoreState>>,
    cache: Arc<ComponentCache>,
    ticker_stop: Arc<AtomicBool>,
    /// Where plugins' log lines go; none: to `tracing`.
    logs: Option<Arc<PluginLogs>>,
    /// Plugins' key-value state (in memory unless given a store).
    kv: Arc<KvStores>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginEngine")
    }
}

/// The WASI version whose stream calls [`link_wasi_without_tokio`]
/// replaces (the one wasmtime-wasi 48 links).
const WASI_IO_STREAMS: &str = "wasi:io/streams@0.2.12";

/// The same for the poll calls.
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";

/// What a plugin that tries to wait is told (as a trap).
const NO_WAITING: &str = "plugins may not wait (sleep, poll, a blocking read or splice): a call must answer its batch without waiting; it fails here";

/// Replaces the WASI calls that wasmtime-wasi's synchronous bindings run
/// through tokio's `Handle::block_on`, a panic on a tokio worker (where a
/// quick pipeline runs, see `pipeline::QUICK_RUN`). Blocking writes become
/// direct calls: the only output streams a plugin has are its stdout and
/// stderr ([`super::log_stream`]), which are always ready. Blocking reads
/// and skips of standard input (empty) answer at once. Polling (a sleep)
/// and splicing would wait: they trap with [`NO_WAITING`], on every path,
/// so a plugin behaves the same wherever its pipeline runs.
fn link_wasi_without_tokio(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::bindings::sync::io::streams::{Host, StreamError as WitError};
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError};
    use wasmtime_wasi::WasiView;

    type Written = wasmtime::Result<(Result<(), WitError>,)>;
    type Read = wasmtime::Result<(Result<Vec<u8>, WitError>,)>;
    type Skipped = wasmtime::Result<(Result<u64, WitError>,)>;
    fn done(state: &mut StoreState, result: Result<(), StreamError>) -> Written {
        match result {
            Ok(()) => Ok((Ok(()),)),
            Err(e) => Ok((Err(state.ctx().table.convert_stream_error(e)?),)),
        }
    }
    fn stream<'a>(
        state: &'a mut StoreState,
        stream: &Resource<DynOutputStream>,
    ) -> wasmtime::Result<&'a mut DynOutputStream> {
        Ok(state.ctx().table.get_mut(stream)?)
    }

    linker.allow_shadowing(true);
    let mut streams = linker.instance(WASI_IO_STREAMS)?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store, (s, bytes): (Resource<DynOutputStream>, Vec<u8>)| -> Written {
            let state = store.data_mut();
            let out = stream(state, &s)?;
            let result = out.write(bytes.into()).and_then(|()| out.flush());
            done(state, result)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store, (s, len): (Resource<DynOutputStream>, u64)| -> Written {
            let state = store.data_mut();
            let out = stream(state, &s)?;
            let zeroes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20)];
            let result = out.write(zeroes.into()).and_then(|()| out.flush());
            done(state, result)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |mut store, (s,): (Resource<DynOutputStream>,)| -> Written {
            let state = store.data_mut();
            let result = stream(state, &s)?.flush();
            done(state, result)
        },
    )?;
    // Standard input is empty: a read answers at once, without waiting.
    streams.func_wrap(
        "[method]input-stream.blocking-read",
        |mut store, (s, len): (Resource<DynInputStream>, u64)| -> Read {
            let state = store.data_mut();
            let input: &mut DynInputStream = state.ctx().table.get_mut(&s)?;
            let size = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20);
            match input.read(size) {
                Ok(bytes) => Ok((Ok(bytes.to_vec()),)),
                Err(e) => Ok((Err(state.ctx().table.convert_stream_error(e)?),)),
            }
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-skip",
        |mut store, (s, len): (Resource<DynInputStream>, u64)| -> Skipped {
            let state = store.data_mut();
            let input: &mut DynInputStream = state.ctx().table.get_mut(&s)?;
            let size = usize::try_from(len).unwrap_or(usize::MAX).min(1 << 20);
            match input.skip(size) {
                Ok(n) => Ok((Ok(n as u64),)),
                Err(e) => Ok((Err(state.ctx().table.convert_stream_error(e)?),)),
            }
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-splice",
        |_store, _: (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| -> Skipped {
            Err(wasmtime::Error::msg(NO_WAITING))
        },
    )?;
    let mut poll = linker.instance(WASI_IO_POLL)?;
    poll.func_wrap(
        "poll",
        |_store, _: (Vec<Resource<DynPollable>>,)| -> wasmtime::Result<(Vec<u32>,)> {
            Err(wasmtime::Error::msg(NO_WAITING))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |_store, _: (Resource<DynPollable>,)| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(NO_WAITING))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.ready",
        |_store, _: (Resource<DynPollable>,)| -> wasmtime::Result<(bool,)> {
            Err(wasmtime::Error::msg(NO_WAITING))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

impl PluginEngine {
    /// Creates the engine and starts its epoch ticker; compiled components
    /// are cached in memory only.
    pub fn new() -> Result<PluginEngine, PluginError> {
        Self::with_cache_dir(None)
    }

    /// Creates the engine and starts its epoch ticker; compiled components
    /// are cached in memory and, when given, in `cache_dir` across runs.
    /// Fails with [`PluginError::Engine`].
    pub fn with_cache_dir(
        cache_dir: Option<std::path::PathBuf>,
    ) -> Result<PluginEngine, PluginError> {
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 4)
            .max_memory_size(MAX_PLUGIN_MEMORY);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .concurrency_support(false)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        // wasmtime's error is not a `std::error::Error`: its chain goes
        // into the reason.
        let wasmtime_error = |what: &'static str| {
            move |e: wasmtime::Error| PluginError::Engine {
                reason: format!("{what}: {e:#}"),
            }
        };
        let engine =
            Engine::new(&config).map_err(wasmtime_error("cannot create the wasmtime engine"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(wasmtime_error("cannot link WASI"))?;
        link_wasi_without_tokio(&mut linker)
            .map_err(wasmtime_error("cannot link WASI streams and polls"))?;
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state: &mut StoreState| state)
            .map_err(wasmtime_error("cannot link the sluice host interface"))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.weak();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match ticking.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| PluginError::Engine {
                reason: format!("cannot start the epoch ticker thread: {e}"),
            })?;
        Ok(PluginEngine {
            cache: Arc::new(ComponentCache::new(&engine, cache_dir)),
            engine,
            linker: Arc::new(linker),
            ticker_stop,
            logs: None,
            kv: Arc::new(KvStores::in_memory(Limits::default())),
        })
    }

    /// The same engine, sending plugins' log lines to `logs`.
    pub fn with_logs(mut self, logs: Arc<PluginLogs>) -> PluginEngine {
        self.logs = Some(logs);
        self
    }

    /// The same engine, keeping plugins' state in `kv`.
    pub fn with_kv(mut self, kv: Arc<KvStores>) -> PluginEngine {
        self.kv = kv;
        self
    }

    /// Plugins' key-value state.
    pub fn kv(&self) -> &Arc<KvStores> {
        &self.kv
    }

    /// Where plugins' log lines go, if not to `tracing`.
    pub fn logs(&self) -> Option<&Arc<PluginLogs>> {
        self.logs.as_ref()
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component from bytes, or takes it from the cache when this
    /// exact file was compiled before (blocking: call off the async workers).
    pub fn compile(
        &self,
        name: &str,
        path: &Path,
        bytes: &[u8],
        digest: &[u8; 32],
    ) -> Result<(PluginPre<StoreState>, LoadSource), PluginError> {
        let (component, source) = self
            .cache
            .get_or_compile(&self.engine, digest, || Component::new(&self.engine, bytes))
            .map_err(|e| PluginError::Invalid {
                plugin: name.to_owned(),
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| PluginError::WrongWorld {
                plugin: name.to_owned(),
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })?;
        Ok((pre, source))
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        // Only the last clone stops the ticker.
        if Arc::strong_count(&self.ticker_stop) == 1 {
            self.ticker_stop.store(true, Ordering::Relaxed);
        }
    }
}

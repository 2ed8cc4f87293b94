//! The store data of one invocation ([`RunState`]): the run's WASI
//! context (nothing granted), its host capabilities, its memory and table
//! limiter, and why the epoch callback stopped it. Shared by `component`
//! (the linker is typed by it) and `invoke` (which fills it per run), so
//! neither of those depends on the other for it.

use std::time::Instant;

use delta_host_api::{HostState, HostView};
use tokio_util::sync::CancellationToken;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::stdio::BoundedPipe;

/// Why the epoch callback stopped the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Deadline,
    Cancelled,
}

/// Store data of one invocation.
pub struct RunState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) host: HostState,
    pub(crate) limiter: Limiter,
    pub(crate) deadline: Instant,
    pub(crate) cancel: CancellationToken,
    pub(crate) stop: Option<Stop>,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostView for RunState {
    fn host(&mut self) -> &mut HostState {
        &mut self.host
    }
}

/// Memory and table caps of one instance, with peak tracking.
pub(crate) struct Limiter {
    pub(crate) memory_cap: usize,
    pub(crate) memory_now: usize,
    pub(crate) memory_peak: usize,
    pub(crate) memory_refused: bool,
    pub(crate) table_cap: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Sum over all memories of the component: a component of several
        // core modules must not get the cap once per module.
        let total = self.memory_now - current.min(self.memory_now) + desired;
        if total > self.memory_cap {
            self.memory_refused = true;
            return Ok(false);
        }
        self.memory_now = total;
        self.memory_peak = self.memory_peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_cap)
    }
}

/// The WASI context of a run: nothing granted. No preopened directories, no
/// environment, no arguments, no sockets or name lookup, empty stdin;
/// stdout/stderr go to bounded buffers. Clocks and random stay available.
pub(crate) fn sandbox_wasi(stdout: &BoundedPipe, stderr: &BoundedPipe) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}

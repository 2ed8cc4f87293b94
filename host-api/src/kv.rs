//! `delta:agent/kv`: durable per-agent key-value state.
//!
//! The [`KvBackend`] scopes every operation to the calling agent and its
//! tenant (the [`CallContext`], never a guest-supplied id), checks the
//! agent's grant first and enforces the key, value and quota bounds. Without
//! a backend every call answers `not-configured`.

use async_trait::async_trait;

use crate::bindings::delta::agent::kv::Host;
pub use crate::bindings::delta::agent::kv::{Entry, KeyPage, KvError};
use crate::{CallContext, HostState};

/// A store of agents' key-value state.
#[async_trait]
pub trait KvBackend: Send + Sync {
    /// The entry under `key`, if any.
    async fn get(&self, ctx: &CallContext, key: String) -> Result<Option<Entry>, KvError>;

    /// Store `value` under `key`; the new version.
    async fn set(&self, ctx: &CallContext, key: String, value: Vec<u8>) -> Result<u64, KvError>;

    /// Remove `key`; whether it existed.
    async fn delete(&self, ctx: &CallContext, key: String) -> Result<bool, KvError>;

    /// Keys starting with `prefix`, after `cursor`, at most `limit`.
    async fn list_prefix(
        &self,
        ctx: &CallContext,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<KeyPage, KvError>;

    /// Store `value` under `key` if its version is `expected` (0: absent).
    async fn compare_and_swap(
        &self,
        ctx: &CallContext,
        key: String,
        expected: u64,
        value: Vec<u8>,
    ) -> Result<u64, KvError>;
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Entry>, KvError>> {
        let Some(kv) = self.caps.kv.clone() else {
            return Ok(Err(KvError::NotConfigured));
        };
        self.guarded(kv.get(&self.ctx, key)).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<u64, KvError>> {
        let Some(kv) = self.caps.kv.clone() else {
            return Ok(Err(KvError::NotConfigured));
        };
        self.guarded(kv.set(&self.ctx, key, value)).await
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, KvError>> {
        let Some(kv) = self.caps.kv.clone() else {
            return Ok(Err(KvError::NotConfigured));
        };
        self.guarded(kv.delete(&self.ctx, key)).await
    }

    async fn list_prefix(
        &mut self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<KeyPage, KvError>> {
        let Some(kv) = self.caps.kv.clone() else {
            return Ok(Err(KvError::NotConfigured));
        };
        self.guarded(kv.list_prefix(&self.ctx, prefix, cursor, limit))
            .await
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: u64,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<u64, KvError>> {
        let Some(kv) = self.caps.kv.clone() else {
            return Ok(Err(KvError::NotConfigured));
        };
        self.guarded(kv.compare_and_swap(&self.ctx, key, expected, value))
            .await
    }
}

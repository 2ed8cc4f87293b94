//! Guest stdout/stderr captured into bounded buffers.
//!
//! `wasmtime_wasi`'s `MemoryOutputPipe` fails writes past its capacity, and
//! Rust's `println!` panics on a failed write, so a chatty guest would crash.
//! This pipe accepts every write, keeps the first `capacity` bytes and counts
//! the rest, so output can neither grow host memory nor break the guest.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: u64,
}

/// A write-only pipe that keeps at most `capacity` bytes.
#[derive(Debug, Clone)]
pub(crate) struct BoundedPipe {
    capacity: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl BoundedPipe {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            buffer: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A poisoned lock only means a writer panicked mid-append; the bytes
        // are still a valid prefix.
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.lock();
        let room = self.capacity.saturating_sub(buffer.kept.len());
        let take = room.min(bytes.len());
        buffer.kept.extend_from_slice(&bytes[..take]);
        buffer.dropped += (bytes.len() - take) as u64;
    }

    /// Kept bytes (lossily decoded) and the number of bytes dropped.
    pub(crate) fn take(&self) -> (String, u64) {
        let mut buffer = self.lock();
        let kept = std::mem::take(&mut buffer.kept);
        (String::from_utf8_lossy(&kept).into_owned(), buffer.dropped)
    }
}

impl IsTerminal for BoundedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for BoundedPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for BoundedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // The guest may write any amount; what does not fit is counted.
        Ok(64 * 1024)
    }
}

impl AsyncWrite for BoundedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_prefix_and_counts_the_rest() {
        let mut pipe = BoundedPipe::new(5);
        pipe.write(Bytes::from_static(b"abc")).expect("write");
        pipe.write(Bytes::from_static(b"defgh"))
            .expect("write never fails");
        let (kept, dropped) = pipe.take();
        assert_eq!(kept, "abcde");
        assert_eq!(dropped, 3);
    }
}

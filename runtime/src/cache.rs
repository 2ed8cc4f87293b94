//! Content addressing and the on-disk cache of compiled components.
//!
//! A cache entry is named by the component's SHA-256 and a hash of the
//! engine's compatibility settings (Wasmtime version, target, compiler
//! flags), so a node upgrade or a settings change simply misses and
//! recompiles. Entries are written to a temporary file and renamed into
//! place, so a crash never leaves a half-written entry under a real name.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;

/// SHA-256 of a component's bytes: its identity everywhere in Delta.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Hash `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The raw hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// The text is not 64 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a component digest is 64 hexadecimal digits (SHA-256)")]
pub struct BadDigest;

impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadDigest)?;
        Ok(Self(out))
    }
}

/// Stable-for-this-binary hash of everything that makes compiled code
/// loadable by `engine`.
pub(crate) fn compatibility_key(engine: &Engine) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    compat: u64,
}

impl DiskCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            compat: compatibility_key(engine),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the compiled form of `digest` lives.
    pub(crate) fn entry(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{digest}-{:016x}.cwasm", self.compat))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_hex() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert_eq!("xyz".parse::<Digest>(), Err(BadDigest));
    }
}

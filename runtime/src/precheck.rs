//! The checks that need no compiling ([`delta_precheck`]), with the
//! runtime's pool as the slot limits and its errors as [`LoadError`]s.

pub use delta_precheck::{PrecheckError, Shape, SlotLimits};

use crate::config::{PoolingSettings, PrecheckLimits};
use crate::error::LoadError;

/// Check `bytes` against `limits` and the instance `pool` without compiling.
pub fn precheck(
    bytes: &[u8],
    limits: &PrecheckLimits,
    pool: &PoolingSettings,
) -> Result<Shape, LoadError> {
    Ok(delta_precheck::precheck(
        bytes,
        limits,
        &pool.slot_limits(),
    )?)
}

/// The size check alone (for callers that have not read the bytes yet).
pub fn over_size(size: u64, limits: &PrecheckLimits) -> Result<(), LoadError> {
    Ok(delta_precheck::over_size(size, limits)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pool_is_the_default_slot() {
        assert_eq!(
            PoolingSettings::default().slot_limits(),
            SlotLimits::default()
        );
    }
}

//! Any bytes through the precheck: refused with an error or measured, never
//! a panic, and never accepted as something that is not a component.
#![no_main]

use delta_precheck::{PrecheckLimits, SlotLimits, precheck};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = PrecheckLimits::default();
    if let Ok(shape) = precheck(data, &limits, &SlotLimits::default()) {
        assert!(data.starts_with(b"\0asm"));
        assert!(shape.functions <= limits.max_functions);
        assert!(shape.code_bytes <= limits.max_code_bytes);
        assert!(u64::from(shape.max_nesting) <= u64::from(limits.max_nesting));
    }
});

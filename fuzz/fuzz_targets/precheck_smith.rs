//! Valid components from wasm-smith (and valid core modules wrapped in a
//! component) through the precheck with tight bounds: every bound the
//! precheck reports holds, and it never panics.
#![no_main]

use arbitrary::{Result, Unstructured};
use delta_precheck::{PrecheckError, PrecheckLimits, SlotLimits, precheck};
use libfuzzer_sys::fuzz_target;

fn component(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let config: wasm_smith::Config = u.arbitrary()?;
    if u.arbitrary()? {
        Ok(wasm_smith::Component::new(config, u)?.to_bytes())
    } else {
        let module = wasm_smith::Module::new(config, u)?.to_bytes();
        let mut component = wasm_encoder::Component::new();
        component.section(&wasm_encoder::RawSection {
            id: wasm_encoder::ComponentSectionId::CoreModule.into(),
            data: &module,
        });
        Ok(component.finish())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(bytes) = component(&mut u) else {
        return;
    };
    let limits = PrecheckLimits {
        max_functions: 50,
        max_types: 50,
        max_imports: 20,
        max_exports: 20,
        max_segments: 20,
        max_modules: 4,
        ..PrecheckLimits::default()
    };
    let slot = SlotLimits {
        table_elements: 100,
        max_memory_bytes: 1 << 20,
        max_core_instance_bytes: 4096,
    };
    match precheck(&bytes, &limits, &slot) {
        Ok(shape) => {
            assert!(shape.functions <= limits.max_functions);
            assert!(shape.modules <= limits.max_modules);
        }
        // A generated component is well formed: the precheck must not call
        // it malformed or a core module.
        Err(PrecheckError::Malformed(m)) => panic!("a valid component called malformed: {m}"),
        Err(PrecheckError::CoreModule | PrecheckError::NotWasm) => {
            panic!("a component called a module")
        }
        Err(_) => {}
    }
});

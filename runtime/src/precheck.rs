//! Structural checks that are linear in the input and allocate almost
//! nothing, run before any compilation: wrong file type, truncation, a core
//! module instead of a component, and counts that predict an expensive
//! compile (functions, code bytes, nesting, modules).

use wasmparser::{Encoding, Operator, Parser, Payload};

use crate::config::{PoolingSettings, PrecheckLimits};
use crate::error::LoadError;

/// Measurements of a component, for errors and `delta inspect`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Core modules plus nested components.
    pub modules: u32,
    /// Functions with bodies, over all modules.
    pub functions: u64,
    /// Bytes of function bodies.
    pub code_bytes: u64,
    /// Largest function body.
    pub largest_function: u64,
    /// Deepest block nesting.
    pub max_nesting: u32,
}

fn over(what: &'static str, value: u64, limit: u64) -> Result<(), LoadError> {
    if value > limit {
        Err(LoadError::OverBounds { what, value, limit })
    } else {
        Ok(())
    }
}

/// Check `bytes` against `limits` and the instance `pool` without compiling.
pub fn precheck(
    bytes: &[u8],
    limits: &PrecheckLimits,
    pool: &PoolingSettings,
) -> Result<Shape, LoadError> {
    over_size(bytes.len() as u64, limits)?;
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    let mut shape = Shape::default();
    let mut first = true;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| LoadError::Malformed(e.to_string()))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if first && encoding == Encoding::Module {
                    return Err(LoadError::CoreModule);
                }
                if !first {
                    shape.modules += 1;
                    over(
                        "module count",
                        shape.modules.into(),
                        limits.max_modules.into(),
                    )?;
                }
                first = false;
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len() as u64;
                shape.functions += 1;
                shape.code_bytes += size;
                shape.largest_function = shape.largest_function.max(size);
                over("function count", shape.functions, limits.max_functions)?;
                over(
                    "code size in bytes",
                    shape.code_bytes,
                    limits.max_code_bytes,
                )?;
                over(
                    "function body size in bytes",
                    size,
                    limits.max_function_bytes,
                )?;
                let nesting = nesting(&body)?;
                shape.max_nesting = shape.max_nesting.max(nesting);
                over(
                    "block nesting depth",
                    nesting.into(),
                    limits.max_nesting.into(),
                )?;
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(|e| LoadError::Malformed(e.to_string()))?;
                    let limit = pool.table_elements as u64;
                    over("initial table size in elements", table.ty.initial, limit)?;
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(|e| LoadError::Malformed(e.to_string()))?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    let initial = memory.initial.saturating_mul(page);
                    over("initial memory in bytes", initial, pool.max_memory_bytes)?;
                }
            }
            _ => {}
        }
    }
    Ok(shape)
}

/// The size check alone (for callers that have not read the bytes yet).
pub fn over_size(size: u64, limits: &PrecheckLimits) -> Result<(), LoadError> {
    if size > limits.max_component_bytes {
        return Err(LoadError::TooLarge {
            size,
            limit: limits.max_component_bytes,
        });
    }
    Ok(())
}

fn nesting(body: &wasmparser::FunctionBody<'_>) -> Result<u32, LoadError> {
    let malformed = |e: wasmparser::BinaryReaderError| LoadError::Malformed(e.to_string());
    let mut reader = body.get_operators_reader().map_err(malformed)?;
    let (mut depth, mut max) = (0u32, 0u32);
    while !reader.eof() {
        match reader.read().map_err(malformed)? {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. } => {
                depth += 1;
                max = max.max(depth);
            }
            Operator::End => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_with_nesting(depth: usize) -> Vec<u8> {
        let body = format!("{}{}", "(block ".repeat(depth), ")".repeat(depth));
        wat::parse_str(format!(
            "(component (core module (func (export \"f\") {body})))"
        ))
        .expect("valid wat")
    }

    fn pool() -> PoolingSettings {
        PoolingSettings::default()
    }

    #[test]
    fn bounds_initial_tables_and_memories_by_the_pool() {
        let limits = PrecheckLimits::default();
        let pool = PoolingSettings {
            table_elements: 100,
            max_memory_bytes: 2 << 16,
            ..PoolingSettings::default()
        };
        let table = wat::parse_str("(component (core module (table 101 funcref)))").expect("wat");
        let err = precheck(&table, &limits, &pool).expect_err("table too big");
        assert!(
            matches!(
                err,
                LoadError::OverBounds {
                    what: "initial table size in elements",
                    value: 101,
                    limit: 100
                }
            ),
            "{err}"
        );
        let memory = wat::parse_str("(component (core module (memory 3)))").expect("wat");
        let err = precheck(&memory, &limits, &pool).expect_err("memory too big");
        assert!(
            matches!(
                err,
                LoadError::OverBounds {
                    what: "initial memory in bytes",
                    ..
                }
            ),
            "{err}"
        );
        let fine = wat::parse_str("(component (core module (memory 2) (table 100 funcref)))")
            .expect("wat");
        precheck(&fine, &limits, &pool).expect("within bounds");
    }

    #[test]
    fn refuses_non_wasm_and_truncated_and_core_modules() {
        let limits = PrecheckLimits::default();
        assert!(matches!(
            precheck(b"hello world!", &limits, &pool()),
            Err(LoadError::NotWasm)
        ));
        let component = component_with_nesting(3);
        let truncated = &component[..component.len() - 3];
        assert!(matches!(
            precheck(truncated, &limits, &pool()),
            Err(LoadError::Malformed(_))
        ));
        let module = wat::parse_str("(module (func))").expect("valid wat");
        assert!(matches!(
            precheck(&module, &limits, &pool()),
            Err(LoadError::CoreModule)
        ));
    }

    #[test]
    fn measures_and_bounds_nesting() {
        let limits = PrecheckLimits {
            max_nesting: 100,
            ..PrecheckLimits::default()
        };
        let shape = precheck(&component_with_nesting(40), &limits, &pool()).expect("within bounds");
        assert_eq!(shape.max_nesting, 40);
        assert_eq!(shape.functions, 1);
        assert_eq!(shape.modules, 1);
        let err = precheck(&component_with_nesting(101), &limits, &pool()).expect_err("too deep");
        assert!(
            matches!(
                err,
                LoadError::OverBounds {
                    what: "block nesting depth",
                    value: 101,
                    limit: 100
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bounds_size_and_function_count() {
        let limits = PrecheckLimits {
            max_component_bytes: 10,
            ..PrecheckLimits::default()
        };
        let bytes = component_with_nesting(1);
        assert!(matches!(
            precheck(&bytes, &limits, &pool()),
            Err(LoadError::TooLarge { .. })
        ));
        let funcs = "(func)".repeat(11);
        let bytes = wat::parse_str(format!("(component (core module {funcs}))")).expect("wat");
        let limits = PrecheckLimits {
            max_functions: 10,
            ..PrecheckLimits::default()
        };
        let err = precheck(&bytes, &limits, &pool()).expect_err("too many functions");
        assert!(
            matches!(
                err,
                LoadError::OverBounds {
                    what: "function count",
                    ..
                }
            ),
            "{err}"
        );
    }
}

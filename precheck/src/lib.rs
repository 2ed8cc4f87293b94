//! Checks of an uploaded component that need no compiling, linear in its
//! size and allocating almost nothing: wrong file type, truncation, a core
//! module instead of a component, counts that predict an expensive compile
//! (functions, code bytes, nesting, modules, types, imports, exports,
//! segments), a core instance that cannot fit the node's slot, and the world
//! (its exports name `run` or `verify`, and each import is one the host
//! provides).
//!
//! Its own crate, on wasmparser alone, so that the control plane refuses
//! uploads without linking Wasmtime and the fuzz targets build quickly. The
//! runtime runs it before every compile and checks the world again on the
//! compiled types, which are the authority.

use wasmparser::{
    ComponentTypeRef, ElementItems, Encoding, ExternalKind, Operator, Parser, Payload, TypeRef,
};

use serde::{Deserialize, Serialize};

/// The export an agent component has (world `delta:agent/agent`).
pub const AGENT_EXPORT: &str = "run";
/// The export a verifier component has (world `delta:agent/verifier`).
pub const VERIFIER_EXPORT: &str = "verify";

/// The Delta world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    /// `delta:agent/agent`: exports `run`.
    Agent,
    /// `delta:agent/verifier`: exports `verify`.
    Verifier,
}

impl World {
    /// The world's name in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            World::Agent => "agent",
            World::Verifier => "verifier",
        }
    }
}

/// What the node's instance slots allow (from its pooling allocator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    /// Elements in one table.
    pub table_elements: u64,
    /// Bytes of one linear memory.
    pub max_memory_bytes: u64,
    /// Bytes of one core instance's `VMContext`.
    pub max_core_instance_bytes: u64,
}

impl Default for SlotLimits {
    /// The runtime's default pool (a test there keeps the two equal).
    fn default() -> Self {
        Self {
            table_elements: 10_000,
            max_memory_bytes: 256 << 20,
            max_core_instance_bytes: 1 << 20,
        }
    }
}

/// Why a component is refused. Every variant is the upload's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrecheckError {
    /// The file is larger than [`PrecheckLimits::max_component_bytes`].
    #[error("component is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The bytes do not start with the WebAssembly magic number.
    #[error("not a WebAssembly file (missing the \\0asm header)")]
    NotWasm,
    /// A core module was given where a component is required.
    #[error(
        "this is a core WebAssembly module, not a component; build the agent for \
         wasm32-wasip2 (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    /// The binary is truncated or malformed.
    #[error("malformed component: {0}")]
    Malformed(String),
    /// A structural bound was exceeded.
    #[error("component refused before compiling: {what} is {value}, over the limit of {limit}")]
    OverBounds {
        /// What was measured (e.g. "function count").
        what: &'static str,
        /// The measured value.
        value: u64,
        /// The configured bound.
        limit: u64,
    },
    /// The component is not one of the Delta worlds.
    #[error("component does not match a Delta world: {0}")]
    WrongWorld(String),
    /// The component imports something the host does not provide.
    #[error("component imports what the host does not provide: {0}")]
    UnsupportedImport(String),
}

/// Cheap structural bounds checked before any compilation. Compile cost in
/// Cranelift grows with function count, body size and nesting; these catch
/// components that would cost seconds or gigabytes before they cost anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrecheckLimits {
    /// Size of the component file (default 50 MiB).
    pub max_component_bytes: u64,
    /// Functions defined across all core modules (default 100,000).
    pub max_functions: u64,
    /// Total bytes of function bodies (default 32 MiB).
    pub max_code_bytes: u64,
    /// Bytes of one function body (default 2 MiB).
    pub max_function_bytes: u64,
    /// Nesting depth of blocks in one function (default 1,000).
    pub max_nesting: u32,
    /// Core modules and nested components (default 64).
    pub max_modules: u32,
    /// Type definitions (core rec groups and component types) over the
    /// whole component (default 20,000). Types are interned and checked for
    /// every module before any code is compiled.
    pub max_types: u64,
    /// Imports over all modules and components (default 10,000).
    pub max_imports: u64,
    /// Exports over all modules and components (default 10,000): every
    /// exported function costs a slot in the instance and a trampoline.
    pub max_exports: u64,
    /// Data and element segments over all modules (default 10,000).
    pub max_segments: u64,
}

impl Default for PrecheckLimits {
    fn default() -> Self {
        Self {
            max_component_bytes: 50 << 20,
            max_functions: 100_000,
            max_code_bytes: 32 << 20,
            max_function_bytes: 2 << 20,
            max_nesting: 1_000,
            max_modules: 64,
            max_types: 20_000,
            max_imports: 10_000,
            max_exports: 10_000,
            max_segments: 10_000,
        }
    }
}

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
    /// The Delta world, once the checks passed (`None` only in a shape
    /// built before them).
    pub world: Option<World>,
}

fn over(what: &'static str, value: u64, limit: u64) -> Result<(), PrecheckError> {
    if value > limit {
        Err(PrecheckError::OverBounds { what, value, limit })
    } else {
        Ok(())
    }
}

/// Bytes Wasmtime's `VMContext` spends per item of a core instance, rounded
/// up (wasmtime 48, 64-bit hosts: a `VMFuncRef` is four words, an imported
/// function three, a global 16 bytes, a table or memory two words). Only
/// used to refuse, before compiling, a module whose instance cannot fit the
/// pool's slot: Wasmtime would otherwise find out after a full compile.
const FUNC_REF_BYTES: u64 = 32;
const IMPORTED_FUNC_BYTES: u64 = 24;
const GLOBAL_BYTES: u64 = 16;
const TABLE_OR_MEMORY_BYTES: u64 = 16;

/// Tables, and memories, one module may define: what the runtime's pool
/// allows (Wasmtime's `max_tables_per_module`, and `max_memories_per_module`
/// as the runtime's engine sets it).
const MAX_DEFINED_PER_MODULE: u64 = 1;

/// Counters of the core module being read (nested modules each get one).
#[derive(Default)]
struct ModuleCounts {
    imported_funcs: u64,
    /// Functions that may escape as `funcref`s: exported or in element
    /// segments (an upper bound: one function can be counted twice).
    escaping_funcs: u64,
    globals: u64,
    tables_and_memories: u64,
}

impl ModuleCounts {
    fn instance_bytes(&self) -> u64 {
        self.escaping_funcs
            .saturating_mul(FUNC_REF_BYTES)
            .saturating_add(self.imported_funcs.saturating_mul(IMPORTED_FUNC_BYTES))
            .saturating_add(self.globals.saturating_mul(GLOBAL_BYTES))
            .saturating_add(
                self.tables_and_memories
                    .saturating_mul(TABLE_OR_MEMORY_BYTES),
            )
    }
}

enum Frame {
    Module(ModuleCounts),
    Component,
}

/// Check `bytes` against `limits` and the instance `pool` without compiling:
/// structure and counts, then the world (the top-level exports name `run` or
/// `verify`, and every top-level import is one the host provides). Every
/// refusal here is the upload's fault, and costs a linear scan.
pub fn precheck(
    bytes: &[u8],
    limits: &PrecheckLimits,
    pool: &SlotLimits,
) -> Result<Shape, PrecheckError> {
    over_size(bytes.len() as u64, limits)?;
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(PrecheckError::NotWasm);
    }
    let malformed = |e: wasmparser::BinaryReaderError| PrecheckError::Malformed(e.to_string());
    let mut shape = Shape::default();
    let mut frames: Vec<Frame> = Vec::new();
    let mut world_imports: Vec<String> = Vec::new();
    let mut world_exports: Vec<String> = Vec::new();
    let (mut types, mut imports, mut exports, mut segments) = (0u64, 0u64, 0u64, 0u64);
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(malformed)?;
        let top_level = frames.len() == 1;
        let mut module = match frames.last_mut() {
            Some(Frame::Module(counts)) => Some(counts),
            _ => None,
        };
        match payload {
            Payload::Version { encoding, .. } => {
                if frames.is_empty() && encoding == Encoding::Module {
                    return Err(PrecheckError::CoreModule);
                }
                if !frames.is_empty() {
                    shape.modules += 1;
                    over(
                        "module count",
                        shape.modules.into(),
                        limits.max_modules.into(),
                    )?;
                }
                frames.push(match encoding {
                    Encoding::Module => Frame::Module(ModuleCounts::default()),
                    Encoding::Component => Frame::Component,
                });
            }
            Payload::End(_) => {
                if let Some(Frame::Module(counts)) = frames.pop() {
                    over(
                        "estimated core instance size in bytes",
                        counts.instance_bytes(),
                        pool.max_core_instance_bytes,
                    )?;
                }
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
                over(
                    "tables defined in one module",
                    reader.count().into(),
                    MAX_DEFINED_PER_MODULE,
                )?;
                for table in reader {
                    let table = table.map_err(malformed)?;
                    let limit = pool.table_elements;
                    over("initial table size in elements", table.ty.initial, limit)?;
                }
            }
            Payload::MemorySection(reader) => {
                over(
                    "memories defined in one module",
                    reader.count().into(),
                    MAX_DEFINED_PER_MODULE,
                )?;
                for memory in reader {
                    let memory = memory.map_err(malformed)?;
                    // Wasmtime is built without threads: no shared memory.
                    over("shared memories", u64::from(memory.shared), 0)?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    let initial = memory.initial.saturating_mul(page);
                    over("initial memory in bytes", initial, pool.max_memory_bytes)?;
                }
            }
            Payload::TypeSection(reader) => {
                // A count of rec groups; each may hold many types.
                for group in reader {
                    types += group.map_err(malformed)?.types().count() as u64;
                    over("type count", types, limits.max_types)?;
                }
            }
            Payload::CoreTypeSection(reader) => {
                types += u64::from(reader.count());
                over("type count", types, limits.max_types)?;
            }
            Payload::ComponentTypeSection(reader) => {
                types += u64::from(reader.count());
                over("type count", types, limits.max_types)?;
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(malformed)?;
                    imports += 1;
                    over("import count", imports, limits.max_imports)?;
                    if let Some(counts) = module.as_deref_mut() {
                        match import.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => counts.imported_funcs += 1,
                            TypeRef::Global(_) => counts.globals += 1,
                            TypeRef::Table(_) | TypeRef::Memory(_) => {
                                counts.tables_and_memories += 1
                            }
                            TypeRef::Tag(_) => {}
                        }
                    }
                }
            }
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(malformed)?;
                    imports += 1;
                    over("import count", imports, limits.max_imports)?;
                    // Type imports are the world's own names for types it
                    // `use`s (e.g. `task`); only what the host must supply
                    // is checked.
                    if top_level && !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        world_imports.push(import.name.name.to_owned());
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(malformed)?;
                    exports += 1;
                    over("export count", exports, limits.max_exports)?;
                    if let Some(counts) = module.as_deref_mut()
                        && matches!(export.kind, ExternalKind::Func | ExternalKind::FuncExact)
                    {
                        counts.escaping_funcs += 1;
                    }
                }
            }
            Payload::ComponentExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(malformed)?;
                    exports += 1;
                    over("export count", exports, limits.max_exports)?;
                    if top_level {
                        world_exports.push(export.name.name.to_owned());
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                if let Some(counts) = module.as_deref_mut() {
                    counts.globals += u64::from(reader.count());
                }
            }
            Payload::ElementSection(reader) => {
                segments += u64::from(reader.count());
                over("segment count", segments, limits.max_segments)?;
                for element in reader {
                    let element = element.map_err(malformed)?;
                    let items = match element.items {
                        ElementItems::Functions(items) => items.count(),
                        ElementItems::Expressions(_, items) => items.count(),
                    };
                    if let Some(counts) = module.as_deref_mut() {
                        counts.escaping_funcs += u64::from(items);
                    }
                }
            }
            Payload::DataSection(reader) => {
                segments += u64::from(reader.count());
                over("segment count", segments, limits.max_segments)?;
            }
            _ => {}
        }
    }
    // Defined tables and memories are bounded per component by the pool;
    // imported ones are counted in the instance estimate above.
    shape.world = Some(check_world(&world_imports, &world_exports)?);
    Ok(shape)
}

/// The world a component implements, from its top-level export names.
pub fn world_of(exports: &[String]) -> Result<World, PrecheckError> {
    if exports.iter().any(|e| e == AGENT_EXPORT) {
        Ok(World::Agent)
    } else if exports.iter().any(|e| e == VERIFIER_EXPORT) {
        Ok(World::Verifier)
    } else {
        Err(PrecheckError::WrongWorld(format!(
            "it exports neither `{AGENT_EXPORT}` (world delta:agent/agent@0.1.0) nor \
             `{VERIFIER_EXPORT}` (world delta:agent/verifier@0.1.0); its exports are [{}]",
            exports.join(", ")
        )))
    }
}

/// Refuse an import the world does not provide.
pub fn check_import(world: World, name: &str) -> Result<(), PrecheckError> {
    if import_allowed(world, name) {
        return Ok(());
    }
    Err(PrecheckError::UnsupportedImport(format!(
        "`{name}` is not available to the {} world (allowed: wasi:* and {})",
        world.name(),
        match world {
            World::Agent => "delta:agent/*@0.1.0",
            World::Verifier => "delta:agent/log@0.1.0",
        }
    )))
}

fn check_world(imports: &[String], exports: &[String]) -> Result<World, PrecheckError> {
    let world = world_of(exports)?;
    imports
        .iter()
        .try_for_each(|import| check_import(world, import))?;
    Ok(world)
}

fn import_allowed(world: World, name: &str) -> bool {
    if name.starts_with("wasi:") {
        return true;
    }
    match world {
        // Any 0.1.x: the linker matches semver-compatible versions.
        World::Agent => name
            .strip_prefix("delta:agent/")
            .and_then(|rest| rest.split_once('@'))
            .is_some_and(|(_, version)| compatible(version)),
        World::Verifier => ["delta:agent/log@", "delta:agent/types@"]
            .iter()
            .any(|prefix| name.strip_prefix(prefix).is_some_and(compatible)),
    }
}

/// `0.1.x`: what the host's `delta:agent@0.1.0` bindings link against.
fn compatible(version: &str) -> bool {
    version
        .strip_prefix("0.1.")
        .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
}

/// The size check alone (for callers that have not read the bytes yet).
pub fn over_size(size: u64, limits: &PrecheckLimits) -> Result<(), PrecheckError> {
    if size > limits.max_component_bytes {
        return Err(PrecheckError::TooLarge {
            size,
            limit: limits.max_component_bytes,
        });
    }
    Ok(())
}

fn nesting(body: &wasmparser::FunctionBody<'_>) -> Result<u32, PrecheckError> {
    let malformed = |e: wasmparser::BinaryReaderError| PrecheckError::Malformed(e.to_string());
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

    /// A component with `inner` and a top-level export named `run`, which
    /// is all the world check reads (the precheck validates nothing).
    fn agent(inner: &str) -> Vec<u8> {
        wat::parse_str(format!(
            "(component {inner} (type $run (func)) (export \"run\" (type $run)))"
        ))
        .expect("valid wat")
    }

    fn component_with_nesting(depth: usize) -> Vec<u8> {
        let body = format!("{}{}", "(block ".repeat(depth), ")".repeat(depth));
        agent(&format!("(core module (func (export \"f\") {body}))"))
    }

    fn pool() -> SlotLimits {
        SlotLimits::default()
    }

    #[test]
    fn bounds_initial_tables_and_memories_by_the_pool() {
        let limits = PrecheckLimits::default();
        let pool = SlotLimits {
            table_elements: 100,
            max_memory_bytes: 2 << 16,
            ..SlotLimits::default()
        };
        let table = agent("(core module (table 101 funcref))");
        let err = precheck(&table, &limits, &pool).expect_err("table too big");
        assert!(
            matches!(
                err,
                PrecheckError::OverBounds {
                    what: "initial table size in elements",
                    value: 101,
                    limit: 100
                }
            ),
            "{err}"
        );
        let memory = agent("(core module (memory 3))");
        let err = precheck(&memory, &limits, &pool).expect_err("memory too big");
        assert!(
            matches!(
                err,
                PrecheckError::OverBounds {
                    what: "initial memory in bytes",
                    ..
                }
            ),
            "{err}"
        );
        let fine = agent("(core module (memory 2) (table 100 funcref))");
        precheck(&fine, &limits, &pool).expect("within bounds");
    }

    #[test]
    fn refuses_non_wasm_and_truncated_and_core_modules() {
        let limits = PrecheckLimits::default();
        assert!(matches!(
            precheck(b"hello world!", &limits, &pool()),
            Err(PrecheckError::NotWasm)
        ));
        let component = component_with_nesting(3);
        let truncated = &component[..component.len() - 3];
        assert!(matches!(
            precheck(truncated, &limits, &pool()),
            Err(PrecheckError::Malformed(_))
        ));
        let module = wat::parse_str("(module (func))").expect("valid wat");
        assert!(matches!(
            precheck(&module, &limits, &pool()),
            Err(PrecheckError::CoreModule)
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
                PrecheckError::OverBounds {
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
            Err(PrecheckError::TooLarge { .. })
        ));
        let funcs = "(func)".repeat(11);
        let bytes = agent(&format!("(core module {funcs})"));
        let limits = PrecheckLimits {
            max_functions: 10,
            ..PrecheckLimits::default()
        };
        let err = precheck(&bytes, &limits, &pool()).expect_err("too many functions");
        assert!(
            matches!(
                err,
                PrecheckError::OverBounds {
                    what: "function count",
                    ..
                }
            ),
            "{err}"
        );
    }

    fn over_bound(err: PrecheckError, expected: &str) {
        match err {
            PrecheckError::OverBounds { what, .. } if what == expected => {}
            other => panic!("expected {expected}, got {other}"),
        }
    }

    #[test]
    fn bounds_exports_imports_types_and_segments() {
        let limits = PrecheckLimits {
            max_exports: 10,
            max_imports: 10,
            max_types: 10,
            max_segments: 10,
            ..PrecheckLimits::default()
        };
        let exports: String = (0..10)
            .map(|i| format!("(func (export \"f{i}\"))"))
            .collect();
        // Ten core exports plus the component's `run`.
        let err = precheck(
            &agent(&format!("(core module {exports})")),
            &limits,
            &pool(),
        );
        over_bound(err.expect_err("too many exports"), "export count");
        let imports: String = (0..11)
            .map(|i| format!("(import \"m\" \"f{i}\" (func))"))
            .collect();
        let err = precheck(
            &agent(&format!("(core module {imports})")),
            &limits,
            &pool(),
        );
        over_bound(err.expect_err("too many imports"), "import count");
        let types: String = (0..11)
            .map(|i| format!("(type (func (param {})))", "i32 ".repeat(i + 1)))
            .collect();
        let err = precheck(&agent(&format!("(core module {types})")), &limits, &pool());
        over_bound(err.expect_err("too many types"), "type count");
        let data: String = (0..11).map(|_| "(data (i32.const 0) \"x\")").collect();
        let err = precheck(
            &agent(&format!("(core module (memory 1) {data})")),
            &limits,
            &pool(),
        );
        over_bound(err.expect_err("too many segments"), "segment count");
    }

    #[test]
    fn refuses_an_instance_that_cannot_fit_its_slot() {
        // 40,000 functions referenced from a table: 1.28 MB of function
        // references, over Wasmtime's default 1 MiB instance slot, and well
        // under every count bound.
        let count = 40_000;
        let funcs = "(func)".repeat(count);
        let elems: String = (0..count).map(|i| format!(" {i}")).collect();
        let bytes = agent(&format!(
            "(core module {funcs} (table {count} funcref) (elem (i32.const 0) func{elems}))"
        ));
        let pool = SlotLimits {
            table_elements: count as u64,
            ..SlotLimits::default()
        };
        let err = precheck(&bytes, &PrecheckLimits::default(), &pool).expect_err("too big");
        over_bound(err, "estimated core instance size in bytes");
    }

    #[test]
    fn refuses_what_the_pool_cannot_hold_per_module() {
        let limits = PrecheckLimits::default();
        let two_tables = agent("(core module (table 1 funcref) (table 1 funcref))");
        let err = precheck(&two_tables, &limits, &pool()).expect_err("two tables");
        over_bound(err, "tables defined in one module");
        let two_memories = agent("(core module (memory 1) (memory 1))");
        let err = precheck(&two_memories, &limits, &pool()).expect_err("two memories");
        over_bound(err, "memories defined in one module");
        let shared = agent("(core module (memory 1 1 shared))");
        let err = precheck(&shared, &limits, &pool()).expect_err("shared");
        over_bound(err, "shared memories");
    }

    #[test]
    fn accepts_compatible_versions_of_the_delta_package_only() {
        let with = |import: &str| {
            wat::parse_str(format!(
                "(component (import \"{import}\" (instance)) \
                 (type $run (func)) (export \"run\" (type $run)))"
            ))
            .expect("wat")
        };
        let (limits, slot) = (PrecheckLimits::default(), pool());
        precheck(&with("delta:agent/llm@0.1.3"), &limits, &slot).expect("a patch release");
        for refused in [
            "delta:agent/llm@0.2.0",
            "delta:agent/llm@0.1.",
            "delta:agent/llm",
        ] {
            let err = precheck(&with(refused), &limits, &slot).expect_err(refused);
            assert!(matches!(err, PrecheckError::UnsupportedImport(_)), "{err}");
        }
    }

    #[test]
    fn checks_the_world_before_compiling() {
        let none = wat::parse_str("(component (core module))").expect("wat");
        let err = precheck(&none, &PrecheckLimits::default(), &pool()).expect_err("no world");
        assert!(matches!(err, PrecheckError::WrongWorld(_)), "{err}");
        let foreign = wat::parse_str(
            "(component (import \"acme:secret/files@1.0.0\" (instance)) \
             (type $run (func)) (export \"run\" (type $run)))",
        )
        .expect("wat");
        let err = precheck(&foreign, &PrecheckLimits::default(), &pool()).expect_err("import");
        assert!(matches!(err, PrecheckError::UnsupportedImport(_)), "{err}");
        // A verifier may log, and nothing else of Delta's.
        let verifier = wat::parse_str(
            "(component (import \"delta:agent/llm@0.1.0\" (instance)) \
             (type $v (func)) (export \"verify\" (type $v)))",
        )
        .expect("wat");
        let err = precheck(&verifier, &PrecheckLimits::default(), &pool()).expect_err("llm");
        assert!(matches!(err, PrecheckError::UnsupportedImport(_)), "{err}");
        let agent = wat::parse_str(
            "(component (import \"delta:agent/llm@0.1.0\" (instance)) \
             (import \"wasi:cli/environment@0.2.6\" (instance)) \
             (type $run (func)) (export \"run\" (type $run)))",
        )
        .expect("wat");
        precheck(&agent, &PrecheckLimits::default(), &pool()).expect("an agent may");
    }
}

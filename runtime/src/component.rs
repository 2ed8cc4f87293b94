//! A loaded component: compiled code, its world, its pre-instantiation and a
//! description of its imports and exports.

use std::fmt::Write as _;

use delta_host_api::bindings::AgentPre;
use delta_host_api::bindings::verifier::VerifierPre;
use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{Component, Linker};

use crate::cache::Digest;
use crate::error::LoadError;
use crate::precheck::Shape;
use crate::run_state::RunState;

pub use delta_precheck::World;

pub(crate) enum Pre {
    Agent(AgentPre<RunState>),
    Verifier(VerifierPre<RunState>),
}

/// A compiled, validated and pre-linked component, ready to instantiate.
/// Shared (`Arc`) between all invocations of the same bytes.
pub struct LoadedComponent {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) shape: Shape,
    pub(crate) pre: Pre,
    pub(crate) description: Description,
}

impl LoadedComponent {
    /// SHA-256 of the component's bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The world it implements.
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Agent(_) => World::Agent,
            Pre::Verifier(_) => World::Verifier,
        }
    }

    /// Size of the component file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Structural measurements taken before compiling.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Imports and exports, with their types.
    pub fn description(&self) -> &Description {
        &self.description
    }
}

/// Imports and exports of a component, rendered as WIT-like text.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Description {
    /// `(name, items)` for each import; items are function signatures.
    pub imports: Vec<Item>,
    /// Exports, likewise.
    pub exports: Vec<Item>,
}

/// One import or export.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Its name, e.g. `delta:agent/log@0.1.0` or `run`.
    pub name: String,
    /// `func(...)`, `instance`, ...
    pub kind: String,
    /// For instances: the functions it contains, as `name: func(...)`.
    pub functions: Vec<String>,
}

/// Work out the world of `component`, check its imports against what the
/// world allows, and pre-instantiate it with `linker`.
pub(crate) fn prepare(
    engine: &Engine,
    linker: &Linker<RunState>,
    component: &Component,
) -> Result<(Pre, Description), LoadError> {
    let ty = component.component_type();
    let description = Description {
        imports: ty
            .imports(engine)
            .map(|(name, item)| describe(engine, name, &item.ty))
            .collect(),
        exports: ty
            .exports(engine)
            .map(|(name, item)| describe(engine, name, &item.ty))
            .collect(),
    };
    let exports: Vec<String> = description.exports.iter().map(|e| e.name.clone()).collect();
    // The precheck refused these before compiling; checked again on the
    // compiled types, which are the authority.
    let world = delta_precheck::world_of(&exports)?;
    for import in &description.imports {
        delta_precheck::check_import(world, &import.name)?;
    }
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| LoadError::UnsupportedImport(format!("{e:#}")))?;
    let wrong = |e: wasmtime::Error| LoadError::WrongWorld(format!("{e:#}"));
    let pre = match world {
        World::Agent => Pre::Agent(AgentPre::new(instance_pre).map_err(wrong)?),
        World::Verifier => Pre::Verifier(VerifierPre::new(instance_pre).map_err(wrong)?),
    };
    Ok((pre, description))
}

fn describe(engine: &Engine, name: &str, item: &ComponentItem) -> Item {
    let (kind, functions) = match item {
        ComponentItem::ComponentFunc(f) => (render_func(f), Vec::new()),
        ComponentItem::ComponentInstance(instance) => (
            "instance".to_owned(),
            instance
                .exports(engine)
                .filter_map(|(n, i)| match i.ty {
                    ComponentItem::ComponentFunc(f) => Some(format!("{n}: {}", render_func(&f))),
                    _ => None,
                })
                .collect(),
        ),
        ComponentItem::CoreFunc(_) => ("core func".to_owned(), Vec::new()),
        ComponentItem::Module(_) => ("core module".to_owned(), Vec::new()),
        ComponentItem::Component(_) => ("component".to_owned(), Vec::new()),
        ComponentItem::Type(_) => ("type".to_owned(), Vec::new()),
        ComponentItem::Resource(_) => ("resource".to_owned(), Vec::new()),
    };
    Item {
        name: name.to_owned(),
        kind,
        functions,
    }
}

fn render_func(f: &wasmtime::component::types::ComponentFunc) -> String {
    let mut s = String::from("func(");
    for (i, (name, ty)) in f.params().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{name}: {}", render_type(&ty, 0));
    }
    s.push(')');
    let results: Vec<String> = f.results().map(|t| render_type(&t, 0)).collect();
    if !results.is_empty() {
        let _ = write!(s, " -> {}", results.join(", "));
    }
    s
}

/// Structural rendering (component types carry no nominal names); records
/// and variants are expanded two levels deep.
fn render_type(ty: &Type, depth: usize) -> String {
    let inner = |t: &Type| render_type(t, depth + 1);
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", inner(&l.ty())),
        Type::Option(o) => format!("option<{}>", inner(&o.ty())),
        Type::Result(r) => format!(
            "result<{}, {}>",
            r.ok().map_or("_".into(), |t| inner(&t)),
            r.err().map_or("_".into(), |t| inner(&t))
        ),
        Type::Tuple(t) => format!(
            "tuple<{}>",
            t.types().map(|t| inner(&t)).collect::<Vec<_>>().join(", ")
        ),
        Type::Record(r) if depth < 2 => format!(
            "record {{ {} }}",
            r.fields()
                .map(|f| format!("{}: {}", f.name, inner(&f.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Variant(v) if depth < 2 => format!(
            "variant {{ {} }}",
            v.cases()
                .map(|c| match &c.ty {
                    Some(t) => format!("{}({})", c.name, inner(t)),
                    None => c.name.to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        Type::Record(_) => "record {..}".into(),
        Type::Variant(_) => "variant {..}".into(),
        other => format!("{other:?}")
            .split(['(', ' '])
            .next()
            .unwrap_or("type")
            .to_lowercase(),
    }
}

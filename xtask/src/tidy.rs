//! `cargo xtask tidy`: rules about the source tree that no compiler checks
//! and that reviews keep missing, each with what to do when it breaks.
//!
//! - Every WIT interface a world in `wit/` imports has its host side in a
//!   `delta-host-api` module of the same name (`host-api/src/<name>.rs`,
//!   declared in `host-api/src/lib.rs`), the layout that crate's docs state.
//! - Every guest `delta-guest-artifacts` exposes (each component crate in
//!   `examples/`) is used by some test: a guest without a test is a
//!   forgotten guest.
//! - No `.rs` file is past [`MAX_LINES`] lines, except generated code
//!   (marked `@generated` in its first lines, as rustfmt and cargo mark it;
//!   code generated at build time lives in `target/`, which is not read).
//! - The control plane neither depends on `delta-node` nor links Wasmtime:
//!   `delta-control`'s normal dependencies, resolved as `cargo build -p
//!   delta-control` resolves them, contain neither.
//! - `cargo build --workspace` and `cargo test --workspace` resolve the
//!   same features for every package they share, so the binaries built
//!   after the tests (peers, contract, clients, dashboard in CI) reuse the
//!   test build's artifacts instead of compiling the workspace again.
//!
//! The rules are pure functions over text (unit-tested below on small
//! inputs); [`run`] reads the tree and asks cargo for the two lists it owns
//! (the guests and the dependency tree). Every broken rule is reported, not
//! only the first.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Longest `.rs` file allowed, in lines.
pub const MAX_LINES: usize = 1_500;

/// The control plane's package.
const CONTROL: &str = "delta-control";

/// Packages the control plane must not have among its normal dependencies:
/// the node (it speaks to nodes over HTTP only) and Wasmtime (it never runs
/// guests, so linking a compiler is dead weight and attack surface).
const FORBIDDEN_IN_CONTROL: &[&str] = &["delta-node", "wasmtime"];

/// How many leading lines may carry the `@generated` marker.
const GENERATED_MARKER_LINES: usize = 5;

/// One broken rule: which, and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Short name of the rule.
    pub rule: &'static str,
    /// Where, what, and what to do.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.rule, self.message)
    }
}

/// A Rust source file, its path relative to the repository root.
#[derive(Debug, Clone)]
pub struct Source {
    /// Relative to the repository root, e.g. `control/src/lib.rs`.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// Check every rule over the tree at `root`; fail listing every broken one.
pub fn run(root: &Path, cargo: &OsStr) -> Result<()> {
    let sources = rust_sources(root)?;
    let wit = wit_files(root)?;
    let host_api_lib = root.join("host-api/src/lib.rs");
    let host_api_lib = std::fs::read_to_string(&host_api_lib)
        .with_context(|| format!("reading {}", host_api_lib.display()))?;
    let guests = xtask::guest_names(root, Path::new(cargo))?;
    let tree = cargo_tree(root, cargo, CONTROL)?;
    let build_features = workspace_features(root, cargo, false)?;
    let test_features = workspace_features(root, cargo, true)?;

    let mut failures = wit_interfaces_have_modules(&wit, &host_api_lib)?;
    failures.extend(guests_used_by_tests(&guests, &sources));
    failures.extend(long_files(&sources, MAX_LINES));
    failures.extend(forbidden_dependencies(
        CONTROL,
        &tree,
        FORBIDDEN_IN_CONTROL,
    )?);
    failures.extend(feature_sets_match(&build_features, &test_features));

    if failures.is_empty() {
        println!(
            "tidy: all rules hold ({} .rs files, {} guests, {} WIT files)",
            sources.len(),
            guests.len(),
            wit.len()
        );
        return Ok(());
    }
    for failure in &failures {
        println!("{failure}\n");
    }
    bail!("{} tidy rule(s) broken (listed above)", failures.len())
}

/// Every `.rs` file under `root`, skipping build output (`target/`) and
/// hidden directories (`.git`, `.cargo`, ...).
fn rust_sources(root: &Path) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry
                .file_type()
                .with_context(|| format!("reading the type of {}", path.display()))?;
            if kind.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    dirs.push(path);
                }
            } else if kind.is_file() && name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let path = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                sources.push(Source { path, text });
            }
        }
    }
    sources.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(sources)
}

/// The package's own WIT files (`wit/*.wit`; `wit/deps/` holds other
/// packages, whose host side is not ours).
fn wit_files(root: &Path) -> Result<Vec<(PathBuf, String)>> {
    let dir = root.join("wit");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "wit") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let path = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            files.push((path, text));
        }
    }
    files.sort();
    Ok(files)
}

/// `cargo tree` of `package`'s normal dependencies, one `<depth><name>
/// v<version> ...` line each. Not `cargo metadata`: its resolve unifies
/// features over the whole workspace (it predates the per-package feature
/// resolver), so an optional dependency that only another member turns on
/// would show up as linked into the control plane when it is not.
/// `cargo tree -e normal` resolves as `cargo build -p` does, without dev
/// dependencies' features.
fn cargo_tree(root: &Path, cargo: &OsStr, package: &str) -> Result<String> {
    let output = Command::new(cargo)
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "depth"])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!("cargo tree -p {package} failed ({})", output.status);
    }
    String::from_utf8(output.stdout).context("cargo tree printed non-UTF-8")
}

/// `cargo tree --workspace` as `<name> v<version> [path] <features>` lines,
/// resolved as `cargo build` does (`with_dev` false) or as `cargo test`
/// does (dev-dependencies' features unified in).
fn workspace_features(root: &Path, cargo: &OsStr, with_dev: bool) -> Result<String> {
    let edges = if with_dev {
        "normal,build,dev"
    } else {
        "normal,build"
    };
    let output = Command::new(cargo)
        .args(["tree", "--workspace", "-e", edges, "--prefix", "none"])
        .args(["-f", "{p} {f}"])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!(
            "cargo tree --workspace -e {edges} failed ({})",
            output.status
        );
    }
    String::from_utf8(output.stdout).context("cargo tree printed non-UTF-8")
}

/// Each package's feature lists (`name vX.Y.Z` -> the lists it is built
/// with: a package built for the host, by a proc-macro or build script,
/// and for the target can have two).
fn features_by_package(tree: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut packages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in tree.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        // After the name and version: `(path)`, `(proc-macro)`, `(*)`, and
        // the comma-separated features (one word, possibly absent).
        let features = words
            .rfind(|w| !w.starts_with('(') && !w.ends_with(')'))
            .unwrap_or("");
        packages
            .entry(format!("{name} {version}"))
            .or_default()
            .insert(features.to_owned());
    }
    packages
}

/// Rule: every package in both trees (`cargo tree --prefix none -f "{p}
/// {f}"` output without and with dev-dependencies) has the same features
/// in both. One that differs is compiled twice, with everything above it.
pub fn feature_sets_match(build: &str, test: &str) -> Vec<Failure> {
    let build = features_by_package(build);
    let test = features_by_package(test);
    build
        .iter()
        .filter_map(|(package, built)| {
            let tested = test.get(package)?;
            (built != tested).then(|| Failure {
                rule: "feature-unification",
                message: format!(
                    "{package} is built with features {built:?} by `cargo build --workspace` \
                     but {tested:?} by `cargo test --workspace` (a dev-dependency turns more \
                     on), so the binaries built after the tests recompile it and everything \
                     above it. Ask for the same features in the feature-unification block of \
                     the root Cargo.toml's [dependencies]."
                ),
            })
        })
        .collect()
}

/// Rule: every interface that a world imports (the host implements it) has
/// a module of the same name (kebab-case to snake_case) declared in
/// host-api's `lib.rs`. Interfaces only `use`d for their types (`types`)
/// and other packages' interfaces (`wasi:...`) need none.
pub fn wit_interfaces_have_modules(
    wit: &[(PathBuf, String)],
    host_api_lib: &str,
) -> Result<Vec<Failure>> {
    let cleaned: Vec<(&Path, String)> = wit
        .iter()
        .map(|(path, text)| Ok((path.as_path(), strip_wit_comments(text)?)))
        .collect::<Result<_>>()?;
    let package = cleaned.iter().find_map(|(_, text)| package_name(text));
    let modules = declared_modules(host_api_lib);
    // Interface -> (file, worlds importing it), in a stable order.
    let mut imports: BTreeMap<String, (PathBuf, Vec<String>)> = BTreeMap::new();
    for (path, text) in &cleaned {
        for (world, interface) in world_imports(text, package.as_deref())
            .with_context(|| format!("parsing {}", path.display()))?
        {
            imports
                .entry(interface)
                .or_insert_with(|| (path.to_path_buf(), Vec::new()))
                .1
                .push(world);
        }
    }
    Ok(imports
        .into_iter()
        .filter_map(|(interface, (path, worlds))| {
            let module = interface.replace('-', "_");
            if modules.contains(&module) {
                return None;
            }
            Some(Failure {
                rule: "wit-host-module",
                message: format!(
                    "{}: interface `{interface}` is imported by world(s) {} but delta-host-api has \
                     no module `{module}`. Put its host side in host-api/src/{module}.rs (a \
                     backend trait and the generated `Host` impl that checks the run's deadline, \
                     like host-api/src/log.rs) and declare `pub mod {module};` in \
                     host-api/src/lib.rs.",
                    path.display(),
                    worlds
                        .iter()
                        .map(|w| format!("`{w}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            })
        })
        .collect())
}

/// Remove `//` and (nested) `/* */` comments; WIT has no string literals,
/// so no comment marker can hide inside one.
fn strip_wit_comments(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut block_depth = 0usize;
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        if block_depth > 0 {
            match (c, next) {
                ('*', Some('/')) => {
                    chars.next();
                    block_depth -= 1;
                    out.push(' ');
                }
                ('/', Some('*')) => {
                    chars.next();
                    block_depth += 1;
                }
                ('\n', _) => out.push('\n'),
                _ => {}
            }
            continue;
        }
        match (c, next) {
            ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                block_depth = 1;
            }
            _ => out.push(c),
        }
    }
    if block_depth > 0 {
        bail!("unterminated /* comment");
    }
    Ok(out)
}

/// `delta:agent` from `package delta:agent@0.1.0;` (comments stripped).
fn package_name(text: &str) -> Option<String> {
    text.split(';').find_map(|statement| {
        let mut words = statement.split_whitespace();
        (words.next()? == "package").then_some(())?;
        let name = words.next()?;
        Some(name.split('@').next().unwrap_or(name).to_owned())
    })
}

/// `(world, interface)` for every `import <interface>;` of a world in this
/// package (comments stripped). Inline imports (`import f: func(...)`,
/// `import x: interface { ... }`) and other packages' interfaces are
/// skipped; `delta:agent/log` counts as `log` when `package` is
/// `delta:agent`.
fn world_imports(text: &str, package: Option<&str>) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    let mut depth = 0usize;
    // Text at depth 0 since the last item ended: the header of the next block.
    let mut header = String::new();
    // The world being read and its body with nested blocks removed.
    let mut world: Option<(String, String)> = None;
    for c in text.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    let words: Vec<&str> = header.split_whitespace().collect();
                    if let ["world", name] = words[..] {
                        world = Some((name.trim_start_matches('%').to_owned(), String::new()));
                    }
                    header.clear();
                }
                depth += 1;
            }
            '}' => {
                depth = depth
                    .checked_sub(1)
                    .context("a `}` closes nothing (unbalanced braces)")?;
                if depth == 1
                    && let Some((_, body)) = world.as_mut()
                {
                    // An inline `import x: interface { ... }` ends here even
                    // without a `;`.
                    body.push(';');
                }
                if depth == 0
                    && let Some((name, body)) = world.take()
                {
                    for statement in body.split(';') {
                        if let Some(interface) = imported_interface(statement, package) {
                            found.push((name.clone(), interface));
                        }
                    }
                }
            }
            ';' if depth == 0 => header.clear(),
            _ if depth == 0 => header.push(c),
            _ if depth == 1 => {
                if let Some((_, body)) = world.as_mut() {
                    body.push(c);
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        bail!("a `{{` is never closed (unbalanced braces)");
    }
    Ok(found)
}

/// The local interface an `import` statement of a world names, if any.
fn imported_interface(statement: &str, package: Option<&str>) -> Option<String> {
    let mut words = statement.split_whitespace();
    (words.next()? == "import").then_some(())?;
    let path: String = words.collect();
    let path = path.split('@').next().unwrap_or(&path);
    let name = match path.split_once('/') {
        // `ns:pkg/iface`: ours only when `ns:pkg` is this package.
        Some((pkg, iface)) => (Some(pkg) == package).then_some(iface)?,
        // `name: func(...)` or `name: interface` (inline): not an interface
        // of this package's own.
        None if path.contains(':') => return None,
        None => path,
    };
    Some(name.trim_start_matches('%').to_owned())
}

/// Modules declared in a Rust file: `mod x;`, `pub mod x;`, `pub(crate) mod
/// x { ... }`.
fn declared_modules(lib_rs: &str) -> BTreeSet<String> {
    lib_rs
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = match line.strip_prefix("pub") {
                Some(rest) if rest.starts_with('(') => rest.split_once(')')?.1.trim_start(),
                Some(rest) => rest.trim_start(),
                None => line,
            };
            let name = line.strip_prefix("mod ")?.trim_start();
            let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
            let rest = name[end..].trim_start();
            (rest.starts_with(';') || rest.starts_with('{')).then(|| name[..end].to_owned())
        })
        .collect()
}

/// Rule: every guest (its constant in `delta_guest_artifacts`,
/// `HELLO_AGENT` or `HELLO_AGENT_BYTES` for `hello-agent`) is named in test
/// code: a file under a `tests/` directory, or the part of a file from its
/// first `#[cfg(test)]` on. Iterating `ALL` does not count: a guest needs a
/// test that knows what it is for.
pub fn guests_used_by_tests(guests: &[String], sources: &[Source]) -> Vec<Failure> {
    let mut identifiers: HashSet<&str> = HashSet::new();
    for source in sources {
        let in_tests_dir = source.path.components().any(|c| c.as_os_str() == "tests");
        let test_code = if in_tests_dir {
            Some(source.text.as_str())
        } else {
            source
                .text
                .find("#[cfg(test)]")
                .map(|start| &source.text[start..])
        };
        if let Some(code) = test_code {
            identifiers.extend(
                code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .filter(|w| !w.is_empty()),
            );
        }
    }
    guests
        .iter()
        .filter_map(|guest| {
            let constant = guest.to_uppercase().replace('-', "_");
            let bytes = format!("{constant}_BYTES");
            if identifiers.contains(constant.as_str()) || identifiers.contains(bytes.as_str()) {
                return None;
            }
            Some(Failure {
                rule: "guest-tested",
                message: format!(
                    "guest `{guest}` (examples/{guest}, delta_guest_artifacts::{constant}) is used \
                     by no test. Write a test that runs it and asserts what it is for (hostile \
                     guests: runtime/tests/all/hostile.rs), or remove it from examples/Cargo.toml."
                ),
            })
        })
        .collect()
}

/// Rule: no `.rs` file past `limit` lines, unless generated.
pub fn long_files(sources: &[Source], limit: usize) -> Vec<Failure> {
    sources
        .iter()
        .filter(|source| {
            !source
                .text
                .lines()
                .take(GENERATED_MARKER_LINES)
                .any(|line| line.contains("@generated"))
        })
        .filter_map(|source| {
            let lines = source.text.lines().count();
            (lines > limit).then(|| Failure {
                rule: "file-length",
                message: format!(
                    "{} has {lines} lines (limit {limit}). Split it by concern into modules \
                     (tests: by the behaviour they cover, sharing helpers through a common \
                     module); generated code is exempt when it says `@generated` in its first \
                     {GENERATED_MARKER_LINES} lines.",
                    source.path.display()
                ),
            })
        })
        .collect()
}

/// Rule: `root`'s dependency tree (`cargo tree --prefix depth` output)
/// contains none of `forbidden`. Each failure names, for every direct
/// dependency through which a forbidden package is reached, one shortest
/// path to it.
pub fn forbidden_dependencies(root: &str, tree: &str, forbidden: &[&str]) -> Result<Vec<Failure>> {
    let graph = DependencyGraph::parse(tree)?;
    if graph.name(&graph.root) != root {
        bail!(
            "cargo tree's root is {:?}, expected {root:?}",
            graph.name(&graph.root)
        );
    }
    let mut failures = Vec::new();
    for &target in forbidden {
        let paths: Vec<String> = graph
            .children(&graph.root)
            .filter_map(|direct| graph.shortest_path(direct, target))
            .map(|path| {
                std::iter::once(root)
                    .chain(path.iter().map(|node| graph.name(node)))
                    .collect::<Vec<_>>()
                    .join(" -> ")
            })
            .collect();
        if paths.is_empty() {
            continue;
        }
        failures.push(Failure {
            rule: "control-dependencies",
            message: format!(
                "{root}'s normal dependencies include `{target}`, through:\n  {}\n\
                 The control plane must neither depend on delta-node nor link Wasmtime: take \
                 the wire types it shares with nodes from a crate that has neither \
                 (delta-node-api), and drop or move each edge above (dev-dependencies are \
                 allowed).",
                paths.join("\n  ")
            ),
        });
    }
    Ok(failures)
}

/// Packages (`name vX.Y.Z`) and their dependencies, from `cargo tree
/// --prefix depth`. A package cargo tree already expanded elsewhere is
/// printed again with `(*)` and no children; the union of edges is the
/// whole graph all the same.
struct DependencyGraph {
    root: String,
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl DependencyGraph {
    fn parse(tree: &str) -> Result<Self> {
        let mut root = None;
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // The current path from the root: stack[d] is the last node at depth d.
        let mut stack: Vec<String> = Vec::new();
        for line in tree.lines().filter(|l| !l.trim().is_empty()) {
            let digits = line.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
            let depth: usize = line[..digits]
                .parse()
                .with_context(|| format!("no depth prefix in cargo tree line {line:?}"))?;
            let mut words = line[digits..].split_whitespace();
            let (Some(name), Some(version)) = (words.next(), words.next()) else {
                bail!("cannot read cargo tree line {line:?}");
            };
            let node = format!("{name} {version}");
            if depth == 0 {
                if root.is_some() {
                    bail!("cargo tree printed more than one root");
                }
                root = Some(node.clone());
            } else {
                let parent = stack
                    .get(depth - 1)
                    .with_context(|| format!("cargo tree line {line:?} has no parent"))?;
                edges
                    .entry(parent.clone())
                    .or_default()
                    .insert(node.clone());
            }
            stack.truncate(depth);
            stack.push(node);
        }
        let root = root.context("cargo tree printed nothing")?;
        Ok(Self { root, edges })
    }

    fn name<'a>(&self, node: &'a str) -> &'a str {
        node.split(' ').next().unwrap_or(node)
    }

    fn children<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a String> {
        self.edges.get(node).into_iter().flatten()
    }

    /// Nodes from `start` to the first package named `target`, both
    /// included (breadth first, so shortest).
    fn shortest_path(&self, start: &str, target: &str) -> Option<Vec<String>> {
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut seen = BTreeSet::from([start]);
        while let Some(node) = queue.pop_front() {
            if self.name(node) == target {
                let mut path = vec![node.to_owned()];
                let mut at = node;
                while let Some(&up) = parent.get(at) {
                    path.push(up.to_owned());
                    at = up;
                }
                path.reverse();
                return Some(path);
            }
            for child in self.children(node) {
                if seen.insert(child) {
                    parent.insert(child, node);
                    queue.push_back(child);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit(text: &str) -> Vec<(PathBuf, String)> {
        vec![(PathBuf::from("wit/agent.wit"), text.to_owned())]
    }

    const WIT: &str = "
        /// Docs mentioning world and import log; in a comment.
        package delta:agent@0.1.0;
        interface types { record task { id: string } }
        interface log { write: func(message: string); }
        interface token-budget { /* import ignored; */ remaining: func() -> u64; }
        world agent {
            import log;
            import wasi:cli/stdout@0.2.0;
            import clock: func() -> u64;
            import inline: interface { now: func() -> u64; }
            import token-budget;
            use types.{task};
            export run: func(task: task);
        }
        world verifier { import delta:agent/log@0.1.0; }
    ";

    #[test]
    fn imported_interfaces_need_a_host_module() {
        let lib = "pub mod bindings;\npub mod log;\n";
        let failures = wit_interfaces_have_modules(&wit(WIT), lib).expect("parses");
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].rule, "wit-host-module");
        let message = &failures[0].message;
        assert!(message.contains("`token-budget`"), "{message}");
        assert!(
            message.contains("host-api/src/token_budget.rs"),
            "{message}"
        );
        assert!(message.contains("pub mod token_budget;"), "{message}");
        assert!(message.starts_with("wit/agent.wit"), "{message}");
    }

    #[test]
    fn every_module_present_passes_and_types_or_foreign_interfaces_need_none() {
        let lib = "pub mod log;\npub(crate) mod token_budget {\n}\n";
        assert_eq!(
            wit_interfaces_have_modules(&wit(WIT), lib).expect("parses"),
            []
        );
    }

    #[test]
    fn an_interface_imported_by_two_worlds_is_reported_once_with_both() {
        let failures = wit_interfaces_have_modules(&wit(WIT), "mod token_budget;").expect("parses");
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].message.contains("world(s) `agent`, `verifier`"),
            "{}",
            failures[0].message
        );
    }

    #[test]
    fn unbalanced_wit_is_an_error_not_a_pass() {
        assert!(wit_interfaces_have_modules(&wit("world a { import log;"), "").is_err());
        assert!(wit_interfaces_have_modules(&wit("/* open"), "").is_err());
    }

    #[test]
    fn module_declarations_are_read_from_lib_rs() {
        let modules = declared_modules(
            "pub mod a;\n  mod b;\npub(crate) mod c {\n// mod d;\nuse e;\nmodule f;\npub mod g_h ;",
        );
        assert_eq!(
            modules.into_iter().collect::<Vec<_>>(),
            ["a", "b", "c", "g_h"]
        );
    }

    fn source(path: &str, text: &str) -> Source {
        Source {
            path: PathBuf::from(path),
            text: text.to_owned(),
        }
    }

    #[test]
    fn a_guest_named_only_outside_tests_is_unused() {
        let guests = ["hello-agent", "js-agent", "hostile-loop", "json-churn"].map(String::from);
        let sources = [
            source("runtime/tests/hostile.rs", "load(guests::HOSTILE_LOOP)"),
            source("control/tests/common/mod.rs", "use x::HELLO_AGENT;"),
            source(
                "js/src/lib.rs",
                "const E: &[u8] = JSON_CHURN;\n#[cfg(test)]\nmod t { JS_AGENT_BYTES }",
            ),
            // Benches are not tests, nor is `ALL` a use of each guest.
            source("benches/runtime.rs", "guests::JSON_CHURN; guests::ALL"),
        ];
        let failures = guests_used_by_tests(&guests, &sources);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].rule, "guest-tested");
        assert!(
            failures[0].message.contains("`json-churn`")
                && failures[0].message.contains("JSON_CHURN"),
            "{}",
            failures[0].message
        );
    }

    #[test]
    fn a_longer_identifier_is_not_a_use() {
        let guests = ["hello-agent".to_owned()];
        let sources = [source("tests/a.rs", "HELLO_AGENT_V2; MY_HELLO_AGENT")];
        assert_eq!(guests_used_by_tests(&guests, &sources).len(), 1);
    }

    #[test]
    fn files_past_the_limit_fail_unless_generated() {
        let long = "x\n".repeat(4);
        let sources = [
            source("a.rs", &long),
            source("b.rs", &"x\n".repeat(3)),
            source("c.rs", &format!("// @generated by a tool\n{long}")),
        ];
        let failures = long_files(&sources, 3);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].rule, "file-length");
        assert!(
            failures[0]
                .message
                .starts_with("a.rs has 4 lines (limit 3)"),
            "{}",
            failures[0].message
        );
    }

    const TREE: &str = "\
0delta-control v0.1.0 (/w/control)
1anyhow v1.0.104
1delta-js v0.1.0 (/w/js)
2delta-runtime v0.1.0 (/w/runtime)
3wasmtime v48.0.8
4anyhow v1.0.104
2serde v1.0.1
3serde_derive v1.0.1 (proc-macro)
1delta-node v0.1.0 (/w/node)
2delta-runtime v0.1.0 (/w/runtime) (*)
1delta-messaging v0.1.0 (/w/messaging)
2delta-host-api v0.1.0 (/w/host-api)
3wasmtime v48.0.8 (*)
";

    #[test]
    fn each_forbidden_package_is_reported_with_every_path_into_it() {
        let failures = forbidden_dependencies("delta-control", TREE, &["delta-node", "wasmtime"])
            .expect("parses");
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures.iter().all(|f| f.rule == "control-dependencies"));
        assert!(
            failures[0]
                .message
                .contains("include `delta-node`, through:\n  delta-control -> delta-node\n"),
            "{}",
            failures[0].message
        );
        let wasmtime = &failures[1].message;
        for path in [
            "delta-control -> delta-js -> delta-runtime -> wasmtime",
            // Through a subtree cargo tree printed only once (`(*)`).
            "delta-control -> delta-node -> delta-runtime -> wasmtime",
            "delta-control -> delta-messaging -> delta-host-api -> wasmtime",
        ] {
            assert!(wasmtime.contains(path), "{path} missing from {wasmtime}");
        }
        assert!(!wasmtime.contains("anyhow"), "{wasmtime}");
    }

    #[test]
    fn a_clean_tree_passes_and_a_foreign_root_is_an_error() {
        let clean = "0delta-control v0.1.0 (/w)\n1anyhow v1.0.0\n1serde v1.0.1\n2serde_derive v1.0.1 (proc-macro)\n";
        assert_eq!(
            forbidden_dependencies("delta-control", clean, &["wasmtime"]).expect("parses"),
            []
        );
        assert!(forbidden_dependencies("delta-node", clean, &["wasmtime"]).is_err());
        assert!(forbidden_dependencies("delta-control", "", &["wasmtime"]).is_err());
        assert!(forbidden_dependencies("delta-control", "anyhow v1\n", &["wasmtime"]).is_err());
    }

    #[test]
    fn features_a_dev_dependency_adds_are_reported() {
        let build = "tokio v1.0.0 rt,time\nserde v1.0.0 (proc-macro) derive\nplain v0.1.0\n\
                     delta v0.1.0 (/work/main) default\n";
        let test = "tokio v1.0.0 rt,test-util,time\nserde v1.0.0 (proc-macro) derive\n\
                    plain v0.1.0\ndelta v0.1.0 (/work/main) default\ncriterion v0.8.0 default\n";
        let failures = feature_sets_match(build, test);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].message.starts_with("tokio v1.0.0"),
            "{failures:?}"
        );
        assert!(feature_sets_match(test, test).is_empty());
        // A package built for the host and the target keeps both lists.
        let both = "regex v1.0.0 std\nregex v1.0.0 (proc-macro) std,unicode\n";
        assert_eq!(features_by_package(both)["regex v1.0.0"].len(), 2);
    }
}

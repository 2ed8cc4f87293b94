//! Builds the guests in `examples/` and generates a constant with the path
//! of each component, so tests never spell out where guests live.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let root = xtask::workspace_root();
    for dir in ["examples", "guest-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let guests = match xtask::build_guests(&root, xtask::Output::Capture) {
        Ok(guests) => guests,
        Err(e) => panic!("\n\n{e:#}\n\n"),
    };
    let mut code = String::new();
    for guest in &guests {
        let ident = guest.name.to_uppercase().replace('-', "_");
        let _ = writeln!(
            code,
            "/// `target/guests/{name}.wasm`, built from `examples/{name}`.\n\
             pub const {ident}: &str = {path:?};",
            name = guest.name,
            path = guest.path.display().to_string(),
        );
    }
    // The JavaScript engines ship inside the binaries that prepare scripts
    // (delta-js), so their bytes are constants too.
    for guest in guests.iter().filter(|g| g.name.starts_with("js-")) {
        let ident = guest.name.to_uppercase().replace('-', "_");
        let _ = writeln!(
            code,
            "/// The bytes of [`{ident}`].\n\
             pub const {ident}_BYTES: &[u8] = include_bytes!({path:?});",
            path = guest.path.display().to_string(),
        );
    }
    let _ = writeln!(code, "/// Every guest: `(crate name, component path)`.");
    let _ = writeln!(code, "pub const ALL: &[(&str, &str)] = &[");
    for guest in &guests {
        let _ = writeln!(
            code,
            "    ({:?}, {:?}),",
            guest.name,
            guest.path.display().to_string()
        );
    }
    let _ = writeln!(code, "];");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("guests.rs"), code).expect("writing guests.rs");
}

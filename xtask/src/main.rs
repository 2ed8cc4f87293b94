//! `cargo xtask <command>`: project automation.
//!
//! - `guests`: build every crate in `examples/` to `target/guests/<name>.wasm`.

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let command = std::env::args().nth(1).unwrap_or_default();
    match command.as_str() {
        "guests" => {
            let root = xtask::workspace_root();
            let guests = xtask::build_guests(&root, xtask::Output::Inherit)?;
            for guest in guests {
                let size = std::fs::metadata(&guest.path).map(|m| m.len()).unwrap_or(0);
                println!(
                    "{:<24} {:>9} bytes  {}",
                    guest.name,
                    size,
                    guest.path.display()
                );
            }
            Ok(())
        }
        other => bail!("unknown command {other:?}; available: guests"),
    }
}

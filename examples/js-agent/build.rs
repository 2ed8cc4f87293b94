//! QuickJS's C frames are large and its own stack check is compiled out
//! under WASI: a 1 MiB shadow stack (instead of the 64 KiB other guests use)
//! keeps deep JS recursion within it until the host's Wasm stack limit traps.
fn main() {
    println!("cargo:rustc-link-arg=-zstack-size=1048576");
}

//! The runtime's integration tests, one binary (issue 13: each file was its
//! own binary, linking Wasmtime again; `common.rs` was even a binary of its
//! own with no tests): capabilities, sandbox escapes, hostile guests,
//! JavaScript, loading and uploads.

mod common;

mod capabilities;
mod escape;
mod hostile;
mod js;
mod loading;
mod uploads;

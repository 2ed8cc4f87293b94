//! The panic hook the export macros install.

use std::panic;
use std::sync::Once;

use crate::log::{self, Level};

/// Install, once per instance, a panic hook that writes the panic message to
/// the `log` interface at error level and then runs the previous hook (by
/// default the standard one, which prints to stderr). With `panic = "abort"`
/// or after unwinding out of the export, the run then traps.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = info.payload_as_str().unwrap_or("Box<dyn Any>");
            match info.location() {
                Some(location) => {
                    log::write_fmt(
                        Level::Error,
                        format_args!("panicked at {location}: {message}"),
                    );
                }
                None => log::write_fmt(Level::Error, format_args!("panicked: {message}")),
            }
            previous(info);
        }));
    });
}

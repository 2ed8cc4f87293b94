use core::fmt;

/// How much of a token budget is missing for an operation (carried by the
/// `budget-exceeded` errors of [`crate::llm`] and [`crate::messaging`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shortfall {
    /// Tokens the operation needed to reserve.
    pub needed: u64,
    /// Tokens that were available.
    pub available: u64,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "needed {} tokens, {} available",
            self.needed, self.available
        )
    }
}

#[cfg(target_arch = "wasm32")]
impl From<crate::bindings::verifier::delta::agent::types::Shortfall> for Shortfall {
    fn from(raw: crate::bindings::verifier::delta::agent::types::Shortfall) -> Self {
        Shortfall {
            needed: raw.needed,
            available: raw.available,
        }
    }
}

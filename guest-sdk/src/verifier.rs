//! The `verifier` world: the [`Verifier`] trait and its [`Verdict`].

use serde::de::DeserializeOwned;

/// A bounty verifier: a pure function from a specification and a submission
/// to a [`Verdict`]. A verifier may log and use nothing else: a component
/// exported with [`export_verifier!`](crate::export_verifier) imports only
/// `delta:agent/log`.
///
/// The SDK parses the spec and the submission from JSON into
/// [`Verifier::Spec`] and [`Verifier::Submission`]. When either does not
/// parse, [`Verifier::verify`] is not called and the verdict is a failure
/// (score 0) with one reason, `invalid spec: <serde error>` or
/// `invalid submission: <serde error>`.
pub trait Verifier {
    /// The bounty's specification.
    type Spec: DeserializeOwned;
    /// A submission to judge.
    type Submission: DeserializeOwned;

    /// Judge `submission` against `spec`.
    fn verify(spec: Self::Spec, submission: Self::Submission) -> Verdict;
}

/// The result of verifying a bounty submission.
///
/// ```
/// use delta_sdk::Verdict;
///
/// let v = Verdict::pass("all 3 tests passed");
/// assert!(v.passed && v.score_milli == 1000);
/// let v = Verdict::fail("wrong answer").reason("expected 4, got 5");
/// assert_eq!(v.reasons.len(), 2);
/// let v = Verdict::scored(750, true);
/// assert_eq!(v.score_milli, 750);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Verdict {
    /// Whether the submission meets the bounty's specification.
    pub passed: bool,
    /// Score in thousandths (0..=1000); 1000 is a perfect submission. Values
    /// over 1000 are sent as 1000.
    pub score_milli: u32,
    /// Human-readable reasons, one entry per check performed.
    pub reasons: Vec<String>,
}

impl Verdict {
    /// The maximum score.
    pub const MAX_SCORE_MILLI: u32 = 1000;

    /// A passing verdict with score 1000 and one reason.
    pub fn pass(reason: impl Into<String>) -> Self {
        Verdict {
            passed: true,
            score_milli: Self::MAX_SCORE_MILLI,
            reasons: vec![reason.into()],
        }
    }

    /// A failing verdict with score 0 and one reason.
    pub fn fail(reason: impl Into<String>) -> Self {
        Verdict {
            passed: false,
            score_milli: 0,
            reasons: vec![reason.into()],
        }
    }

    /// A verdict with the given score (clamped to 1000) and no reasons.
    pub fn scored(score_milli: u32, passed: bool) -> Self {
        Verdict {
            passed,
            score_milli: score_milli.min(Self::MAX_SCORE_MILLI),
            reasons: Vec::new(),
        }
    }

    /// Add a reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reasons.push(reason.into());
        self
    }
}

/// Run verifier `V` on JSON strings exactly as the exported `verify` does.
/// Meant for unit tests on the host.
///
/// ```
/// use delta_sdk::prelude::*;
///
/// struct Exact;
/// impl Verifier for Exact {
///     type Spec = String;
///     type Submission = String;
///     fn verify(spec: String, submission: String) -> Verdict {
///         if spec == submission { Verdict::pass("equal") } else { Verdict::fail("different") }
///     }
/// }
///
/// assert!(delta_sdk::run_verifier::<Exact>("\"a\"", "\"a\"").passed);
/// let v = delta_sdk::run_verifier::<Exact>("\"a\"", "not json");
/// assert!(!v.passed && v.reasons[0].starts_with("invalid submission: "));
/// ```
pub fn run_verifier<V: Verifier>(spec: &str, submission: &str) -> Verdict {
    let spec: V::Spec = match serde_json::from_str(spec) {
        Ok(spec) => spec,
        Err(e) => return Verdict::fail(format!("invalid spec: {e}")),
    };
    let submission: V::Submission = match serde_json::from_str(submission) {
        Ok(submission) => submission,
        Err(e) => return Verdict::fail(format!("invalid submission: {e}")),
    };
    V::verify(spec, submission)
}

pub(crate) mod export {
    use core::marker::PhantomData;

    use super::{Verdict, Verifier, run_verifier};
    use crate::bindings::verifier::Guest;
    use crate::bindings::verifier::delta::agent::types as raw;

    /// Implements the generated `Guest` trait of the verifier world for any
    /// [`Verifier`].
    #[derive(Debug)]
    pub struct VerifierExport<V>(PhantomData<V>);

    impl<V: Verifier> Guest for VerifierExport<V> {
        fn verify(spec: String, submission: String) -> raw::Verdict {
            crate::panic_hook::install();
            let Verdict {
                passed,
                score_milli,
                reasons,
            } = run_verifier::<V>(&spec, &submission);
            raw::Verdict {
                passed,
                score_milli: score_milli.min(Verdict::MAX_SCORE_MILLI),
                reasons,
            }
        }
    }
}

/// Export a type implementing [`Verifier`] as the component's `verify`
/// function (world `verifier`).
///
/// Use it exactly once, at the top level of a `cdylib` crate built for
/// `wasm32-wasip2`, and never together with
/// [`export_agent!`](crate::export_agent). It also installs (once) a panic
/// hook that writes the panic message to the log at error level.
///
/// ```
/// use delta_sdk::prelude::*;
///
/// struct AlwaysPass;
/// impl Verifier for AlwaysPass {
///     type Spec = serde::de::IgnoredAny;
///     type Submission = serde::de::IgnoredAny;
///     fn verify(_: Self::Spec, _: Self::Submission) -> Verdict {
///         Verdict::pass("anything goes")
///     }
/// }
///
/// delta_sdk::export_verifier!(AlwaysPass);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_verifier {
    ($verifier:ty) => {
        const _: () = {
            type __DeltaVerifierExport = $crate::__private::VerifierExport<$verifier>;
            $crate::bindings::verifier::__export_verifier_world!(
                __DeltaVerifierExport with_types_in $crate::bindings::verifier
            );
        };
    };
}

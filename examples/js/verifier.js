// verifier.js: the JavaScript twin of examples/json-verifier.
//
// Spec {"expected": <any JSON>}; a submission passes when it is
// structurally equal to `expected` (object key order does not matter).
import { log } from "delta";

function equal(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]));
}

export function verify(spec, submission) {
  if (spec === null || typeof spec !== "object" || !("expected" in spec)) {
    return { passed: false, scoreMilli: 0, reasons: ["invalid spec: missing `expected`"] };
  }
  const passed = equal(spec.expected, submission);
  log.info(`verdict: ${passed ? "passed" : "failed"}`);
  return {
    passed,
    reasons: [passed ? "submission matches the expected document" : "submission differs from the expected document"],
  };
}

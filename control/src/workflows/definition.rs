//! A workflow's definition: its steps (a DAG), how each step's input is
//! built, and the checks that hold before anything runs. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

/// Most steps in one workflow.
pub const MAX_STEPS: usize = 100;
/// Most retries of one step.
pub const MAX_RETRIES: u32 = 10;
/// Bounds of a step's `timeout_ms`: 1 s to 24 h.
pub const TIMEOUT_MS: (u64, u64) = (1_000, 24 * 3600 * 1000);

/// A workflow: steps, each an agent run, ordered by `after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// 1-100 steps. A step starts when every step it names in `after` has
    /// completed; steps with nothing in common run at the same time
    /// (fan-out), a step after several waits for all (fan-in).
    #[schema(min_items = 1, max_items = 100)]
    pub steps: Vec<Step>,
    /// The workflow's output, a template (see [`Step::input`]) over
    /// `{"input": ..., "steps": {<id>: <output>, ...}}`; default: that
    /// `steps` object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    /// Most tokens (LLM tokens and message tokens, as the runs' usage
    /// reports them) all of a run of this workflow may use; once its
    /// finished steps used more, it fails with `token_budget_exceeded` and
    /// starts no further step. None: no bound beyond the agents' budgets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_budget: Option<u64>,
}

/// One step: a run of `agent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique in the workflow: 1-64 of `a-z 0-9 _ -`.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub id: String,
    /// The agent to run: a name or id of the tenant's agents, stored as the
    /// id.
    pub agent: String,
    /// Steps that must complete first (ids of this workflow; no cycles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// The run's input, a template over `{"input": <the workflow run's
    /// input>, "steps": {<id>: <output>}}`: any JSON, in which an object
    /// `{"$from": "<JSON pointer>"}` is replaced by the value at that
    /// pointer (null when absent), e.g. `{"$from": "/steps/fetch/items"}`.
    /// A pointer may only reach `/input` and the steps in `after`. Default:
    /// `{"input": ..., "steps": {<each step in after>: <its output>}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// Runs of this step tried again after one that did not complete
    /// (0-10, default 0).
    #[serde(default)]
    #[schema(maximum = 10)]
    pub retries: u32,
    /// An attempt not finished this long after it was queued counts as
    /// failed (1 s - 24 h; default: none beyond the run's own deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1000, maximum = 86_400_000)]
    pub timeout_ms: Option<u64>,
}

impl Definition {
    /// The step `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// Check the definition on its own (not the agents); the reason for the
    /// first problem found.
    pub fn check(&self) -> Result<(), String> {
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(format!("a workflow has 1-{MAX_STEPS} steps"));
        }
        let mut ids = BTreeSet::new();
        for step in &self.steps {
            let valid = !step.id.is_empty()
                && step.id.len() <= 64
                && step.id.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !valid {
                return Err(format!("step id {:?}: 1-64 of a-z 0-9 _ -", clip(&step.id)));
            }
            if !ids.insert(step.id.as_str()) {
                return Err(format!("step id {:?} is used twice", step.id));
            }
            if step.agent.is_empty() || step.agent.len() > 256 {
                return Err(format!("step {}: agent must be 1-256 bytes", step.id));
            }
            if step.retries > MAX_RETRIES {
                return Err(format!(
                    "step {}: retries is at most {MAX_RETRIES}",
                    step.id
                ));
            }
            if let Some(t) = step.timeout_ms
                && !(TIMEOUT_MS.0..=TIMEOUT_MS.1).contains(&t)
            {
                return Err(format!(
                    "step {}: timeout_ms is {}-{}",
                    step.id, TIMEOUT_MS.0, TIMEOUT_MS.1
                ));
            }
        }
        for step in &self.steps {
            let mut seen = BTreeSet::new();
            for dep in &step.after {
                if !ids.contains(dep.as_str()) {
                    return Err(format!(
                        "step {}: after names no step {:?}",
                        step.id,
                        clip(dep)
                    ));
                }
                if !seen.insert(dep) {
                    return Err(format!("step {}: after names {dep} twice", step.id));
                }
            }
            if let Some(input) = &step.input {
                let reachable: BTreeSet<&str> = step.after.iter().map(String::as_str).collect();
                check_template(input, Some(&reachable))
                    .map_err(|e| format!("step {}: input: {e}", step.id))?;
            }
        }
        if let Some(output) = &self.output {
            check_template(output, None).map_err(|e| format!("output: {e}"))?;
        }
        self.order().map(|_| ())
    }

    /// The steps in an order where each comes after those it waits for; an
    /// error names a step on a cycle.
    pub fn order(&self) -> Result<Vec<&Step>, String> {
        let mut waiting: BTreeMap<&str, usize> = self
            .steps
            .iter()
            .map(|s| (s.id.as_str(), s.after.len()))
            .collect();
        let mut ready: Vec<&Step> = self.steps.iter().filter(|s| s.after.is_empty()).collect();
        let mut out = Vec::with_capacity(self.steps.len());
        while let Some(step) = ready.pop() {
            out.push(step);
            for next in self.steps.iter().filter(|s| s.after.contains(&step.id)) {
                let n = waiting.entry(next.id.as_str()).or_default();
                *n -= 1;
                if *n == 0 {
                    ready.push(next);
                }
            }
        }
        if out.len() == self.steps.len() {
            return Ok(out);
        }
        let stuck = waiting
            .iter()
            .find(|(_, n)| **n > 0)
            .map(|(id, _)| *id)
            .unwrap_or_default();
        Err(format!("the steps form a cycle (through {stuck})"))
    }
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Every `{"$from": ...}` in `template` is a pointer into `/input` or
/// `/steps/<id>` for an id in `reachable` (any step when None).
fn check_template(template: &Value, reachable: Option<&BTreeSet<&str>>) -> Result<(), String> {
    match template {
        Value::Object(map) => {
            if let Some(pointer) = from_pointer(map) {
                let pointer = pointer.ok_or("$from must be the only key, with a string")?;
                let mut parts = pointer.split('/').skip(1);
                return match (pointer.starts_with('/'), parts.next(), parts.next()) {
                    (true, Some("input"), _) => Ok(()),
                    (true, Some("steps"), Some(step))
                        if reachable.is_none_or(|r| r.contains(step)) =>
                    {
                        Ok(())
                    }
                    (true, Some("steps"), Some(step)) => Err(format!(
                        "$from {pointer:?} reads step {step}, which is not in after"
                    )),
                    _ => Err(format!(
                        "$from {pointer:?} must start with /input or /steps/<id>"
                    )),
                };
            }
            map.values().try_for_each(|v| check_template(v, reachable))
        }
        Value::Array(items) => items.iter().try_for_each(|v| check_template(v, reachable)),
        _ => Ok(()),
    }
}

/// `Some(Some(pointer))` for a well-formed `{"$from": "..."}`,
/// `Some(None)` for a malformed one, None for any other object.
fn from_pointer(map: &Map<String, Value>) -> Option<Option<&str>> {
    let from = map.get("$from")?;
    Some(from.as_str().filter(|_| map.len() == 1))
}

/// `template` with every `{"$from": pointer}` replaced by the value at that
/// pointer in `context` (null when absent).
pub fn resolve(template: &Value, context: &Value) -> Value {
    match template {
        Value::Object(map) => match from_pointer(map) {
            Some(Some(pointer)) => context.pointer(pointer).cloned().unwrap_or(Value::Null),
            _ => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), resolve(v, context)))
                    .collect(),
            ),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, context)).collect()),
        other => other.clone(),
    }
}

/// The input of `step`, given the workflow run's `input` and the outputs
/// of completed steps.
pub fn step_input(step: &Step, input: &Value, outputs: &BTreeMap<String, Value>) -> Value {
    let steps: Map<String, Value> = step
        .after
        .iter()
        .map(|id| (id.clone(), outputs.get(id).cloned().unwrap_or(Value::Null)))
        .collect();
    let context = json!({ "input": input, "steps": steps });
    match &step.input {
        Some(template) => resolve(template, &context),
        None => context,
    }
}

/// The workflow run's output once every step completed.
pub fn workflow_output(
    def: &Definition,
    input: &Value,
    outputs: &BTreeMap<String, Value>,
) -> Value {
    let steps: Map<String, Value> = outputs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match &def.output {
        Some(template) => resolve(template, &json!({ "input": input, "steps": steps })),
        None => Value::Object(steps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(v: Value) -> Definition {
        serde_json::from_value(v).expect("definition")
    }

    #[test]
    fn a_diamond_is_ordered_and_cycles_unknown_steps_and_bad_pointers_are_refused() {
        let diamond = def(json!({ "steps": [
            { "id": "d", "agent": "x", "after": ["b", "c"] },
            { "id": "b", "agent": "x", "after": ["a"] },
            { "id": "c", "agent": "x", "after": ["a"], "input": { "$from": "/steps/a/n" } },
            { "id": "a", "agent": "x" },
        ] }));
        assert_eq!(diamond.check(), Ok(()));
        let order: Vec<&str> = diamond
            .order()
            .expect("order")
            .iter()
            .map(|s| s.id.as_str())
            .collect();
        let at = |id| order.iter().position(|s| *s == id).expect("listed");
        assert!(at("a") < at("b") && at("a") < at("c") && at("b") < at("d") && at("c") < at("d"));

        for (bad, why) in [
            (json!({ "steps": [] }), "1-100 steps"),
            (
                json!({ "steps": [{ "id": "a", "agent": "x", "after": ["b"] },
                                  { "id": "b", "agent": "x", "after": ["a"] }] }),
                "cycle",
            ),
            (
                json!({ "steps": [{ "id": "a", "agent": "x", "after": ["zz"] }] }),
                "names no step",
            ),
            (json!({ "steps": [{ "id": "A", "agent": "x" }] }), "a-z 0-9"),
            (
                json!({ "steps": [{ "id": "a", "agent": "x" }, { "id": "a", "agent": "y" }] }),
                "twice",
            ),
            (
                json!({ "steps": [{ "id": "a", "agent": "x" },
                                  { "id": "b", "agent": "x", "input": { "$from": "/steps/a" } }] }),
                "not in after",
            ),
            (
                json!({ "steps": [{ "id": "a", "agent": "x", "input": { "$from": "/etc" } }] }),
                "must start with",
            ),
            (
                json!({ "steps": [{ "id": "a", "agent": "x", "input": { "$from": 3 } }] }),
                "only key",
            ),
            (
                json!({ "steps": [{ "id": "a", "agent": "x", "retries": 11 }] }),
                "retries",
            ),
            (
                json!({ "steps": [{ "id": "a", "agent": "x", "timeout_ms": 5 }] }),
                "timeout_ms",
            ),
        ] {
            let err = def(bad.clone()).check().expect_err("refused");
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn inputs_and_outputs_are_built_from_the_workflow_input_and_earlier_outputs() {
        let d = def(json!({ "steps": [
            { "id": "a", "agent": "x" },
            { "id": "b", "agent": "x", "after": ["a"],
              "input": { "n": { "$from": "/steps/a/n" }, "url": { "$from": "/input/url" },
                         "missing": { "$from": "/steps/a/nope" }, "fixed": [1, { "k": "v" }] } },
        ], "output": { "total": { "$from": "/steps/b/total" } } }));
        let input = json!({ "url": "https://example.com" });
        let mut outputs = BTreeMap::new();
        let a = d.step("a").expect("a");
        assert_eq!(
            step_input(a, &input, &outputs),
            json!({ "input": input, "steps": {} })
        );
        outputs.insert("a".to_owned(), json!({ "n": 7 }));
        assert_eq!(
            step_input(d.step("b").expect("b"), &input, &outputs),
            json!({ "n": 7, "url": "https://example.com", "missing": null,
                    "fixed": [1, { "k": "v" }] })
        );
        outputs.insert("b".to_owned(), json!({ "total": 9 }));
        assert_eq!(workflow_output(&d, &input, &outputs), json!({ "total": 9 }));
    }
}

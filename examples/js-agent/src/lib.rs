//! `js-agent`: the QuickJS engine as a Delta agent (world `agent`).
//!
//! `delta-js` pre-initialises it with an author's ES module exporting
//! `run(task)`, where `task` is `{runId, agentId, tenantId, input,
//! deadlineMs}` with `input` already parsed from JSON. What `run` returns
//! (or resolves to) is the output, as JSON (`undefined` becomes `null`). A
//! throw (or rejection) of an object with a string `code` — every
//! `DeltaError` of a capability — is the agent error `{code, message,
//! retryable}`; any other throw crashes the run with the exception and its
//! stack on stderr.
//!
//! Capability calls cross into Rust as JSON strings and are made through
//! `delta-sdk`, so codes and messages match Rust agents'.

// The generated import bindings take every field of a WIT record apart.
#![allow(clippy::too_many_arguments)]

mod capabilities;
mod tools;

wit_bindgen::generate!({
    world: "delta:js/js-agent@0.1.0",
    path: ["../../wit", "../js-engine/wit"],
    with: {
        "delta:agent/types@0.1.0": delta_sdk::bindings::verifier::delta::agent::types,
        "delta:agent/log@0.1.0": delta_sdk::bindings::verifier::delta::agent::log,
        "delta:agent/llm@0.1.0": delta_sdk::bindings::agent::delta::agent::llm,
        "delta:agent/messaging@0.1.0": delta_sdk::bindings::agent::delta::agent::messaging,
        "delta:agent/budget@0.1.0": delta_sdk::bindings::agent::delta::agent::budget,
        "delta:agent/kv@0.1.0": delta_sdk::bindings::agent::delta::agent::kv,
        "delta:agent/http@0.1.0": delta_sdk::bindings::agent::delta::agent::http,
        "delta:agent/agents@0.1.0": delta_sdk::bindings::agent::delta::agent::agents,
    },
});

struct JsAgent;

impl Guest for JsAgent {
    fn wizer_initialize(source: String) -> Result<(), String> {
        js_engine::initialize(&source, "run", capabilities::install)
    }

    fn run(task: Task) -> Result<Output, AgentError> {
        // The host checked that the input is JSON; it is embedded as is.
        let task_json = format!(
            r#"{{"runId":{},"agentId":{},"tenantId":{},"deadlineMs":{},"input":{}}}"#,
            serde_json::Value::from(task.run_id),
            serde_json::Value::from(task.agent_id),
            serde_json::Value::from(task.tenant_id),
            task.deadline_ms,
            task.input,
        );
        match js_engine::call(&[&task_json]) {
            js_engine::Answer::Ok(body) => Ok(Output { body }),
            js_engine::Answer::Error {
                code,
                message,
                retryable,
            } => Err(AgentError {
                code,
                message,
                retryable,
            }),
        }
    }
}

export!(JsAgent);

// hello.js: the JavaScript twin of examples/hello-agent.
//
//   delta run examples/js/hello.js --input '{"name":"Ada"}'
//
// Input {"name": "<string>"}; logs `greeting <name>`; output
// {"greeting": "Hello, <name>!"}. Any other input is the agent error
// `invalid-input`, as from the Rust SDK.
import { log, DeltaError } from "delta";

export function run(task) {
  const name = task.input?.name;
  if (typeof name !== "string") {
    throw new DeltaError("invalid-input", "expected {\"name\": \"<string>\"}");
  }
  log.info(`greeting ${name}`);
  return { greeting: `Hello, ${name}!` };
}

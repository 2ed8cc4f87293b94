// task-bot.js: the JavaScript twin of examples/llm-task-bot, plus an email
// with the answer (what examples/email-bot sends).
//
// Input: {"task": "<string>", "model"?: "<model or alias>", "max_tokens"?: N,
//         "notify"?: "<email address>"}
// Output: {"answer", "model", "input_tokens", "output_tokens", "remaining",
//          "message_id"?}
//
// * Budget exceeded: asks the parent agent for the missing tokens and fails
//   with the retryable error `budget-requested` naming the request.
// * Other refusals propagate as thrown DeltaErrors: the run ends with the
//   same codes as the Rust bot (`llm-<reason>`, `messaging-<reason>`).
import { llm, messaging, budget, log, DeltaError } from "delta";

export function run({ input }) {
  if (typeof input?.task !== "string") {
    throw new DeltaError("invalid-input", "expected {\"task\": \"<string>\"}");
  }
  let completion;
  try {
    completion = llm.complete({
      model: input.model ?? "default",
      messages: [
        { role: "system", content: "Answer the task briefly." },
        { role: "user", content: input.task },
      ],
      maxTokens: input.max_tokens ?? 256,
    });
  } catch (e) {
    if (e.code !== "llm-budget-exceeded") throw e;
    const request = budget.request(e.needed - e.available, `task: ${input.task.slice(0, 80)}`);
    log.warn(`budget exceeded; requested ${request.amount} tokens (${request.id}: ${request.status})`);
    const err = new DeltaError(
      "budget-requested",
      `requested ${request.amount} more tokens from the parent agent: request ${request.id} is ${request.status}`,
    );
    err.retryable = true;
    throw err;
  }
  const remaining = budget.remaining().available;
  const out = {
    answer: completion.text,
    model: completion.model,
    input_tokens: completion.usage.inputTokens,
    output_tokens: completion.usage.outputTokens,
    remaining,
  };
  if (typeof input.notify === "string") {
    const receipt = messaging.send({
      channel: "email",
      templateId: "welcome",
      recipient: input.notify,
      variables: { name: completion.text.slice(0, 64) },
    });
    out.message_id = receipt.messageId;
  }
  log.info(`answered with ${completion.model}`);
  return out;
}

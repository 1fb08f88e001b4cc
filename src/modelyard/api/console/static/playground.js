// The playground page: checks tools and schemas before anything is sent, streams one or two
// answers from /console/playground/chat (the gateway's own SSE, read with the vendored
// eventsource-parser) and shows what each answer came to. Text from the model only ever goes
// into the page as text (append / textContent), never as HTML.
import { EventSourceParserStream } from "./vendor/eventsource-parser-3.1.1/stream.js";

const form = document.getElementById("playground-form");
const NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const COST_EVENT = "modelyard.cost";
const CHOICES = ["auto", "none", "required"];
const FIELDS = [
  "model", "message", "temperature", "top_p", "max_tokens", "seed", "stop", "tools",
  "tool_choice", "schema_name", "schema",
];

const $ = (id) => document.getElementById(id);
const csrfToken = () => JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"];

// -- problems shown next to their field ------------------------------------------------------

function showProblem(field, message) {
  const control = $(field);
  const note = $(`${field}-problem`);
  if (!note) return;
  note.textContent = message;
  note.hidden = false;
  control?.setAttribute("aria-invalid", "true");
  const section = control?.closest("details");
  if (section) section.open = true;
}

function clearProblems() {
  for (const field of FIELDS) {
    const note = $(`${field}-problem`);
    if (note) {
      note.hidden = true;
      note.textContent = "";
    }
    $(field)?.removeAttribute("aria-invalid");
  }
}

// The field a gateway error names (`tools[0].function.name`, `response_format.json_schema`).
function fieldOf(param) {
  if (!param) return null;
  if (param.startsWith("response_format.json_schema.name")) return "schema_name";
  if (param.startsWith("response_format")) return "schema";
  if (param.startsWith("tool_choice")) return "tool_choice";
  if (param.startsWith("tools")) return "tools";
  if (param.startsWith("messages")) return "message";
  const name = param.split(/[.[]/)[0];
  return FIELDS.includes(name) ? name : null;
}

// -- reading and checking the form -------------------------------------------------------------

function parseJson(text, field, what) {
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return { problem: [field, `${what} is not valid JSON: ${error.message}`] };
  }
}

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

function readTools(problems) {
  const text = $("tools").value.trim();
  if (!text) return null;
  const parsed = parseJson(text, "tools", "The tools list");
  if (parsed.problem) return problems.push(parsed.problem), null;
  const tools = parsed.value;
  if (!Array.isArray(tools) || tools.length === 0) {
    problems.push(["tools", "Tools must be a non-empty JSON array of function tools."]);
    return null;
  }
  tools.forEach((tool, index) => {
    const where = `Tool ${index + 1}`;
    if (!isObject(tool) || tool.type !== "function") {
      problems.push(["tools", `${where} needs "type": "function".`]);
    } else if (!isObject(tool.function)) {
      problems.push(["tools", `${where} needs a "function" object.`]);
    } else if (typeof tool.function.name !== "string" || !NAME.test(tool.function.name)) {
      problems.push(["tools", `${where}'s function needs a "name" of 1 to 64 letters, digits, _ or -.`]);
    } else if (!isObject(tool.function.parameters)) {
      problems.push(["tools", `${where}'s function needs "parameters", a JSON schema object.`]);
    }
  });
  return tools;
}

function readToolChoice(tools, problems) {
  const choice = $("tool_choice").value;
  if (!choice) return null;
  if (CHOICES.includes(choice)) {
    if (!tools && choice !== "none") problems.push(["tool_choice", `"${choice}" needs tools.`]);
    return choice;
  }
  const name = choice.replace(/^function:/, "");
  if (!tools?.some((tool) => tool?.function?.name === name)) {
    problems.push(["tool_choice", `The function ${name} is not among the tools.`]);
  }
  return { type: "function", function: { name } };
}

function readFormat(problems) {
  if ($("format").value !== "json_schema") return null;
  const name = $("schema_name").value.trim();
  if (!NAME.test(name)) {
    problems.push(["schema_name", "The schema name must be 1 to 64 letters, digits, _ or -."]);
  }
  const text = $("schema").value.trim();
  if (!text) return problems.push(["schema", "Write the JSON schema the answer must match."]), null;
  const parsed = parseJson(text, "schema", "The schema");
  if (parsed.problem) return problems.push(parsed.problem), null;
  const schema = parsed.value;
  if (!isObject(schema) || schema.type !== "object") {
    problems.push(["schema", 'The schema must be an object schema: {"type": "object", ...}.']);
  } else if ("properties" in schema && !isObject(schema.properties)) {
    problems.push(["schema", 'The schema\'s "properties" must be an object.']);
  }
  const strict = $("schema_strict").checked;
  return { type: "json_schema", json_schema: { name, schema, strict } };
}

function readNumber(field, problems, integer) {
  const input = $(field);
  if (input.value === "" && !input.validity.badInput) return null;
  if (!input.checkValidity()) {
    problems.push([field, input.validationMessage || "This is not a valid number."]);
    return null;
  }
  const value = Number(input.value);
  if (integer && !Number.isInteger(value)) problems.push([field, "Enter a whole number."]);
  return value;
}

function stopSequences() {
  const lines = $("stop").value.split("\n").filter((line) => line !== "");
  return lines.length ? lines : null;
}

// The call as /chat and /code take it, or the problems that stop it from being sent.
function readCall(model) {
  const problems = [];
  const message = $("message").value;
  if (!message.trim()) problems.push(["message", "Write a message to send."]);
  const tools = readTools(problems);
  const call = {
    project: form.dataset.project,
    model,
    system: $("system").value,
    message,
    temperature: readNumber("temperature", problems, false),
    top_p: readNumber("top_p", problems, false),
    max_tokens: readNumber("max_tokens", problems, true),
    seed: readNumber("seed", problems, true),
    stop: stopSequences(),
    tools,
    tool_choice: readToolChoice(tools, problems),
    response_format: readFormat(problems),
  };
  return { call, problems };
}

function checked(model) {
  clearProblems();
  const { call, problems } = readCall(model);
  for (const [field, message] of problems) showProblem(field, message);
  if (problems.length) $(problems[0][0])?.focus();
  return problems.length ? null : call;
}

// Named tool choices follow the tools list as it is edited.
function offerNamedChoices() {
  const select = $("tool_choice");
  let names = [];
  try {
    const tools = JSON.parse($("tools").value);
    if (Array.isArray(tools)) names = tools.map((t) => t?.function?.name).filter((n) => typeof n === "string");
  } catch {
    // not JSON yet: offer no named choice
  }
  const current = select.value;
  for (const option of [...select.options]) if (option.value.startsWith("function:")) option.remove();
  for (const name of names) select.add(new Option(`only ${name}`, `function:${name}`));
  select.value = [...select.options].some((o) => o.value === current) ? current : "";
}

// -- one answer pane -----------------------------------------------------------------------------

const seconds = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`);

class Pane {
  constructor(root) {
    this.root = root;
    this.part = (name) => root.querySelector(`[data-part="${name}"]`);
  }

  stat(name, value) {
    this.root.querySelector(`[data-stat="${name}"]`).textContent = value;
  }

  start(model) {
    this.root.hidden = false;
    this.root.querySelector("h2").textContent = `Answer from ${model}`;
    this.failed = false;
    this.calls = new Map();
    for (const name of ["text", "tools"]) this.part(name).replaceChildren();
    this.part("text").hidden = false;
    this.part("tools").hidden = true;
    for (const name of ["error", "json"]) {
      this.part(name).hidden = true;
      this.part(name).textContent = "";
    }
    for (const dd of this.root.querySelectorAll("[data-stat]")) dd.textContent = "\u2013";
    this.status("Waiting for the first token\u2026");
    this.root.setAttribute("aria-busy", "true");
  }

  status(text) {
    this.part("status").textContent = text;
  }

  headers(headers) {
    this.stat("deployment", headers.get("x-modelyard-deployment") || "\u2013");
    this.stat("route", headers.get("x-modelyard-route") || "none (a model)");
    this.stat("request_id", headers.get("x-request-id") || "\u2013");
    const reason = headers.get("x-modelyard-route-reason");
    if (reason) this.root.querySelector('[data-stat="deployment"]').title = reason;
  }

  append(text) {
    this.part("text").append(text);
  }

  toolCall(delta) {
    let shown = this.calls.get(delta.index ?? 0);
    if (!shown) {
      const item = document.createElement("li");
      const name = document.createElement("strong");
      name.className = "tool-name";
      const args = document.createElement("pre");
      args.className = "tool-arguments";
      item.append(name, args);
      this.part("tools").append(item);
      this.part("tools").hidden = false;
      shown = { name, args };
      this.calls.set(delta.index ?? 0, shown);
    }
    if (delta.function?.name) shown.name.textContent += delta.function.name;
    if (delta.function?.arguments) shown.args.append(delta.function.arguments);
  }

  usage(usage) {
    this.stat("prompt_tokens", String(usage.prompt_tokens));
    this.stat("completion_tokens", String(usage.completion_tokens));
  }

  cost(priced) {
    this.stat("cost", priced.cost_usd === null ? "not recorded yet (see Usage)" : `$${priced.cost_usd}`);
  }

  fail(message) {
    if (this.failed) return;
    this.failed = true;
    this.part("error").textContent = message;
    this.part("error").hidden = false;
  }

  checkJson() {
    const note = this.part("json");
    try {
      JSON.parse(this.part("text").textContent);
      note.textContent = "The answer parses as JSON.";
      note.className = "json-check good";
    } catch {
      note.textContent = "The answer does not parse as JSON.";
      note.className = "json-check bad";
    }
    note.hidden = false;
  }

  end(text) {
    // An answer that is only tool calls needs no empty text box.
    if (!this.part("text").textContent && this.calls.size) this.part("text").hidden = true;
    this.status(text);
    this.root.removeAttribute("aria-busy");
  }
}

// -- asking ---------------------------------------------------------------------------------------

async function problemOf(response) {
  try {
    const body = await response.json();
    return { message: body.error.message, param: body.error.param };
  } catch {
    return { message: `The gateway answered ${response.status}.`, param: null };
  }
}

async function ask(pane, call, signal) {
  pane.start(call.model);
  const started = performance.now();
  let response;
  try {
    response = await fetch(form.action, {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "text/event-stream",
        "X-CSRF-Token": csrfToken(),
      },
      body: JSON.stringify(call),
      signal,
    });
  } catch (error) {
    pane.fail(signal.aborted ? "Stopped before an answer." : `The request failed: ${error.message}`);
    return pane.end("Not answered.");
  }
  pane.headers(response.headers);
  if (!response.ok) {
    const { message, param } = await problemOf(response);
    pane.fail(`${response.status}: ${message}`);
    const field = fieldOf(param);
    if (field) showProblem(field, `The gateway refused this: ${message}`);
    return pane.end(`Refused (${response.status}).`);
  }
  pane.status("Streaming\u2026");
  let first = null;
  let done = false;
  const events = response.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream())
    .getReader();
  try {
    for (;;) {
      const { value: event, done: ended } = await events.read();
      if (ended) break;
      if (event.event === COST_EVENT) {
        pane.cost(JSON.parse(event.data));
        continue;
      }
      if (event.data === "[DONE]") {
        done = true;
        pane.stat("latency", seconds(performance.now() - started));
        continue;
      }
      const chunk = JSON.parse(event.data);
      if (chunk.error) {
        pane.fail(chunk.error.message);
        continue;
      }
      for (const choice of chunk.choices || []) {
        const delta = choice.delta || {};
        if (first === null && (delta.content || delta.tool_calls)) {
          first = performance.now();
          pane.stat("first_token", seconds(first - started));
        }
        if (delta.content) pane.append(delta.content);
        for (const toolCall of delta.tool_calls || []) pane.toolCall(toolCall);
        if (choice.finish_reason) pane.stat("finish", choice.finish_reason);
      }
      if (chunk.usage) pane.usage(chunk.usage);
    }
  } catch (error) {
    pane.fail(signal.aborted ? "Stopped." : `The stream broke off: ${error.message}`);
  }
  if (!done) {
    pane.fail("The answer ended before it was complete.");
    return pane.end(signal.aborted ? "Stopped." : "Ended early.");
  }
  if (call.response_format?.type === "json_schema") pane.checkJson();
  pane.end("Done.");
}

let running = null;

function setUp() {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (running) return;
    const model = $("model").value;
    const compare = $("compare").value;
    const call = checked(model);
    if (!call) return;
    running = new AbortController();
    $("send").disabled = true;
    $("stop-button").disabled = false;
    const asked = [ask(new Pane($("pane-a")), call, running.signal)];
    if (compare) asked.push(ask(new Pane($("pane-b")), { ...call, model: compare }, running.signal));
    else $("pane-b").hidden = true;
    try {
      await Promise.all(asked);
    } finally {
      running = null;
      $("send").disabled = false;
      $("stop-button").disabled = true;
    }
  });

  $("stop-button").addEventListener("click", () => running?.abort());

  // "View code": htmx posts the checked call; nothing is posted while the form has a problem.
  document.body.addEventListener("htmx:configRequest", (event) => {
    if (event.detail.elt.id !== "view-code") return;
    const call = checked($("model").value);
    if (!call) {
      event.preventDefault();
      return;
    }
    event.detail.parameters.call = JSON.stringify(call);
  });

  const examples = JSON.parse($("playground-examples").textContent);
  for (const button of document.querySelectorAll("[data-example]")) {
    button.addEventListener("click", () => {
      const into = $(button.dataset.into);
      into.value = examples[button.dataset.example];
      if (button.dataset.into === "schema") $("format").value = "json_schema";
      into.dispatchEvent(new Event("input"));
      into.focus();
    });
  }
  $("tools").addEventListener("input", offerNamedChoices);
  offerNamedChoices();
}

if (form) setUp();

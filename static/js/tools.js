// An answer's tool calls, each a collapsible step: the tool, its arguments, its result and
// time, and Run / Don't run while it waits for the user's approval. The same markup as
// templates/conversations/_tool_call.html. Arguments and results arrive as HTML the server
// rendered and sanitized (model and tool output are untrusted); every other field is text.

import { icon } from "./icons.js";

// Put `calls` in an answer's `.msg-tools`, in order, replacing what it showed.
export function renderTools(container, calls) {
  container.replaceChildren(...calls.map(toolCallElement));
  container.hidden = calls.length === 0;
}

// A call new or changed: updated in place, so a step the reader opened stays open.
export function upsertTool(container, call) {
  const old = container.querySelector(`[data-call="${call.id}"]`);
  const el = toolCallElement(call);
  if (old) {
    if (old.open && call.status !== "waiting") el.open = true;
    old.replaceWith(el);
  } else {
    container.append(el);
  }
  container.hidden = false;
}

function toolCallElement(call) {
  const el = document.createElement("details");
  el.className = "tool-call";
  el.id = `tool-call-${call.id}`;
  el.dataset.call = String(call.id);
  el.dataset.status = call.status;
  el.open = call.status === "waiting";

  const summary = document.createElement("summary");
  const glyph = icon("i-tool");
  glyph.classList.add("tool-icon");
  summary.append(glyph, text("span", "tool-title", call.title), " ",
    text("span", "tool-source", call.source), " ", text("span", "tool-status", call.status_text));

  const body = document.createElement("div");
  body.className = "tool-body";
  const args = document.createElement("div");
  args.className = "tool-arguments prose";
  args.innerHTML = call.arguments_html; // sanitized on the server
  const approval = document.createElement("div");
  approval.className = "tool-approval";
  approval.append(text("p", "", "This tool asks for your approval before it runs."),
    button("Run it", "btn btn--small btn--primary", { toolApprove: call.id }), " ",
    button("Don’t run", "btn btn--small", { toolRefuse: call.id }));
  const result = document.createElement("div");
  result.className = "tool-result prose";
  result.innerHTML = call.result_html; // sanitized on the server
  body.append(text("p", "tool-label", "Arguments"), args, approval,
    text("p", "tool-label tool-result-label", "Result"), result);
  el.append(summary, body);
  return el;
}

function text(tag, className, value) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  el.textContent = value;
  return el;
}

function button(label, className, data) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = className;
  el.textContent = label;
  Object.assign(el.dataset, Object.fromEntries(Object.entries(data).map(([k, v]) => [k, String(v)])));
  return el;
}

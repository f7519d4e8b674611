// Renders message and delta frames into the thread, keyed by message id, so the same frame
// applied twice (a resubscribe after a reconnect, a second tab) changes nothing.
//
// Deltas follow docs/protocol.md: apply only seq = last + 1, drop older ones as duplicates,
// and on a gap ask the server for the whole answer (resync) instead of guessing.
//
// The thread shows one branch of the conversation's tree. A message frame marked `branch`
// starts a new one (a regenerated answer, an edited question): what followed its parent
// goes. Any other new message belongs here only when it follows the last one shown; else it
// is on another branch, and it and its deltas are ignored (off the path) rather than resynced.

import { imageList } from "./attachments.js";
import { decorate } from "./actions.js";
import { documentList } from "./documents.js";
import { icon } from "./icons.js";
import { usdShort } from "./money.js";
import { renderTools, upsertTool } from "./tools.js";

const ACTIVE = new Set(["pending", "streaming"]);
const NOTICE_LABELS = { failed: "Couldn’t answer", stopped: "Stopped", interrupted: "Interrupted" };
const RESYNC_INTERVAL_MS = 1000;
// Within this many pixels of the bottom, the thread follows a growing answer.
const STICK_PX = 80;

export class Thread {
  constructor({ root, scroller, empty, onResync, onAnswerEnd }) {
    this.root = root;
    this.scroller = scroller;
    this.empty = empty;
    this.onResync = onResync;
    this.onAnswerEnd = onAnswerEnd;
    this.resyncSentAt = new Map();
    this.offPath = new Set();
    // Answers streaming on a branch this tab does not show: the conversation is busy all
    // the same (one answer at a time), and Stop reaches them.
    this.streamingElsewhere = new Set();
    for (const el of this.messages()) decorate(el);
    // A reader at the end stays there when the window changes size (a phone turned, a
    // window narrowed: the text wraps taller), as while an answer grows.
    this.atEnd = true;
    scroller.addEventListener("scroll", () => { this.atEnd = this.nearEnd(); }, { passive: true });
    new ResizeObserver(() => { if (this.atEnd) this.scrollToEnd(); }).observe(scroller);
  }

  nearEnd() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < STICK_PX;
  }

  get(id) {
    return document.getElementById(`message-${id}`);
  }

  messages() {
    return this.root.querySelectorAll(":scope > .msg");
  }

  newestId() {
    const last = this.root.querySelector(":scope > .msg:last-child");
    return last ? Number(last.dataset.id) : null;
  }

  isBusy() {
    return this.streamingElsewhere.size > 0 ||
      this.root.querySelector('.msg[data-status="pending"], .msg[data-status="streaming"]') !== null;
  }

  // An answer on another branch was heard of: streaming, or ended.
  elsewhere(id, status) {
    if (ACTIVE.has(status)) this.streamingElsewhere.add(id);
    else this.streamingElsewhere.delete(id);
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  applyMessage(m, { follow = false, branch = false } = {}) {
    let el = this.get(m.id);
    if (!el) {
      if (this.offPath.has(m.id)) {
        this.elsewhere(m.id, m.status);
        return;
      }
      if (branch) this.cutAfter(m.parent ?? null);
      else if (!("parent" in m)) {
        // An answer's ending says no parent: ask where an unknown one belongs.
        this.resync(m.id);
        return;
      } else if (m.parent !== this.newestId()) {
        this.offPath.add(m.id);
        this.elsewhere(m.id, m.status);
        return;
      }
    }
    this.streamingElsewhere.delete(m.id);
    this.keepingBottom(follow || branch, () => {
      if (!el) {
        el = m.role === "user" ? userElement(m.id) : assistantElement(m.id);
        this.insert(el, m.id);
      }
      const wasActive = ACTIVE.has(el.dataset.status);
      el.dataset.status = m.status;
      if ("parent" in m) el.dataset.parent = m.parent ?? "";
      if (m.siblings) el.dataset.siblings = m.siblings.join(" ");
      if (m.role === "user") {
        el.querySelector(".bubble").textContent = m.text;
        if (m.attachments?.length && !el.querySelector(".msg-images")) {
          el.querySelector(".bubble").before(imageList(m.attachments));
        }
        if (m.documents?.length && !el.querySelector(".msg-docs")) {
          el.querySelector(".bubble").before(documentList(m.documents));
        }
        decorate(el);
        return;
      }
      const settled = el.querySelector(".msg-settled");
      const tail = el.querySelector(".msg-tail");
      if (m.html || m.tail || !m.text) {
        settled.innerHTML = m.html;
        tail.innerHTML = m.tail || "";
      } else {
        // Text without html: an answer streaming in another server process, seen from
        // its last saved row. Show it plain until the next full state.
        settled.replaceChildren();
        const plain = document.createElement("p");
        plain.className = "plain";
        plain.textContent = m.text;
        tail.replaceChildren(plain);
      }
      el.dataset.seq = String(m.seq ?? 0);
      if (m.author) el.querySelector(".msg-author-name").textContent = m.author;
      el.querySelector(".msg-progress-text").textContent =
        m.status === "pending" ? waitingText(m.queue_position) : "Writing…";
      el.querySelector(".msg-notice-label").textContent = NOTICE_LABELS[m.status] ?? "";
      el.querySelector(".msg-error-text").textContent = m.error_text || "";
      el.querySelector(".msg-meta").textContent = ACTIVE.has(m.status) ? "" : answerMeta(m);
      el.querySelector(".msg-note").textContent = m.notice || "";
      el.querySelector(".msg-source").content.textContent = m.text ?? "";
      if (m.tools) renderTools(el.querySelector(".msg-tools"), m.tools);
      el.dataset.finish = m.finish_reason ?? "";
      decorate(el);
      if (wasActive && !ACTIVE.has(m.status)) this.onAnswerEnd?.(m);
    });
  }

  applyDelta(d) {
    const el = this.get(d.message);
    const last = el?.dataset.seq === "" ? NaN : Number(el?.dataset.seq);
    if (el && !ACTIVE.has(el.dataset.status)) return; // the answer has ended: a straggler
    if (!el && this.offPath.has(d.message)) {
      this.elsewhere(d.message, "streaming"); // on another branch
      return;
    }
    if (!el || Number.isNaN(last)) {
      // Unknown here, or known only from the page (no seq yet): ask for the whole state.
      if (!el || el.dataset.role === "assistant") this.resync(d.message);
      return;
    }
    if (d.seq <= last) return; // a duplicate
    if (d.seq > last + 1) {
      this.resync(d.message); // frames were lost
      return;
    }
    this.keepingBottom(false, () => {
      if (d.settled.length) el.querySelector(".msg-settled").insertAdjacentHTML("beforeend", d.settled.join(""));
      const tail = el.querySelector(".msg-tail");
      if (d.tail !== undefined) tail.innerHTML = d.tail;
      else appendPlain(tail, d.text);
      el.dataset.seq = String(d.seq);
      if (el.dataset.status === "pending") {
        el.dataset.status = "streaming";
        el.querySelector(".msg-progress-text").textContent = "Writing…";
      }
    });
  }

  // A tool call of a streaming answer, new or changed: it takes the answer's next seq,
  // like a delta, so a lost one is noticed the same way.
  applyTool(f) {
    const el = this.get(f.message);
    if (!el) {
      if (this.offPath.has(f.message)) this.elsewhere(f.message, "streaming");
      else this.resync(f.message);
      return;
    }
    const last = el.dataset.seq === "" ? NaN : Number(el.dataset.seq);
    if (!ACTIVE.has(el.dataset.status) || f.seq <= last) return;
    if (Number.isNaN(last) || f.seq > last + 1) {
      this.resync(f.message);
      return;
    }
    this.keepingBottom(false, () => {
      upsertTool(el.querySelector(".msg-tools"), f.call);
      el.dataset.seq = String(f.seq);
      el.dataset.status = "streaming";
      el.querySelector(".msg-progress-text").textContent =
        f.call.status === "waiting" ? "Waiting for your approval…" : "Using tools…";
    });
  }

  // The local model writes one answer at a time: say how many are ahead of this one.
  applyQueued(q) {
    const el = this.get(q.message);
    if (!el || el.dataset.status !== "pending") return;
    el.querySelector(".msg-progress-text").textContent = waitingText(q.position);
  }

  resync(id) {
    const now = performance.now();
    if (now - (this.resyncSentAt.get(id) ?? -Infinity) < RESYNC_INTERVAL_MS) return;
    this.resyncSentAt.set(id, now);
    this.onResync(id);
  }

  // A new branch from `parent` (null: from the start): the messages after it go. Ids grow
  // along a branch, so they are the ones with greater ids.
  cutAfter(parent) {
    for (const el of this.messages()) {
      if (parent === null || Number(el.dataset.id) > parent) el.remove();
    }
  }

  // Another branch, as the server rendered it (sanitized): the thread's whole content.
  replace(html) {
    // An answer streaming here that the new branch does not show streams on elsewhere.
    const active = new Set(this.streamingElsewhere);
    for (const el of this.root.querySelectorAll(".msg")) {
      if (ACTIVE.has(el.dataset.status)) active.add(Number(el.dataset.id));
    }
    this.root.innerHTML = html;
    this.offPath.clear();
    this.streamingElsewhere.clear();
    for (const id of active) {
      if (this.get(id)) continue;
      this.offPath.add(id);
      this.streamingElsewhere.add(id);
    }
    for (const el of this.messages()) decorate(el);
    this.empty.hidden = this.messages().length > 0;
    this.scrollToEnd();
  }

  // Earlier messages of the branch, rendered by the server, above those shown.
  prepend(html) {
    const first = this.root.firstElementChild;
    this.root.insertAdjacentHTML("afterbegin", html);
    for (const el of this.messages()) {
      if (el === first) break;
      decorate(el);
    }
  }

  // Messages are ordered by id; a new one almost always goes last.
  insert(el, id) {
    let before = null;
    for (const other of Array.from(this.messages()).reverse()) {
      if (Number(other.dataset.id) < id) break;
      before = other;
    }
    this.root.insertBefore(el, before);
    this.empty.hidden = true;
  }

  keepingBottom(force, change) {
    const atBottom = this.nearEnd();
    change();
    if (force || atBottom) this.scrollToEnd();
  }
}

function waitingText(ahead) {
  if (!ahead) return "Thinking…";
  return `Waiting for the local model — ${ahead} ${ahead === 1 ? "answer" : "answers"} ahead`;
}

export function answerMeta(m) {
  const parts = m.model ? [m.model] : [];
  if (m.prompt_tokens != null && m.completion_tokens != null) {
    // "≈": the server reported no usage, so these are our own count.
    const about = m.usage_estimated ? "≈" : "";
    parts.push(
      `${about}${m.prompt_tokens.toLocaleString("en-US")} in · ${about}${m.completion_tokens.toLocaleString("en-US")} out tokens` +
        (about ? " (estimated)" : ""),
    );
  }
  if (m.cost_usd != null) parts.push(usdShort(m.cost_usd));
  const ms = m.time_to_first_token_ms;
  if (ms != null) parts.push(`first token ${ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`}`);
  return parts.join(" · ");
}

// An answer as a reader hears it: its rendered text, without the code blocks' Copy buttons.
export function answerText(el) {
  const body = el.querySelector(".msg-body").cloneNode(true);
  for (const head of body.querySelectorAll(".code-head")) head.remove();
  return body.textContent.replace(/\n{3,}/g, "\n\n").trim();
}

// The same markup as templates/conversations/_message.html.
function userElement(id) {
  const el = article(id, "user");
  el.append(heading("You said", "visually-hidden"), div("bubble"));
  return el;
}

function assistantElement(id) {
  const el = article(id, "assistant");
  el.dataset.seq = "";
  const head = heading("", "msg-author");
  const author = span("msg-author-name");
  author.textContent = "Mistral";
  head.append(author);
  const avatar = document.createElement("span");
  avatar.className = "avatar";
  avatar.setAttribute("aria-hidden", "true");
  avatar.append(icon("i-logo"));
  head.prepend(avatar);

  const source = document.createElement("template");
  source.className = "msg-source";
  const tools = div("msg-tools");
  tools.hidden = true;
  const body = div("msg-body prose");
  body.append(div("msg-settled"), div("msg-tail"));

  const progress = document.createElement("p");
  progress.className = "msg-progress";
  const dots = span("dots");
  dots.setAttribute("aria-hidden", "true");
  dots.append(document.createElement("i"), document.createElement("i"), document.createElement("i"));
  progress.append(dots, span("msg-progress-text"));

  const notice = div("msg-notice");
  const retry = document.createElement("button");
  retry.type = "button";
  retry.className = "btn btn--small msg-retry";
  retry.dataset.retry = String(id);
  retry.append(icon("i-retry"), "Retry");
  notice.append(span("msg-notice-label"), " ", span("msg-error-text"), " ", retry);

  const note = document.createElement("p");
  note.className = "msg-note";
  const meta = document.createElement("p");
  meta.className = "msg-meta";
  const report = document.createElement("button");
  report.type = "button";
  report.className = "icon-btn msg-report";
  report.dataset.report = String(id);
  report.setAttribute("aria-label", "Report this answer");
  report.setAttribute("aria-pressed", "false");
  report.append(icon("i-thumbs-down"));
  el.append(head, source, tools, body, progress, notice, note, meta, report);
  return el;
}

function article(id, role) {
  const el = document.createElement("article");
  el.className = `msg msg--${role}`;
  el.id = `message-${id}`;
  el.dataset.id = String(id);
  el.dataset.role = role;
  return el;
}

function heading(text, className) {
  const h = document.createElement("h2");
  h.className = className;
  h.textContent = text;
  return h;
}

function div(className) {
  const el = document.createElement("div");
  el.className = className;
  return el;
}

function span(className) {
  const el = document.createElement("span");
  el.className = className;
  return el;
}

// Between two renders of the open tail, new text goes in as plain text at the end of the
// tail's last block (inside a code block's <code>), until the next rendered tail replaces it.
// Only blocks are entered: after "**bold**", new text belongs after the <strong>.
const BLOCKS = new Set([
  "P", "LI", "UL", "OL", "BLOCKQUOTE", "DIV", "PRE", "TABLE", "THEAD", "TBODY", "TR", "TD", "TH",
  "H1", "H2", "H3", "H4", "H5", "H6",
]);

function appendPlain(tail, text) {
  let node = tail;
  while (node.tagName !== "CODE") {
    let last = node.lastChild;
    while (last && last.nodeType === Node.TEXT_NODE && !last.data.trim()) last = last.previousSibling;
    const enters = last && last.nodeType === Node.ELEMENT_NODE &&
      (BLOCKS.has(last.tagName) || (last.tagName === "CODE" && node.tagName === "PRE"));
    if (!enters) break;
    node = last;
  }
  node.append(text);
}

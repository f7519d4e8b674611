// The chat page: wires the socket, the thread, the sidebar, the composer and the dialogs.
// Server data reaches us through data-* attributes on <body> (no inline script: see the CSP).
// Over 400 lines: it is where every part of the page meets (frames to the thread, the
// composer's sends, the dialogs, the shortcuts); each part's own logic is in its module.

import { AttachmentTray, wireImageViewer } from "./attachments.js";
import { Composer } from "./composer.js";
import { DocumentTray, wireCitations } from "./documents.js";
import { wireCopyButtons } from "./copy.js";
import { DeleteDialog, RenameDialog, SettingsDialog } from "./dialogs.js";
import { urlFor } from "./http.js";
import { fetchModels, ModelPicker } from "./models.js";
import { ReportDialog } from "./report.js";
import { wireShortcuts } from "./shortcuts.js";
import { Sidebar } from "./sidebar.js";
import { totalsText } from "./money.js";
import { ChatSocket } from "./socket.js";
import { answerText, Thread } from "./thread.js";

const config = document.body.dataset;
const $ = (selector) => document.querySelector(selector);
const MODEL_KEY = "mistral-chat.model";
const SESSION_END_GRACE_MS = 600;

const state = {
  conversation: config.conversation ? Number(config.conversation) : null,
  // A `send` with conversation null is out; the server's `conversation` frame answers it.
  creating: false,
  // Sent, and its message frames not back yet: keeps Send from firing twice.
  sending: false,
  lastSent: "",
};

// Thread

const thread = new Thread({
  root: $("#thread"),
  scroller: $("#thread-scroll"),
  empty: $("#empty"),
  onResync: (id) => socket.send({ type: "resync", message: id }),
  // A screen reader hears the answer itself once it is whole (the live region is polite:
  // after what the reader is saying), not only that it ended.
  onAnswerEnd: (m) => {
    const el = thread.get(m.id);
    const author = el?.querySelector(".msg-author-name").textContent ?? "Mistral";
    const text = el ? answerText(el) : "";
    const words = { complete: `${author} answered:`, stopped: "Answer stopped:", interrupted: "Answer interrupted:" };
    if (m.status in words) announce(text ? `${words[m.status]} ${text}` : words[m.status].replace(/:$/, "."));
    else announce(`The answer failed: ${m.error_text}`);
  },
});

// A long conversation's page shows its end; earlier messages come in on demand, above,
// without moving what the reader is looking at.
const earlierButton = $("#thread-earlier");
earlierButton?.addEventListener("click", async () => {
  earlierButton.disabled = true;
  try {
    const response = await fetch(`${earlierButton.dataset.url}?before=${earlierButton.dataset.before}`, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`status ${response.status}`);
    const { html, earlier } = await response.json();
    const scroller = $("#thread-scroll");
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    $("#thread").insertAdjacentHTML("afterbegin", html); // rendered and sanitized by the server
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
    const first = $("#thread .msg");
    if (earlier && first) earlierButton.dataset.before = first.dataset.id;
    else earlierButton.remove();
    earlierButton.textContent = "Show earlier messages";
  } catch {
    earlierButton.textContent = "Could not load earlier messages. Try again";
  } finally {
    earlierButton.disabled = false;
  }
});

$("#thread").addEventListener("click", (event) => {
  const retry = event.target.closest("[data-retry]");
  if (!retry) return;
  if (!socket.send({ type: "retry", message: Number(retry.dataset.retry) })) notConnected();
});

// Socket

// A question asked while the page's socket is still opening (just after a page load)
// waits for it; if that first connection fails, it comes back to the box, as one asked
// during an outage does at once.
let waiting = null;

const socket = new ChatSocket(config.socketPath, {
  onOpen() {
    if (state.conversation !== null) subscribe();
    if (waiting) socket.send(waiting.frame);
    waiting = null;
    refresh();
  },
  onFrame: handleFrame,
  onState(status) {
    if (status === "reconnecting" && waiting) {
      composer.restore(waiting.text);
      waiting = null;
      state.creating = false;
      notConnected();
    }
    document.body.dataset.connection = status;
    $("#connection-banner").hidden = status !== "reconnecting";
    if (status !== "open") state.sending = false;
    refresh();
  },
  onTooBig() {
    // Only a frame this tab sent can be too big, and a question is the only big one.
    composer.restore(state.lastSent);
    notice("That was too big to send: the server closed the connection. Reconnecting…");
  },
  onUnauthorized() {
    // The login page sends a still signed-in browser straight back. After a password change
    // in another tab, that tab's response carries the new session cookie: give it a moment
    // to land, or this tab would arrive with the old, deleted session.
    $("#connection-text").textContent = "Session ended…";
    $("#connection-banner").hidden = false;
    const next = encodeURIComponent(location.pathname + location.search);
    setTimeout(() => location.assign(`${config.loginUrl}?next=${next}`), SESSION_END_GRACE_MS);
  },
});
// For the browser tests, which close it to check that the page reconnects.
Object.defineProperty(window, "chatSocket", { get: () => socket.ws });

function subscribe() {
  const frame = { type: "subscribe", conversation: state.conversation };
  const since = thread.newestId();
  if (since !== null) frame.since = since;
  socket.send(frame);
}

function handleFrame(frame) {
  switch (frame.type) {
    case "subscribed":
      if (frame.conversation !== state.conversation) return;
      for (const m of frame.messages) thread.applyMessage(m);
      break;
    case "message": {
      const m = frame.message;
      if (m.conversation !== state.conversation) {
        // Only the socket that created a conversation watches it at first.
        if (!(state.creating && thread.newestId() === null)) return;
        adopt(m.conversation);
      }
      thread.applyMessage(m, { follow: m.role === "user" });
      if (frame.totals) showTotals(frame.totals);
      if (m.role === "assistant") state.sending = false;
      if (m.role === "user" && m.documents?.length) documents.refreshPreview();
      if (m.role === "user") sidebar.touch(m.conversation);
      break;
    }
    case "delta":
      if (frame.conversation === state.conversation) thread.applyDelta(frame);
      break;
    case "queued":
      if (frame.conversation === state.conversation) thread.applyQueued(frame);
      break;
    case "conversation": {
      const c = frame.conversation;
      const known = sidebar.has(c.id);
      sidebar.upsert(c);
      if (state.creating && state.conversation === null && !known) adopt(c.id);
      if (c.id === state.conversation) {
        sidebar.setActive(c.id);
        showTitle(c.title);
        picker.set(c.model);
        settingsDialog.setModel(c.model);
      }
      break;
    }
    case "conversation.deleted":
      sidebar.remove(frame.conversation);
      if (frame.conversation === state.conversation) leaveDeletedConversation();
      break;
    case "error":
      handleError(frame);
      break;
  }
  refresh();
}

function handleError(frame) {
  state.sending = false;
  const refused = [
    "empty_message", "too_long", "invalid", "busy", "too_many_images", "invalid_attachment",
    "too_many_documents", "invalid_document", "document_not_ready", "restarting", "unknown_model",
    "too_many_questions", "too_many_answers", "too_many_conversations",
  ];
  if (refused.includes(frame.code)) composer.restore(state.lastSent);
  if (state.creating && state.conversation === null) state.creating = false;
  if (frame.code === "not_found" && state.conversation !== null && !sidebar.has(state.conversation)) {
    notice("This conversation no longer exists.");
    return;
  }
  notice(frame.message);
}

// A new chat became a conversation: give it its URL without reloading.
function adopt(id) {
  state.conversation = id;
  state.creating = false;
  document.body.dataset.conversation = String(id);
  history.pushState({ conversation: id }, "", urlFor(config.conversationUrl, id));
  sidebar.setActive(id);
  settingsDialog.setConversation(id);
  $("#settings-btn").hidden = false;
}

window.addEventListener("popstate", () => location.reload());

// Composer

const attachments = new AttachmentTray({
  list: $("#attachments"),
  input: $("#attach-input"),
  button: $("#attach-btn"),
  dropZone: $("#composer"),
  pasteTarget: $("#composer-input"),
  uploadUrl: config.uploadUrl,
  removeUrl: config.attachmentRemoveUrl,
  onChange: () => composer.resize(),
  onError: notice,
});
wireImageViewer($("#thread"), $("#image-dialog"));

const documents = new DocumentTray({
  list: $("#doc-tray"),
  input: $("#doc-attach-input"),
  button: $("#doc-attach-btn"),
  uploadUrl: config.documentUploadUrl,
  statusUrl: config.documentStatusUrl,
  removeUrl: config.documentRemoveUrl,
  preview: $("#doc-preview"),
  previewUrl: config.documentPreviewUrl,
  context: () => ({ conversation: state.conversation, model: picker.value }),
  onChange: () => composer.resize(),
  onError: notice,
});
wireCitations($("#thread"), $("#doc-page-dialog"));

const composer = new Composer({
  form: $("#composer"),
  input: $("#composer-input"),
  button: $("#send-btn"),
  attachments,
  documents,
  onWait: notice,
  onSend: send,
  onStop: stop,
});

function stop() {
  if (state.conversation !== null) socket.send({ type: "stop", conversation: state.conversation });
}

function send(text, attachmentIds = [], documentIds = []) {
  const frame = { type: "send", conversation: state.conversation, text };
  if (attachmentIds.length) frame.attachments = attachmentIds;
  if (documentIds.length) frame.documents = documentIds;
  if (state.conversation === null) {
    frame.model = picker.value;
    state.creating = true;
  }
  if (!socket.isOpen && document.body.dataset.connection === "connecting") {
    waiting = { frame, text }; // the page's socket is opening: it goes out on open
  } else if (!socket.send(frame)) {
    state.creating = false;
    notConnected();
    return false;
  }
  state.sending = true;
  state.lastSent = text;
  notice("");
  refresh();
  return true;
}

for (const example of document.querySelectorAll(".example")) {
  example.addEventListener("click", () => {
    composer.set(example.dataset.prompt);
    composer.send();
  });
}

function refresh() {
  composer.setBusy(state.sending || thread.isBusy());
  document.body.classList.toggle("is-streaming", thread.isBusy());
}

// Sidebar and dialogs

const sidebar = new Sidebar({
  root: $("#sidebar"),
  list: $("#conv-list"),
  template: $("#conv-template"),
  conversationUrl: config.conversationUrl,
  onRename: (id, title) => renameDialog.open(id, title),
  onDelete: (id, title) => {
    // Chosen now: the socket may remove the row before the request returns.
    focusAfterDelete = sidebar.neighbour(id);
    deleteDialog.open(id, title);
  },
});

// Where focus goes once a conversation other than the open one is deleted: its row's
// Delete button, which had it, is gone.
let focusAfterDelete = null;

const renameDialog = new RenameDialog({
  dialog: $("#rename-dialog"),
  urlTemplate: config.renameUrl,
  onRenamed(conversation) {
    sidebar.upsert(conversation);
    if (conversation.id === state.conversation) showTitle(conversation.title);
  },
});

const deleteDialog = new DeleteDialog({
  dialog: $("#delete-dialog"),
  urlTemplate: config.deleteUrl,
  onDeleted(id) {
    sidebar.remove(id);
    if (id === state.conversation) leaveDeletedConversation();
    else (focusAfterDelete?.isConnected ? focusAfterDelete : $("#sidebar .new-chat")).focus();
  },
});

// The tab that deletes the open conversation hears of it twice (its own request, then the
// socket's event): one navigation, or the second one cancels the first mid-way.
let leaving = false;
function leaveDeletedConversation() {
  if (leaving) return;
  leaving = true;
  location.assign(config.chatUrl);
}

const settingsDialog = new SettingsDialog({
  dialog: $("#settings-dialog"),
  urlTemplate: config.settingsUrl,
  onSaved(conversation) {
    sidebar.upsert(conversation);
    picker.set(conversation.model);
  },
});
$("#settings-btn").addEventListener("click", () => settingsDialog.open());

const reportDialog = new ReportDialog({
  dialog: $("#report-dialog"),
  urlTemplate: config.reportUrl,
  onReported: () => announce("Answer reported. A reviewer will look at this conversation."),
});
$("#thread").addEventListener("click", (event) => {
  const report = event.target.closest("[data-report]");
  if (report) reportDialog.open(report);
});

// Model picker

const picker = new ModelPicker({
  root: $("#model-picker"),
  // The composer invites a question to whoever will answer it (the server says who: the
  // model list's `author`), so the small local model never passes for Mistral.
  onShown(model) {
    if (model.author) $("#composer-input").placeholder = `Message ${model.author}…`;
    $("#safe-prompt-field").hidden = !model.safe_prompt;
  },
  async onChange(model) {
    if (state.conversation === null) {
      localStorage.setItem(MODEL_KEY, model);
      picker.set(model);
      return;
    }
    const result = await settingsDialog.saveModel(model);
    if (!result.ok) {
      picker.revert();
      notice(Object.values(result.data.errors ?? {}).flat()[0] ?? "The model could not be changed.");
    }
  },
});

fetchModels(config.modelsUrl).then(({ models, problems }) => {
  picker.showProblems(problems);
  if (!models.length) return;
  if (!models.some((m) => m.vision)) attachments.refuse("No model on this server can see images.");
  const remembered = localStorage.getItem(MODEL_KEY);
  const listed = (id) => models.some((m) => m.id === id);
  let chosen = picker.value;
  if (state.conversation === null) {
    // A new chat starts on a model that can answer: the one last chosen, the server's
    // default, or else (no server lists the default) the first model listed.
    if (remembered && listed(remembered)) chosen = remembered;
    else if (!listed(chosen)) chosen = models[0].id;
  }
  picker.fill(models, chosen);
});

// Small things

function showTitle(title) {
  $("#conv-title").textContent = title || "New chat";
  document.title = `${title || "New chat"} · Mistral Chat`;
}

// The conversation's answers in all, under its title; each answer's ending brings them.
function showTotals(totals) {
  const el = $("#conv-totals");
  el.textContent = totalsText(totals);
  el.hidden = !el.textContent;
}

function notice(text) {
  const el = $("#notice");
  el.textContent = text;
  el.hidden = !text;
}

function notConnected() {
  notice("Not connected to the server yet. Reconnecting…");
}

function announce(text) {
  $("#live-status").textContent = text;
}

// Phone layout: the sidebar slides over the thread, as a modal would: focus moves into it,
// the page behind is inert (Tab and a screen reader stay in the sidebar), and closing it
// gives focus back to the menu button.
const overlayLayout = window.matchMedia("(max-width: 800px)");
function setSidebarOpen(open, { refocus = true } = {}) {
  const wasOpen = document.body.classList.contains("sidebar-open");
  document.body.classList.toggle("sidebar-open", open);
  $("#menu-btn").setAttribute("aria-expanded", String(open));
  document.querySelector(".scrim").hidden = !open;
  for (const behind of [$("#main"), $("#skip-link")]) behind.inert = open;
  if (open) $("#sidebar .new-chat").focus();
  else if (wasOpen && refocus) $("#menu-btn").focus();
}
$("#menu-btn").addEventListener("click", () => setSidebarOpen(true));
for (const el of document.querySelectorAll("[data-sidebar-close]")) {
  el.addEventListener("click", () => setSidebarOpen(false));
}
// Wider than a phone, the sidebar is part of the page again.
overlayLayout.addEventListener("change", () => {
  if (!overlayLayout.matches) setSidebarOpen(false, { refocus: false });
});
document.addEventListener("keydown", (event) => {
  if (!document.body.classList.contains("sidebar-open")) return;
  if (document.querySelector("dialog[open]")) return; // the dialog's keys come first
  if (event.key === "Escape") {
    event.preventDefault();
    setSidebarOpen(false);
  } else if (event.key === "Tab") {
    // Round from its last control to its first and back, not out to the browser's bar.
    const stops = Array.from($("#sidebar").querySelectorAll("a[href], button, summary, [tabindex='0']"))
      .filter((el) => el.checkVisibility());
    const edge = event.shiftKey ? stops[0] : stops[stops.length - 1];
    if (document.activeElement !== edge) return;
    event.preventDefault();
    (event.shiftKey ? stops[stops.length - 1] : stops[0]).focus();
  }
});

wireCopyButtons(document, announce);

// Keyboard: the skip link lands in the message box itself (a fragment link to a textarea
// only scrolls), and the shortcuts listed by "?" (static/js/shortcuts.js).
$("#skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  composer.focus();
});
wireShortcuts({
  help: $("#help-dialog"),
  helpButton: $("#help-btn"),
  newChat: () => location.assign(config.chatUrl),
  focusComposer: () => composer.focus(),
  stop: () => {
    if (!thread.isBusy()) return false;
    stop();
    return true;
  },
  lastAnswer: () => {
    const answers = document.querySelectorAll("#thread .msg--assistant");
    return answers.length ? answerText(answers[answers.length - 1]) : "";
  },
  lastCode: () => {
    const blocks = document.querySelectorAll("#thread .code-block code");
    return blocks.length ? blocks[blocks.length - 1].textContent : "";
  },
  announce,
});
thread.scrollToEnd();
refresh();
socket.connect();
if (state.conversation === null) composer.focus();
else documents.refreshPreview(); // the conversation's documents, if it has any

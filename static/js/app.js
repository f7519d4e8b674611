// The chat page: wires the socket, the thread, the sidebar, the composer and the dialogs.
// Server data reaches us through data-* attributes on <body> (no inline script: see the CSP).
// Over 400 lines: it is where every part of the page meets (frames to the thread, the
// composer's sends, the messages' actions, the dialogs, the shortcuts); each part's own
// logic is in its module.

import { ModelMenu, sourceText } from "./actions.js";
import { Branches } from "./branches.js";
import { wireBulkDelete } from "./bulk_delete.js";
import { AttachmentTray, wireImageViewer } from "./attachments.js";
import { Composer } from "./composer.js";
import { DocumentTray, wireCitations } from "./documents.js";
import { copyText, wireCopyButtons } from "./copy.js";
import { DeleteDialog, RenameDialog, SettingsDialog } from "./dialogs.js";
import { SchemaFields } from "./schemas.js";
import { ShareDialog } from "./share.js";
import { urlFor } from "./http.js";
import { fetchModels, ModelPicker } from "./models.js";
import { ReportDialog } from "./report.js";
import { Search, showFoundMessage } from "./search.js";
import { wireShortcuts } from "./shortcuts.js";
import { Sidebar } from "./sidebar.js";
import { totalsText } from "./money.js";
import { ChatSocket } from "./socket.js";
import { answerText, Thread } from "./thread.js";
import { ToolMenu } from "./toolmenu.js";

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
  // What the last frame sent was: "send" or "edit" come back to the box when refused.
  lastKind: "send",
  // The chat models, for Regenerate's menu.
  models: [],
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

const branches = new Branches({
  thread,
  scroller: $("#thread-scroll"),
  urls: { thread: config.threadUrl, earlier: config.earlierUrl, branch: config.branchUrl, fork: config.forkUrl },
  conversation: () => state.conversation,
  onShown: () => {
    modelMenu.close(false);
    refresh();
  },
  notice,
  announce,
});

$("#thread").addEventListener("click", (event) => {
  const retry = event.target.closest("[data-retry]");
  if (retry) {
    sendAction({ type: "retry", message: Number(retry.dataset.retry) });
    return;
  }
  // A tool call waiting for approval: run it, or not. The buttons go at once; the
  // call's next frame says what happened.
  const decision = event.target.closest("[data-tool-approve], [data-tool-refuse]");
  if (decision) {
    const approve = "toolApprove" in decision.dataset;
    const call = Number(approve ? decision.dataset.toolApprove : decision.dataset.toolRefuse);
    decision.closest(".tool-approval").hidden = true;
    sendAction({ type: "tool_approve", call, approve });
    return;
  }
  const button = event.target.closest("[data-action]");
  const el = button?.closest(".msg");
  if (!el) return;
  const id = Number(el.dataset.id);
  switch (button.dataset.action) {
    case "copy":
      copyMessage(el, button);
      break;
    case "edit":
      editQuestion(el);
      break;
    case "fork":
      branches.fork(id);
      break;
    case "share":
      shareDialog.open(id);
      break;
    case "regenerate":
      sendAction({ type: "regenerate", message: id });
      break;
    case "models":
      modelMenu.toggle(button, state.models);
      break;
    case "continue":
      sendAction({ type: "continue", message: id });
      break;
    case "previous":
    case "next":
      branches.switchVersion(el, button.dataset.action);
      break;
  }
});

const modelMenu = new ModelMenu({
  onPick: (button, model) => {
    const id = Number(button.closest(".msg").dataset.id);
    sendAction({ type: "regenerate", message: id, model });
  },
});

// Regenerate, continue, retry: frames about an answer, nothing from the box.
function sendAction(frame) {
  if (!socket.send(frame)) {
    notConnected();
    return;
  }
  state.lastKind = "action";
  notice("");
}

async function copyMessage(el, button) {
  const what = el.dataset.role === "user" ? "the question" : "the answer";
  const ok = await copyText(sourceText(el));
  announce(ok ? `Copied ${what}.` : `Could not copy ${what}.`);
  if (!button) return;
  button.querySelector("use").setAttribute("href", ok ? "#i-check" : "#i-copy");
  button.classList.toggle("is-copied", ok);
  clearTimeout(button.copyTimer);
  button.copyTimer = setTimeout(() => {
    button.querySelector("use").setAttribute("href", "#i-copy");
    button.classList.remove("is-copied");
  }, 2000);
}

// The question's text and files, into the box to be edited (static/js/composer.js).
function editQuestion(el) {
  composer.startEdit({
    id: Number(el.dataset.id),
    text: el.querySelector(".bubble").textContent,
    images: Array.from(el.querySelectorAll(".msg-image-open"), (open) => ({
      id: Number(open.dataset.attachment),
      url: open.dataset.imageUrl,
      name: open.dataset.name,
    })),
    documents: Array.from(el.querySelectorAll(".msg-doc"), (doc) => ({
      id: Number(doc.dataset.document),
      name: doc.querySelector(".msg-doc-name").textContent,
      pages: parseInt(doc.querySelector(".msg-doc-pages").textContent, 10) || 0,
    })),
  });
}

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
      if (frame.reload) branches.reload(); // the branch changed while this tab was away
      for (const m of frame.messages) thread.applyMessage(m);
      break;
    case "branch":
      if (frame.conversation === state.conversation && thread.newestId() !== frame.leaf) branches.reload();
      break;
    case "message": {
      const m = frame.message;
      if (m.conversation !== state.conversation) {
        // Only the socket that created a conversation watches it at first.
        if (!(state.creating && thread.newestId() === null)) return;
        adopt(m.conversation);
      }
      thread.applyMessage(m, { follow: m.role === "user", branch: frame.branch === true });
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
    case "tool":
      if (frame.conversation === state.conversation) thread.applyTool(frame);
      break;
    case "conversation": {
      const c = frame.conversation;
      const known = sidebar.has(c.id);
      if (!c.temporary) sidebar.upsert(c); // a temporary chat is in no list
      if (state.creating && state.conversation === null && !known) adopt(c.id);
      if (c.id === state.conversation) {
        sidebar.setActive(c.id);
        showTitle(c.title);
        picker.set(c.model);
        settingsDialog.setModel(c.model);
        if (c.tools) toolMenu.set(c.tools);
      }
      break;
    }
    case "conversation.deleted":
      sidebar.remove(frame.conversation);
      if (frame.conversation === state.conversation) leaveDeletedConversation();
      break;
    case "conversations.deleted":
      for (const id of frame.conversations) sidebar.remove(id);
      if (frame.conversations.includes(state.conversation)) leaveDeletedConversation();
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
    "too_many_questions", "too_many_answers", "too_many_conversations", "not_branchable",
  ];
  if (refused.includes(frame.code) && state.lastKind !== "action") composer.restore(state.lastSent);
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
  temporaryButton.hidden = true; // chosen before the first question, for good
}

// A new chat may be temporary: in no list or search, deleted when the session ends.
const temporaryButton = $("#temporary-btn");
temporaryButton.addEventListener("click", () => {
  const on = temporaryButton.getAttribute("aria-pressed") !== "true";
  temporaryButton.setAttribute("aria-pressed", String(on));
  $("#temporary-note").hidden = !on;
  announce(on ? "Temporary chat: it will not be kept." : "A normal chat, kept in your history.");
});

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
  editBar: $("#edit-bar"),
  onWait: notice,
  onSend: send,
  onEdit: sendEdit,
  onStop: stop,
});

function sendEdit(id, text, attachmentIds, documentIds) {
  const frame = { type: "edit", message: id, text, attachments: attachmentIds, documents: documentIds };
  if (!socket.send(frame)) {
    notConnected();
    return false;
  }
  state.sending = true;
  state.lastSent = text;
  state.lastKind = "edit";
  notice("");
  refresh();
  return true;
}

function stop() {
  if (state.conversation !== null) socket.send({ type: "stop", conversation: state.conversation });
}

function send(text, attachmentIds = [], documentIds = []) {
  const frame = { type: "send", conversation: state.conversation, text };
  if (attachmentIds.length) frame.attachments = attachmentIds;
  if (documentIds.length) frame.documents = documentIds;
  if (state.conversation === null) {
    frame.model = picker.value;
    if (toolMenu.keys().length) frame.tools = toolMenu.keys();
    if (temporaryButton.getAttribute("aria-pressed") === "true") frame.temporary = true;
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
  state.lastKind = "send";
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

const toolMenu = new ToolMenu({
  button: $("#tools-btn"),
  menu: $("#tool-menu"),
  toolsUrl: config.toolsUrl,
  conversationToolsUrl: config.conversationToolsUrl,
  selected: JSON.parse(config.tools || "[]"),
  conversation: () => state.conversation,
  model: () => picker.value,
  modelLabel: () => $("#model-name").textContent,
  onError: notice,
});

function refresh() {
  composer.setBusy(state.sending || thread.isBusy());
  document.body.classList.toggle("is-streaming", thread.isBusy());
}

// Sidebar and dialogs

const sidebar = new Sidebar({
  root: $("#sidebar"),
  list: $("#conv-list"),
  pinnedList: $("#pinned-list"),
  archived: $("#archived"),
  template: $("#conv-template"),
  urls: { conversation: config.conversationUrl, pin: config.pinUrl, archive: config.archiveUrl },
  onError: (message) => notice(message),
  onRename: (id, title) => renameDialog.open(id, title),
  onDelete: (id, title) => {
    // Chosen now: the socket may remove the row before the request returns.
    focusAfterDelete = sidebar.neighbour(id);
    deleteDialog.open(id, title);
  },
});

wireBulkDelete({
  sidebar: $("#sidebar"),
  toggle: $("#select-btn"),
  bar: $("#select-bar"),
  count: $("#select-count"),
  submit: $("#select-delete"),
  cancel: $("#select-cancel"),
  deleteAll: $("#delete-all-btn"),
  allForm: $("#delete-all-form"),
  dialog: $("#bulk-delete-dialog"),
});

new Search({
  form: $("#search-form"),
  input: $("#search-input"),
  results: $("#search-results"),
  list: $("#search-list"),
  sections: $("#conv-sections"),
  branchUrl: config.branchUrl,
  onError: (message) => notice(message),
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

const schemaFields = new SchemaFields({
  form: $("#settings-dialog form"),
  deleteUrl: config.schemaDeleteUrl,
  saved: JSON.parse($("#saved-schemas-data").textContent),
});
const settingsDialog = new SettingsDialog({
  dialog: $("#settings-dialog"),
  urlTemplate: config.settingsUrl,
  onSaved(conversation, data) {
    sidebar.upsert(conversation);
    picker.set(conversation.model);
    if (data.saved_schemas) schemaFields.update(data.saved_schemas);
  },
});
$("#settings-btn").addEventListener("click", () => settingsDialog.open());

const shareDialog = new ShareDialog({
  dialog: $("#share-dialog"),
  urlTemplate: config.shareUrl,
  conversation: () => state.conversation,
  announce,
});

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
  state.models = models;
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
  search: () => {
    if (overlayLayout.matches) setSidebarOpen(true);
    $("#search-input").focus();
  },
  focusComposer: () => composer.focus(),
  stop: () => {
    if (!thread.isBusy()) return false;
    stop();
    return true;
  },
  // As its Copy button does: the markdown, once the answer has ended.
  lastAnswer: () => {
    const answer = lastOf("assistant");
    if (!answer) return "";
    return (!["pending", "streaming"].includes(answer.dataset.status) && sourceText(answer)) || answerText(answer);
  },
  lastCode: () => {
    const blocks = document.querySelectorAll("#thread .code-block code");
    return blocks.length ? blocks[blocks.length - 1].textContent : "";
  },
  regenerateLast: () => {
    const answer = lastOf("assistant");
    if (!answer) announce("There is no answer to regenerate.");
    else if (thread.isBusy()) announce("An answer is still being written.");
    else sendAction({ type: "regenerate", message: Number(answer.dataset.id) });
  },
  editLast: () => {
    const question = lastOf("user");
    if (question) editQuestion(question);
    else announce("There is no question to edit.");
  },
  editLastFromBox: (event) => {
    const question = lastOf("user");
    if (event.target.id !== "composer-input" || event.target.value || composer.editing !== null || !question) return false;
    editQuestion(question);
  },
  previousVersion: () => branches.switchLastAnswer(lastOf("assistant"), "previous"),
  nextVersion: () => branches.switchLastAnswer(lastOf("assistant"), "next"),
  announce,
});

function lastOf(role) {
  const all = document.querySelectorAll(`#thread > .msg[data-role="${role}"]`);
  return all.length ? all[all.length - 1] : null;
}

thread.scrollToEnd();
showFoundMessage((button) => branches.loadEarlier(button));
refresh();
socket.connect();
if (state.conversation === null) composer.focus();
else documents.refreshPreview(); // the conversation's documents, if it has any
const draft = branches.takeDraft();
if (draft !== null) {
  composer.set(draft);
  composer.focus();
}

// Documents attached to the next message (PDF, DOCX, text, Markdown, CSV). Each uploads over
// HTTP with a progress bar, then the server reads it page by page in the background: the
// tray polls its status and shows "Reading page 3 of 12" until it is ready. The `send`
// frame carries the ids of ready documents.
//
// Before a question is sent, the line under the composer says how the documents will go
// (full text or the most relevant passages), how many tokens the request carries and
// roughly what it costs. In the thread, citation links open the cited page in a dialog.

import { uploadFile, urlFor } from "./http.js";
import { icon } from "./icons.js";
import { usdShort } from "./money.js";
import { removeButton, UploadTray } from "./tray.js";

const POLL_MS = 400;
const MAX_BYTES = 10_000_000;

export class DocumentTray extends UploadTray {
  constructor({ list, input, button, uploadUrl, statusUrl, removeUrl, preview, previewUrl, context, onChange, onError }) {
    super({ list, input, button, removeUrl, onChange, onError });
    this.uploadUrl = uploadUrl;
    this.statusUrl = statusUrl;
    this.previewEl = preview;
    this.previewUrl = previewUrl;
    this.context = context; // () => ({conversation, model})
    this.previewSeq = 0;
  }

  add(files) {
    for (const file of files) {
      if (this.tooLarge(file, MAX_BYTES, "documents")) continue;
      const item = { file, id: null, ready: false, xhr: null, timer: null, el: itemElement(file.name) };
      this.track(item);
      this.upload(item);
    }
    this.changed();
  }

  upload(item) {
    const progress = item.el.querySelector("progress");
    setStatus(item, "Uploading…");
    const { xhr, done } = uploadFile(this.uploadUrl, item.file, (part) => {
      progress.value = part;
    });
    item.xhr = xhr;
    done.then(
      ({ status, data }) => {
        item.xhr = null;
        if (status === 201 && data.document) {
          item.id = data.document.id;
          item.el.dataset.id = String(item.id);
          this.show(item, data.document);
          return;
        }
        this.fail(item, data.error?.message ?? `The server answered ${status}.`);
      },
      () => {
        item.xhr = null;
        this.fail(item, "the upload failed; check the connection and try again.");
      },
    );
  }

  // A document's reading state, then the next look in a moment until it is ready.
  show(item, d) {
    if (!this.items.includes(item)) return;
    if (d.status === "failed") {
      this.fail(item, d.error || "it could not be read.");
      return;
    }
    const progress = item.el.querySelector("progress");
    if (d.status === "ready") {
      item.ready = true;
      item.el.dataset.state = "ready";
      setStatus(item, `${plural(d.page_count, "page")} · ~${d.tokens.toLocaleString("en-US")} tokens`);
      this.changed();
      this.refreshPreview();
      return;
    }
    item.el.dataset.state = "reading";
    progress.value = d.page_count ? d.pages_done / d.page_count : 0;
    setStatus(item, `Reading page ${Math.min(d.pages_done + 1, d.page_count)} of ${d.page_count}`);
    item.timer = setTimeout(() => this.poll(item), POLL_MS);
  }

  async poll(item) {
    item.timer = null;
    try {
      const response = await fetch(urlFor(this.statusUrl, item.id), {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(String(response.status));
      this.show(item, (await response.json()).document);
    } catch {
      if (this.items.includes(item)) item.timer = setTimeout(() => this.poll(item), POLL_MS * 5);
    }
  }

  fail(item, message) {
    this.drop(item);
    this.onError(message.startsWith(item.file.name) ? message : `${item.file.name}: ${message}`);
  }

  remove(item) {
    super.remove(item);
    this.refreshPreview();
  }

  drop(item) {
    clearTimeout(item.timer);
    super.drop(item);
  }

  // A document the edited question was sent with, kept unless taken out.
  addSent({ id, name, pages }) {
    const item = { file: { name }, id, ready: true, sent: true, xhr: null, timer: null, el: itemElement(name) };
    item.el.dataset.state = "ready";
    item.el.dataset.id = String(id);
    setStatus(item, `${plural(pages, "page")} · sent`);
    this.track(item);
    this.changed();
  }

  ids() {
    return this.items.filter((item) => item.ready).map((item) => item.id);
  }

  pending() {
    return this.items.some((item) => !item.ready);
  }

  restore(taken) {
    const restored = super.restore(taken);
    if (restored) this.refreshPreview();
    return restored;
  }

  // Asks the server how the next request would carry the documents; the newest answer wins.
  async refreshPreview() {
    const { conversation, model } = this.context();
    const ids = this.ids();
    const seq = ++this.previewSeq;
    if (conversation === null && !ids.length) {
      this.previewEl.hidden = true;
      return;
    }
    const query = new URLSearchParams({ conversation: conversation ?? "", documents: ids.join(","), model });
    let preview = null;
    try {
      const response = await fetch(`${this.previewUrl}?${query}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.ok) preview = (await response.json()).preview;
    } catch {
      // no preview this time; sending still works
    }
    if (seq !== this.previewSeq) return;
    this.previewEl.hidden = !preview?.mode;
    if (preview?.mode) this.previewEl.textContent = previewText(preview);
  }
}

export function previewText(p) {
  const docs = plural(p.documents, "document");
  const how = p.mode === "full"
    ? `Full text of ${docs}`
    : `${docs} too long to send whole: the ${p.passages} most relevant passages`;
  const cost = p.cost_usd === null ? "" : ` · ~${usdShort(p.cost_usd)}`;
  return `${how} · ~${p.tokens.toLocaleString("en-US")} tokens with the conversation${cost}`;
}

function plural(n, word) {
  return `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;
}

function setStatus(item, text) {
  item.el.querySelector(".doc-item-status").textContent = text;
}

function itemElement(name) {
  const el = document.createElement("li");
  el.className = "doc-item";
  el.dataset.state = "uploading";
  const svg = icon("i-document");
  const label = document.createElement("span");
  label.className = "doc-item-name";
  label.textContent = name;
  const progress = document.createElement("progress");
  progress.max = 1;
  progress.value = 0;
  progress.setAttribute("aria-label", `Reading ${name}`);
  const status = document.createElement("span");
  status.className = "doc-item-status";
  el.append(svg, label, progress, status, removeButton(name));
  return el;
}

// The markup of templates/conversations/_message.html's document chips.
export function documentList(documents) {
  const list = document.createElement("ul");
  list.className = "msg-docs";
  list.setAttribute("aria-label", "Attached documents");
  for (const d of documents) {
    const item = document.createElement("li");
    item.className = "msg-doc";
    item.dataset.document = String(d.id);
    const name = document.createElement("span");
    name.className = "msg-doc-name";
    name.textContent = d.name;
    const pages = document.createElement("span");
    pages.className = "msg-doc-pages";
    pages.textContent = plural(d.pages, "page");
    item.append(icon("i-document"), name, " ", pages);
    list.append(item);
  }
  return list;
}

// A citation in an answer opens the page's text (and picture, for a scanned page).
export function wireCitations(thread, dialog) {
  thread.addEventListener("click", async (event) => {
    const link = event.target.closest("a.cite");
    if (!link) return;
    event.preventDefault();
    let page;
    try {
      const response = await fetch(link.href, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      page = (await response.json()).page;
    } catch {
      window.open(link.href, "_blank", "noopener");
      return;
    }
    dialog.querySelector("#doc-page-heading").textContent = `${page.name}, page ${page.number} of ${page.page_count}`;
    dialog.querySelector("#doc-page-source").textContent = `Text from the ${page.source_label}.`;
    const img = dialog.querySelector("#doc-page-image");
    img.hidden = !page.image_url;
    if (page.image_url) {
      img.src = page.image_url;
      img.alt = `Page ${page.number} of ${page.name}`;
    } else img.removeAttribute("src");
    // A scanned page's text came from OCR as markdown: the server sends it rendered.
    const text = dialog.querySelector("#doc-page-text");
    const html = dialog.querySelector("#doc-page-html");
    text.textContent = page.text || "(no text on this page)";
    html.innerHTML = page.html || ""; // rendered and sanitized by the server
    text.hidden = Boolean(page.html);
    html.hidden = !page.html;
    dialog.querySelector("#doc-page-body").setAttribute("aria-label", `Page ${page.number} of ${page.name}`);
    dialog.querySelector("#doc-page-open").href = link.href;
    dialog.showModal();
  });
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
}

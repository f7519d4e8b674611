// Images attached to the next message: chosen with the file picker, dropped on the composer
// or pasted. Each uploads at once over HTTP with its own progress bar, then shows its
// thumbnail (the copy the model will get) with a button to take it out again. The socket's
// `send` frame carries the uploaded ids.
//
// Also the thread's images: a thumbnail opens the large copy in a dialog (Escape closes it).

import { uploadFile } from "./http.js";
import { removeButton, UploadTray } from "./tray.js";

// Mistral's documented limits; the server checks them too.
export const MAX_IMAGES = 8;
const MAX_BYTES = 10_000_000;

export class AttachmentTray extends UploadTray {
  constructor({ list, input, button, dropZone, pasteTarget, uploadUrl, removeUrl, onChange, onError }) {
    super({ list, input, button, removeUrl, onChange, onError });
    this.uploadUrl = uploadUrl;
    dropZone.addEventListener("dragover", (event) => {
      if (!hasFiles(event.dataTransfer)) return;
      event.preventDefault();
      dropZone.classList.add("is-dropping");
    });
    dropZone.addEventListener("dragleave", () => dropZone.classList.remove("is-dropping"));
    dropZone.addEventListener("drop", (event) => {
      dropZone.classList.remove("is-dropping");
      if (!hasFiles(event.dataTransfer)) return;
      event.preventDefault();
      this.add(Array.from(event.dataTransfer.files));
    });
    pasteTarget.addEventListener("paste", (event) => {
      const files = Array.from(event.clipboardData?.files ?? []);
      if (!files.length) return; // plain text pastes as usual
      event.preventDefault();
      this.add(files);
    });
  }

  // No model the servers offer can see: said at the button, before anything is uploaded.
  // Dimmed but not disabled, so a click still says why (a disabled button stays silent,
  // and browsers show its tooltip unreliably).
  refuse(reason) {
    this.refused = reason;
    this.button.setAttribute("aria-disabled", "true");
    this.button.title = reason;
  }

  add(files) {
    if (this.refused) {
      this.onError(this.refused);
      return;
    }
    for (const file of files) {
      if (this.items.length >= MAX_IMAGES) {
        this.onError(`${file.name}: a message can carry at most ${MAX_IMAGES} images.`);
        continue;
      }
      if (this.tooLarge(file, MAX_BYTES, "images")) continue;
      const item = { file, id: null, xhr: null, el: itemElement(file.name) };
      this.track(item);
      this.upload(item);
    }
    this.changed();
  }

  upload(item) {
    const progress = item.el.querySelector("progress");
    const { xhr, done } = uploadFile(this.uploadUrl, item.file, (part) => {
      progress.value = part;
    });
    item.xhr = xhr;
    done.then(
      ({ status, data }) => {
        item.xhr = null;
        if (status === 201 && data.attachment) {
          this.uploaded(item, data.attachment);
          return;
        }
        const message = data.error?.message ?? `The server answered ${status}.`;
        this.drop(item);
        this.onError(message.startsWith(item.file.name) ? message : `${item.file.name}: ${message}`);
      },
      () => {
        item.xhr = null;
        this.drop(item);
        this.onError(`${item.file.name}: the upload failed; check the connection and try again.`);
      },
    );
  }

  uploaded(item, attachment) {
    item.id = attachment.id;
    item.el.dataset.state = "ready";
    item.el.dataset.id = String(attachment.id);
    const img = item.el.querySelector("img");
    img.src = attachment.url;
    img.alt = `Image to send (${attachment.name})`;
    item.el.title = `${attachment.name}: ${sentCaption(attachment)}`;
    this.changed();
  }

  // An image the edited question was sent with, kept unless taken out.
  addSent({ id, url, name }) {
    const item = { file: { name }, id, xhr: null, sent: true, el: itemElement(name) };
    item.el.dataset.state = "ready";
    item.el.dataset.id = String(id);
    const img = item.el.querySelector("img");
    img.src = url;
    img.alt = `Image you sent (${name})`;
    this.track(item);
    this.changed();
  }

  ids() {
    return this.items.filter((item) => item.id !== null).map((item) => item.id);
  }

  uploading() {
    return this.items.some((item) => item.id === null);
  }
}

function hasFiles(dataTransfer) {
  return Array.from(dataTransfer?.types ?? []).includes("Files");
}

function itemElement(name) {
  const el = document.createElement("li");
  el.className = "attachment";
  el.dataset.state = "uploading";
  el.title = name;
  const img = document.createElement("img");
  img.alt = "";
  const progress = document.createElement("progress");
  progress.max = 1;
  progress.value = 0;
  progress.setAttribute("aria-label", `Uploading ${name}`);
  el.append(img, progress, removeButton(name));
  return el;
}

// The same words as Attachment.sent_caption in conversations/models.py.
export function sentCaption(a) {
  const kb = Math.max(1, Math.round(a.sent_bytes / 1000));
  return `sent as ${a.sent_width}×${a.sent_height}, ${kb.toLocaleString("en-US")} KB, ~${a.tokens.toLocaleString("en-US")} tokens`;
}

// The markup of templates/conversations/_image.html, for a question that arrives by socket.
export function imageList(attachments) {
  const list = document.createElement("ul");
  list.className = "msg-images";
  list.setAttribute("aria-label", "Attached images");
  for (const [i, a] of attachments.entries()) {
    const item = document.createElement("li");
    item.className = "msg-image";
    const open = document.createElement("button");
    open.type = "button";
    open.className = "msg-image-open";
    open.dataset.attachment = String(a.id);
    open.dataset.name = a.name;
    open.dataset.imageUrl = a.url;
    open.dataset.originalUrl = a.original_url;
    open.dataset.caption = sentCaption(a);
    // A file name ("IMG_2034.jpg") says nothing of a picture: it is named by its place.
    open.setAttribute("aria-label", `Enlarge image ${i + 1} you attached (${a.name})`);
    const img = document.createElement("img");
    img.src = a.url;
    img.alt = `Image ${i + 1} you attached`;
    img.width = a.sent_width;
    img.height = a.sent_height;
    img.loading = "lazy";
    open.append(img);
    const size = document.createElement("span");
    size.className = "msg-image-size";
    size.textContent = sentCaption(a);
    item.append(open, size);
    list.append(item);
  }
  return list;
}

// A thumbnail in the thread opens its large copy; the dialog closes with Escape, the Close
// button or a click beside the image.
export function wireImageViewer(thread, dialog) {
  const img = dialog.querySelector("#image-dialog-img");
  thread.addEventListener("click", (event) => {
    const open = event.target.closest(".msg-image-open");
    if (!open) return;
    img.src = open.dataset.imageUrl;
    img.alt = open.getAttribute("aria-label").replace(/^Enlarge i/, "I");
    dialog.querySelector("#image-dialog-caption").textContent = open.dataset.caption;
    dialog.querySelector("#image-dialog-original").href = open.dataset.originalUrl;
    dialog.showModal();
  });
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
}

// What the image and document trays share: the files being attached to the next message,
// each with its element in the composer; taking one out (and telling the server), handing
// them all to a message, and giving them back when the server refuses that message. Files
// of a question being edited are already sent (`sent`): taking one out forgets it here only.

import { csrfToken, urlFor } from "./http.js";

export class UploadTray {
  constructor({ list, input, button, removeUrl, onChange, onError }) {
    this.list = list;
    this.removeUrl = removeUrl;
    this.onChange = onChange;
    this.onError = onError;
    this.items = [];
    this.button = button;
    this.refused = ""; // why files cannot be attached here at all (see AttachmentTray.refuse)
    button.addEventListener("click", () => {
      if (this.refused) this.onError(this.refused);
      else input.click();
    });
    input.addEventListener("change", () => {
      this.add(Array.from(input.files));
      input.value = "";
    });
  }

  // A file over `maxBytes` is refused here, before any upload, with `kind` in the message.
  tooLarge(file, maxBytes, kind) {
    if (file.size <= maxBytes) return false;
    this.onError(`${file.name}: the file is ${(file.size / 1e6).toFixed(1)} MB; ${kind} are limited to ${maxBytes / 1e6} MB.`);
    return true;
  }

  track(item) {
    item.el.querySelector(".attachment-remove").addEventListener("click", () => this.remove(item));
    this.items.push(item);
    this.list.append(item.el);
  }

  // The user took a file out: its upload stops, or the server forgets it (an unsent file
  // left behind is deleted after a day anyway).
  remove(item) {
    if (item.xhr) item.xhr.abort();
    else if (item.id !== null && !item.sent) {
      fetch(urlFor(this.removeUrl, item.id), {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
      }).catch(() => {});
    }
    this.drop(item);
  }

  drop(item) {
    this.items = this.items.filter((other) => other !== item);
    item.el.remove();
    this.changed();
  }

  // The files go with a message: out of the tray, kept in case the server refuses it.
  take() {
    const taken = this.items;
    this.items = [];
    for (const item of taken) item.el.remove();
    this.changed();
    return taken;
  }

  restore(taken) {
    if (this.items.length) return false;
    this.items = taken;
    for (const item of taken) this.list.append(item.el);
    this.changed();
    return true;
  }

  changed() {
    this.list.hidden = this.items.length === 0;
    this.onChange?.();
  }
}

// The "×" that takes a file out of the tray.
export function removeButton(name) {
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "attachment-remove";
  remove.setAttribute("aria-label", `Remove ${name}`);
  remove.textContent = "×";
  return remove;
}

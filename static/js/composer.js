// The message box: Enter sends, Shift+Enter breaks the line, the box grows with its text,
// and while an answer streams the send button becomes Stop. Images attached in its tray
// (static/js/attachments.js) and documents in its document tray (static/js/documents.js) go
// with the text; a message may be images or documents alone.

const MAX_HEIGHT_PX = 240;

export class Composer {
  constructor({ form, input, button, attachments, documents, onSend, onStop, onWait }) {
    this.form = form;
    this.attachments = attachments;
    this.documents = documents;
    this.onWait = onWait;
    this.input = input;
    this.button = button;
    this.onSend = onSend;
    this.onStop = onStop;
    this.busy = false;
    input.addEventListener("input", () => this.resize());
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
      event.preventDefault();
      if (!this.busy) this.send();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (this.busy) this.onStop();
      else this.send();
    });
    this.resize();
  }

  send() {
    const text = this.input.value;
    const ids = this.attachments.ids();
    if (this.attachments.uploading()) {
      this.onWait("Wait until the images have uploaded.");
      return;
    }
    if (this.documents.pending()) {
      this.onWait("Wait until the documents have been read.");
      return;
    }
    const documentIds = this.documents.ids();
    if (!text.trim() && !ids.length && !documentIds.length) return;
    if (this.onSend(text, ids, documentIds) !== false) {
      this.set("");
      this.taken = this.attachments.take();
      this.takenDocuments = this.documents.take();
    }
  }

  set(text) {
    this.input.value = text;
    this.resize();
  }

  // The question just sent comes back if the server refused it, unless a new one was typed.
  restore(text) {
    if (!this.input.value) this.set(text);
    if (this.taken) this.attachments.restore(this.taken);
    if (this.takenDocuments) this.documents.restore(this.takenDocuments);
    this.taken = this.takenDocuments = null;
  }

  focus() {
    this.input.focus();
  }

  setBusy(busy) {
    if (busy === this.busy) return;
    this.busy = busy;
    this.form.dataset.state = busy ? "busy" : "idle";
    this.button.setAttribute("aria-label", busy ? "Stop the answer" : "Send");
    this.resize();
  }

  // CSSOM from our own script; the CSP forbids only style attributes written in HTML.
  resize() {
    const images = this.attachments.ids().length > 0 || this.documents.ids().length > 0;
    this.form.classList.toggle("has-text", this.input.value.trim() !== "" || images);
    this.input.style.height = "auto";
    const height = Math.min(this.input.scrollHeight, MAX_HEIGHT_PX);
    this.input.style.height = `${height}px`;
    this.input.style.overflowY = this.input.scrollHeight > MAX_HEIGHT_PX ? "auto" : "hidden";
  }
}

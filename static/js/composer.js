// The message box: Enter sends, Shift+Enter breaks the line, the box grows with its text,
// and while an answer streams the send button becomes Stop. Images attached in its tray
// (static/js/attachments.js) and documents in its document tray (static/js/documents.js) go
// with the text; a message may be images or documents alone.
//
// Editing a sent question happens here too: its text and files come into the box (the files
// as chips that can be taken out), a bar says so, and Send sends the edit; Escape or Cancel
// gives the box back what it held before.

const MAX_HEIGHT_PX = 240;

export class Composer {
  constructor({ form, input, button, attachments, documents, editBar, onSend, onEdit, onStop, onWait }) {
    this.form = form;
    this.attachments = attachments;
    this.documents = documents;
    this.onWait = onWait;
    this.input = input;
    this.button = button;
    this.onSend = onSend;
    this.onStop = onStop;
    this.busy = false;
    this.editBar = editBar;
    this.onEdit = onEdit;
    this.editing = null; // the id of the question being edited
    this.edited = null; // the last edit sent: {id}, in case the server refuses it
    editBar.querySelector("button").addEventListener("click", () => {
      this.cancelEdit();
      this.focus();
    });
    input.addEventListener("input", () => this.resize());
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.editing !== null && !event.isComposing) {
        event.preventDefault(); // before the Stop shortcut: one Escape, one thing
        this.cancelEdit();
        return;
      }
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
    const editing = this.editing;
    const sent = editing === null ? this.onSend(text, ids, documentIds) : this.onEdit(editing, text, ids, documentIds);
    if (sent === false) return;
    this.set("");
    this.taken = this.attachments.take();
    this.takenDocuments = this.documents.take();
    this.edited = editing === null ? null : { id: editing };
    if (editing !== null) this.endEdit();
  }

  // question: {id, text, images: [{id, url, name}], documents: [{id, name, pages}]}.
  startEdit(question) {
    if (this.editing === null) {
      this.stash = { text: this.input.value, images: this.attachments.take(), documents: this.documents.take() };
    } else {
      this.attachments.take();
      this.documents.take();
    }
    this.editing = question.id;
    this.set(question.text);
    for (const image of question.images) this.attachments.addSent(image);
    for (const document of question.documents) this.documents.addSent(document);
    this.editBar.hidden = false;
    this.form.classList.add("is-editing");
    this.focus();
    this.input.setSelectionRange(this.input.value.length, this.input.value.length);
  }

  cancelEdit() {
    if (this.editing === null) return;
    this.set("");
    this.attachments.take();
    this.documents.take();
    this.endEdit();
  }

  // Out of edit mode: the box holds again what it held before.
  endEdit() {
    this.editing = null;
    this.editBar.hidden = true;
    this.form.classList.remove("is-editing");
    const stash = this.stash ?? { text: "", images: [], documents: [] };
    this.stash = null;
    if (!this.input.value) this.set(stash.text);
    if (stash.images.length) this.attachments.restore(stash.images);
    if (stash.documents.length) this.documents.restore(stash.documents);
  }

  set(text) {
    this.input.value = text;
    this.resize();
  }

  // The question just sent comes back if the server refused it, unless a new one was typed.
  restore(text) {
    if (this.edited !== null) {
      // A refused edit goes back to being an edit, not a new question.
      const { id } = this.edited;
      this.edited = null;
      this.startEdit({ id, text, images: [], documents: [] });
    } else if (!this.input.value) this.set(text);
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

// The message box: Enter sends, Shift+Enter breaks the line, the box grows with its text,
// and while an answer streams the send button becomes Stop.

const MAX_HEIGHT_PX = 240;

export class Composer {
  constructor({ form, input, button, onSend, onStop }) {
    this.form = form;
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
    if (!text.trim()) return;
    if (this.onSend(text) !== false) this.set("");
  }

  set(text) {
    this.input.value = text;
    this.resize();
  }

  // The question just sent comes back if the server refused it, unless a new one was typed.
  restore(text) {
    if (!this.input.value) this.set(text);
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
    this.form.classList.toggle("has-text", this.input.value.trim() !== "");
    this.input.style.height = "auto";
    const height = Math.min(this.input.scrollHeight, MAX_HEIGHT_PX);
    this.input.style.height = `${height}px`;
    this.input.style.overflowY = this.input.scrollHeight > MAX_HEIGHT_PX ? "auto" : "hidden";
  }
}

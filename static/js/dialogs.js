// Rename, delete and settings: <dialog> forms posted with fetch. Each also works as a
// plain form post (the server redirects), should the script fail midway.

import { clearErrors, postForm, showErrors, urlFor } from "./http.js";

function wireCancel(dialog) {
  for (const button of dialog.querySelectorAll("[data-dialog-cancel]")) {
    button.addEventListener("click", () => dialog.close());
  }
  dialog.addEventListener("close", () => clearErrors(dialog.querySelector("form")));
}

async function submitting(form, work) {
  const buttons = form.querySelectorAll("button");
  for (const b of buttons) b.disabled = true;
  try {
    await work();
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

export class RenameDialog {
  constructor({ dialog, urlTemplate, onRenamed }) {
    this.dialog = dialog;
    this.form = dialog.querySelector("form");
    this.input = this.form.elements.title;
    wireCancel(dialog);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      submitting(this.form, async () => {
        const result = await postForm(this.form.action, this.form);
        if (!result.ok) return showErrors(this.form, result.data.errors);
        onRenamed(result.data.conversation);
        dialog.close();
      });
    });
    this.urlTemplate = urlTemplate;
  }

  open(id, title) {
    this.form.action = urlFor(this.urlTemplate, id);
    this.input.value = title;
    this.dialog.showModal();
    this.input.select();
  }
}

export class DeleteDialog {
  constructor({ dialog, urlTemplate, onDeleted }) {
    this.dialog = dialog;
    this.form = dialog.querySelector("form");
    this.urlTemplate = urlTemplate;
    wireCancel(dialog);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      submitting(this.form, async () => {
        const result = await postForm(this.form.action, this.form);
        // Already gone (another tab deleted it) is as good as deleted.
        if (!result.ok && result.status !== 404) return showErrors(this.form, result.data.errors);
        // Closed first: closing puts focus back on the row's Delete button, which
        // onDeleted removes, and it then moves focus somewhere that still exists.
        dialog.close();
        onDeleted(this.id);
      });
    });
  }

  open(id, title) {
    this.id = id;
    this.form.action = urlFor(this.urlTemplate, id);
    this.dialog.querySelector("#delete-title").textContent = title;
    this.dialog.showModal();
    this.form.querySelector("[data-dialog-cancel]").focus();
  }
}

export class SettingsDialog {
  constructor({ dialog, urlTemplate, onSaved }) {
    this.dialog = dialog;
    this.form = dialog.querySelector("form");
    this.urlTemplate = urlTemplate;
    this.onSaved = onSaved;
    wireCancel(dialog);
    // Cancel, Escape or the backdrop: forget what was typed but not saved.
    dialog.addEventListener("close", () => this.form.reset());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      submitting(this.form, async () => {
        if (await this.save()) dialog.close();
      });
    });
  }

  setConversation(id) {
    this.form.action = urlFor(this.urlTemplate, id);
  }

  open() {
    this.dialog.showModal();
  }

  // The model picker saves through this same form, so one view validates both.
  async saveModel(model) {
    const data = new FormData(this.form);
    // Only the model changes: the other fields as last saved, not as half-typed.
    for (const el of this.form.elements) {
      if (!el.name || el.name === "csrfmiddlewaretoken") continue;
      if (el.type === "checkbox") {
        if (el.defaultChecked) data.set(el.name, "on");
        else data.delete(el.name);
      } else if (el.tagName === "SELECT") {
        const saved = [...el.options].find((o) => o.defaultSelected) ?? el.options[0];
        data.set(el.name, saved.value);
      } else {
        data.set(el.name, el.defaultValue);
      }
    }
    data.set("model", model);
    const result = await postForm(this.form.action, data);
    if (result.ok) this.commit(result.data);
    return result;
  }

  async save() {
    const result = await postForm(this.form.action, this.form);
    if (!result.ok) {
      showErrors(this.form, result.data.errors);
      return false;
    }
    this.commit(result.data);
    return true;
  }

  // What the server stored becomes what Cancel returns to.
  commit(data) {
    const { conversation, settings } = data;
    for (const [name, value] of Object.entries(settings)) {
      const el = this.form.elements[name];
      if (!el) continue;
      if (el.type === "checkbox") el.checked = el.defaultChecked = Boolean(value);
      else if (el.tagName === "SELECT") {
        for (const option of el.options) option.selected = option.defaultSelected = option.value === value;
      } else el.value = el.defaultValue = value ?? "";
    }
    this.onSaved(conversation, data);
  }

  setModel(model) {
    const el = this.form.elements.model;
    el.value = el.defaultValue = model;
  }
}

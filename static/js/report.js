// Thumbs-down on an answer: a dialog asks for an optional reason and posts it to
// /messages/<id>/report/ (CSRF token in the header). The answer's conversation then comes
// first in the admin's review queue; the button stays pressed.

import { postForm, showErrors, urlFor } from "./http.js";

export class ReportDialog {
  constructor({ dialog, urlTemplate, onReported }) {
    this.dialog = dialog;
    this.form = dialog.querySelector("form");
    this.urlTemplate = urlTemplate;
    for (const button of dialog.querySelectorAll("[data-dialog-cancel]")) {
      button.addEventListener("click", () => dialog.close());
    }
    dialog.addEventListener("close", () => this.form.reset());
    this.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const buttons = this.form.querySelectorAll("button");
      for (const b of buttons) b.disabled = true;
      try {
        const result = await postForm(this.form.action, this.form);
        if (!result.ok) {
          const gone = result.status === 404 ? { __all__: ["This answer no longer exists."] } : null;
          showErrors(this.form, gone ?? result.data.errors);
          return;
        }
        this.button.setAttribute("aria-pressed", "true");
        this.button.setAttribute("aria-label", "Reported");
        dialog.close();
        onReported();
      } finally {
        for (const b of buttons) b.disabled = false;
      }
    });
  }

  open(button) {
    this.button = button;
    this.form.action = urlFor(this.urlTemplate, button.dataset.report);
    showErrors(this.form, {});
    this.dialog.showModal();
    this.form.elements.reason.focus();
  }
}

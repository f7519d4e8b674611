// The Share dialog: a read-only link to the conversation up to the message chosen (a
// snapshot: later messages are not in it), optionally with the user's name and the files.
// The server makes the link (POST /c/<id>/share/); it is listed under Shared links.

import { copyText } from "./copy.js";
import { postForm, showErrors, urlFor } from "./http.js";

export class ShareDialog {
  constructor({ dialog, urlTemplate, conversation, announce }) {
    this.dialog = dialog;
    this.form = dialog.querySelector("form");
    this.urlTemplate = urlTemplate;
    this.conversation = conversation;
    this.result = dialog.querySelector(".share-result");
    this.url = dialog.querySelector("#share-url");
    this.create = this.form.querySelector('button[type="submit"]');
    for (const button of dialog.querySelectorAll("[data-dialog-cancel]")) {
      button.addEventListener("click", () => dialog.close());
    }
    dialog.addEventListener("close", () => this.form.reset());
    dialog.querySelector("[data-share-copy]").addEventListener("click", async () => {
      announce((await copyText(this.url.value)) ? "Copied the link." : "Could not copy the link.");
    });
    this.form.addEventListener("submit", async (event) => {
      event.preventDefault();
      this.create.disabled = true;
      try {
        const result = await postForm(urlFor(this.urlTemplate, this.conversation()), this.form);
        if (!result.ok) {
          showErrors(this.form, result.data.errors);
          return;
        }
        showErrors(this.form, {});
        this.url.value = result.data.share.url;
        this.result.hidden = false;
        this.create.hidden = true;
        this.url.focus();
        this.url.select();
        announce("Link created.");
      } finally {
        this.create.disabled = false;
      }
    });
  }

  open(messageId) {
    this.form.elements.message.value = String(messageId);
    this.result.hidden = true;
    this.create.hidden = false;
    showErrors(this.form, {});
    this.dialog.showModal();
  }
}

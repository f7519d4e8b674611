// The settings dialog's JSON-schema fields: shown only for "JSON matching a schema", and a
// picker of the schemas the user saved (filling the name and schema fields), with Delete.

import { postForm, urlFor } from "./http.js";

export class SchemaFields {
  constructor({ form, deleteUrl, saved }) {
    this.form = form;
    this.deleteUrl = deleteUrl;
    this.box = form.querySelector("#schema-fields");
    this.picker = form.querySelector("#saved-schema");
    this.remove = form.querySelector("#saved-schema-delete");
    this.saved = saved;
    const format = form.elements.answer_format;
    format.addEventListener("change", () => this.sync());
    // A reset puts the fields back after this event: look once it is done.
    form.addEventListener("reset", () => setTimeout(() => this.sync(), 0));
    this.picker.addEventListener("change", () => this.pick());
    this.remove.addEventListener("click", () => this.deleteSaved());
    this.sync();
  }

  sync() {
    this.box.hidden = this.form.elements.answer_format.value !== "json_schema";
    this.remove.disabled = !this.picker.value;
  }

  pick() {
    const chosen = this.saved.find((s) => String(s.id) === this.picker.value);
    if (chosen) {
      this.form.elements.answer_schema_name.value = chosen.name;
      this.form.elements.answer_schema.value = chosen.schema;
    }
    this.sync();
  }

  async deleteSaved() {
    const id = this.picker.value;
    if (!id) return;
    const result = await postForm(urlFor(this.deleteUrl, id), new FormData());
    if (result.ok) this.update(result.data.saved_schemas);
  }

  // The list as the server has it now (after a save or a delete).
  update(saved) {
    this.saved = saved;
    const first = this.picker.options[0];
    this.picker.replaceChildren(first, ...saved.map((s) => {
      const option = document.createElement("option");
      option.value = String(s.id);
      option.textContent = s.name;
      return option;
    }));
    this.picker.closest(".saved-schemas").hidden = saved.length === 0;
    this.sync();
  }
}

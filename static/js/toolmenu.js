// The composer's Tools menu: a button with the count of tools switched on, and a small
// non-modal dialog listing every tool GET /tools.json offers (title, source, description,
// whether each run waits for approval), each with a switch. In a conversation a switch posts
// the whole choice to POST /c/<id>/tools/ and every tab hears it in a `conversation` frame;
// in a new chat the choice stays here until the first `send` frame carries it (keys()).
// When the chosen model cannot call tools the menu says so and the switches are disabled.
// Keyboard: the button opens it with focus on the first switch; Escape closes it and gives
// focus back to the button; Tab out of it, or a click elsewhere, closes it.

import { postForm, urlFor } from "./http.js";

export class ToolMenu {
  constructor({ button, menu, toolsUrl, conversationToolsUrl, selected, conversation, model, modelLabel, onError }) {
    this.button = button;
    this.menu = menu;
    this.count = button.querySelector(".tools-count");
    this.list = menu.querySelector(".tool-list");
    this.refusal = menu.querySelector(".tool-menu-refusal");
    this.problems = menu.querySelector(".tool-menu-problems");
    this.toolsUrl = toolsUrl;
    this.conversationToolsUrl = conversationToolsUrl;
    this.conversation = conversation; // () => the open conversation's id, or null
    this.model = model; // () => the model the next answer uses
    this.modelLabel = modelLabel; // () => that model as the picker names it
    this.onError = onError;
    this.selected = new Set(selected);
    this.data = null; // the last tools.json, and the model it was asked for
    this.posted = 0; // answers to older posts than the last are stale
    this.posting = 0; // posts not answered yet: their answer, not a frame between, says

    button.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    button.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || !this.isOpen) return;
      event.preventDefault();
      event.stopPropagation();
      this.close();
    });
    menu.addEventListener("change", (event) => {
      const input = event.target.closest("input[data-key]");
      if (input) this.toggle(input.dataset.key, input.checked);
    });
    menu.addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      event.preventDefault();
      event.stopPropagation(); // not also the Stop shortcut
      this.close();
    });
    menu.addEventListener("focusout", (event) => {
      if (this.isOpen && event.relatedTarget && !this.contains(event.relatedTarget)) this.close(false);
    });
    document.addEventListener("pointerdown", (event) => {
      if (this.isOpen && !this.contains(event.target)) this.close(false);
    });
    this.showCount();
  }

  get isOpen() {
    return !this.menu.hidden;
  }

  contains(node) {
    return this.menu.contains(node) || this.button.contains(node);
  }

  // The keys a new conversation's first `send` frame carries.
  keys() {
    return Array.from(this.selected);
  }

  // The conversation's tools as the server has them (a `conversation` frame). While a switch
  // is being posted, the post's answer says, lest an older frame flip a switch back.
  set(keys) {
    if (!this.posting) this.apply(keys);
  }

  apply(keys) {
    this.selected = new Set(keys ?? []);
    this.showCount();
    if (this.data) this.render();
  }

  async open() {
    this.menu.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    if (this.data?.model === this.model()) {
      this.fill();
    } else {
      this.list.replaceChildren(note("tool-list-loading", "Loading the tools…"));
      this.refusal.hidden = this.problems.hidden = true;
    }
    this.focusFirst();
    await this.load();
  }

  close(refocus = true) {
    if (!this.isOpen) return;
    this.menu.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (refocus) this.button.focus();
  }

  focusFirst() {
    const first = this.list.querySelector("input:not(:disabled)");
    (first ?? this.menu).focus();
  }

  // The list again, for the model chosen now (a model switched since, an MCP server back).
  async load() {
    const model = this.model();
    let data;
    try {
      const url = `${this.toolsUrl}?model=${encodeURIComponent(model)}`;
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(String(response.status));
      data = await response.json();
    } catch {
      data = { tools: [], problems: ["The list of tools could not be loaded. Close and open this menu to try again."] };
    }
    if (model !== this.model()) return; // asked again for the newer model
    const changed = JSON.stringify(data) !== JSON.stringify(this.data?.answer);
    this.data = { model, answer: data };
    if (changed && this.isOpen) this.render();
  }

  // The list as the last tools.json and the choice say; a switch that had focus keeps it.
  render() {
    const active = document.activeElement;
    const hadFocus = this.isOpen && this.menu.contains(active);
    this.fill();
    if (!hadFocus) return;
    const again = active.dataset.key && this.list.querySelector(`input[data-key="${CSS.escape(active.dataset.key)}"]`);
    if (again && !again.disabled) again.focus();
    else if (document.activeElement === this.menu || !this.menu.contains(document.activeElement)) this.focusFirst();
  }

  fill() {
    const { tools, problems = [], model_calls_tools: callsTools = true } = this.data.answer;
    const offered = new Set(tools.map((t) => t.key));
    // A tool switched on that the site no longer offers stays listed, to be switched off.
    const gone = this.keys().filter((key) => !offered.has(key))
      .map((key) => ({ key, title: key, source: "Not offered any more", description: "", gone: true }));
    const rows = [...tools, ...gone].map((tool, i) => this.row(tool, i, callsTools));
    if (!rows.length) rows.push(note("tool-list-empty", "This site offers no tools."));
    this.list.replaceChildren(...rows);
    this.refusal.hidden = callsTools;
    this.refusal.textContent = callsTools ? "" : `${this.modelLabel()} cannot call tools; choose a model marked tools.`;
    this.problems.replaceChildren(...problems.map((text) => note("tool-menu-problem", text, "p")));
    this.problems.hidden = problems.length === 0;
  }

  row(tool, index, callsTools) {
    const id = `tool-option-${index}`;
    const li = document.createElement("li");
    li.className = "tool-option";
    const input = document.createElement("input");
    input.type = "checkbox";
    input.setAttribute("role", "switch");
    input.id = id;
    input.className = "tool-switch";
    input.dataset.key = tool.key;
    input.checked = this.selected.has(tool.key);
    // Off may always be chosen; on only for a model that can call tools.
    input.disabled = !callsTools || (tool.gone && !input.checked);
    const label = document.createElement("label");
    label.htmlFor = id;
    label.className = "tool-option-text";
    label.append(note("tool-option-title", tool.title, "span"), " ", note("tool-option-source", tool.source, "span"));
    if (tool.description || tool.approval) {
      const description = note("tool-option-description", tool.description, "span");
      description.id = `${id}-description`;
      if (tool.approval) description.append(note("tool-option-approval", "asks before each run", "span"));
      label.append(description);
      input.setAttribute("aria-describedby", description.id);
    }
    li.append(label, input);
    return li;
  }

  async toggle(key, on) {
    if (on) this.selected.add(key);
    else this.selected.delete(key);
    this.showCount();
    const id = this.conversation();
    if (id === null) return; // a new chat: the first question carries the choice
    const body = new FormData();
    for (const chosen of this.selected) body.append("tools", chosen);
    const ticket = ++this.posted;
    this.posting += 1;
    const result = await postForm(urlFor(this.conversationToolsUrl, id), body); // never throws
    this.posting -= 1;
    if (ticket !== this.posted) return;
    if (result.ok) {
      this.apply(result.data.conversation.tools);
      return;
    }
    // Put the switch back as the server still has it.
    if (on) this.selected.delete(key);
    else this.selected.add(key);
    this.showCount();
    if (this.data) this.render();
    this.onError(Object.values(result.data.errors ?? {}).flat()[0] ?? "The tools could not be changed.");
  }

  showCount() {
    const n = this.selected.size;
    this.count.textContent = String(n);
    this.count.hidden = n === 0;
    this.button.setAttribute("aria-label", n ? `Tools, ${n} on` : "Tools, none on");
    this.button.classList.toggle("has-tools", n > 0);
  }
}

function note(className, text, tag = "li") {
  const el = document.createElement(tag);
  el.className = className;
  el.textContent = text;
  return el;
}

// The model picker: a button and a listbox filled from GET /models.json, each model with
// what it can do (vision, tools, context length) and where it runs, and below the list a line
// for each model server that could not be listed. Keyboard: arrows, Home/End, Enter, Escape.

export async function fetchModels(url) {
  try {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) return { models: [], problems: [] };
    const data = await response.json();
    return { models: data.models ?? [], problems: data.problems ?? [] };
  } catch {
    return { models: [], problems: [] };
  }
}

export function contextLabel(tokens, assumed = false) {
  if (!tokens) return "";
  const label = tokens >= 1024 ? `${Math.round(tokens / 1024)}k context` : `${tokens} context`;
  // The server does not say: conversations are cut to a window taken to be small.
  return assumed ? `${label}, assumed` : label;
}

export class ModelPicker {
  constructor({ root, onChange, onShown }) {
    this.root = root;
    this.button = root.querySelector("#model-button");
    this.name = root.querySelector("#model-name");
    this.popover = root.querySelector("#model-popover");
    this.list = root.querySelector("#model-list");
    this.problems = root.querySelector("#model-problems");
    this.onChange = onChange;
    this.onShown = onShown;
    this.models = new Map();
    const first = this.list.querySelector("[role=option]");
    this.current = first?.dataset.value ?? "";
    this.committed = this.current;

    this.button.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    this.button.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        this.open();
      }
    });
    this.list.addEventListener("click", (event) => {
      const option = event.target.closest("[role=option]");
      if (option) this.choose(option.dataset.value);
    });
    this.list.addEventListener("keydown", (event) => this.onKey(event));
    document.addEventListener("pointerdown", (event) => {
      if (this.isOpen && !this.root.contains(event.target)) this.close(false);
    });
    this.list.addEventListener("focusout", (event) => {
      if (this.isOpen && !this.root.contains(event.relatedTarget)) this.close(false);
    });
  }

  get value() {
    return this.current;
  }

  get isOpen() {
    return !this.popover.hidden;
  }

  options() {
    return Array.from(this.list.querySelectorAll("[role=option]"));
  }

  // Model servers that could not be listed: said, not left out without a word.
  showProblems(problems) {
    this.problems.replaceChildren(
      ...problems.map((p) => {
        const line = document.createElement("p");
        line.className = "model-problem";
        line.textContent = `${p.provider}: ${p.message}`;
        return line;
      }),
    );
    this.problems.hidden = problems.length === 0;
  }

  fill(models, selected) {
    const current = selected || this.current;
    this.models = new Map(models.map((m) => [m.id, m]));
    const items = models.map((m, i) => optionElement(m, i));
    // A conversation may use a model the server no longer lists; keep it choosable.
    if (current && !this.models.has(current)) items.unshift(optionElement({ id: current }, items.length));
    this.list.replaceChildren(...items);
    this.set(current);
  }

  // Shows a model as chosen, without telling anyone (the server already knows).
  set(id) {
    if (!id) return;
    if (!this.options().some((o) => o.dataset.value === id)) {
      this.list.prepend(optionElement({ id }, this.options().length));
    }
    this.current = this.committed = id;
    for (const option of this.options()) option.setAttribute("aria-selected", String(option.dataset.value === id));
    const model = this.models.get(id);
    if (model) this.onShown?.(model);
    const label = model?.local ? localLabel(model) : id;
    this.name.textContent = label;
    this.button.setAttribute("aria-label", `Model: ${label}`);
    this.button.title = model ? [model.name, model.description].filter(Boolean).join(" — ") : "";
  }

  // Back to the last model the server accepted.
  revert() {
    this.set(this.committed);
  }

  choose(id) {
    this.close();
    if (id === this.current) return;
    const previous = this.committed;
    this.set(id);
    this.committed = previous;
    this.onChange(id);
  }

  open() {
    this.popover.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    const selected = this.options().find((o) => o.getAttribute("aria-selected") === "true");
    this.activate(selected ?? this.options()[0]);
    this.list.focus();
  }

  close(refocus = true) {
    if (!this.isOpen) return;
    this.popover.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    this.list.removeAttribute("aria-activedescendant");
    if (refocus) this.button.focus();
  }

  activate(option) {
    if (!option) return;
    for (const o of this.options()) o.classList.toggle("is-active", o === option);
    this.list.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  }

  onKey(event) {
    const options = this.options();
    const active = options.findIndex((o) => o.classList.contains("is-active"));
    const moves = { ArrowDown: active + 1, ArrowUp: active - 1, Home: 0, End: options.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      this.activate(options[Math.max(0, Math.min(options.length - 1, moves[event.key]))]);
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      if (options[active]) this.choose(options[active].dataset.value);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.close();
    } else if (event.key === "Tab") {
      this.close(false);
    }
  }
}

function optionElement(model, index) {
  const li = document.createElement("li");
  li.className = "model-option";
  li.setAttribute("role", "option");
  li.id = `model-option-${index}`;
  li.dataset.value = model.id;
  li.setAttribute("aria-selected", "false");

  const name = document.createElement("span");
  name.className = "model-option-name";
  name.textContent = model.local ? localLabel(model) : model.id;
  li.append(name);

  const caps = document.createElement("span");
  caps.className = "model-option-caps";
  if (model.local) caps.append(chip("local", "runs on this server"));
  else if (model.provider && model.provider !== "Mistral") caps.append(chip("provider", model.provider));
  if (model.vision) caps.append(chip("vision", "vision", "i-eye"));
  if (model.function_calling) caps.append(chip("tools", "tools"));
  const context = contextLabel(model.max_context_length, model.context_assumed);
  if (context) caps.append(chip("context", context));
  if (caps.childElementCount) li.append(caps);

  if (model.description) {
    const description = document.createElement("span");
    description.className = "model-option-description";
    description.textContent = model.description;
    li.append(description);
  }
  const check = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  check.setAttribute("class", "model-check");
  check.setAttribute("aria-hidden", "true");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", "#i-check");
  check.append(use);
  li.append(check);
  return li;
}

// "SmolLM2 135M — small local model": never to be taken for one of Mistral's.
function localLabel(model) {
  return model.name.split(",")[0];
}

// A capability; vision gets an eye drawn in SVG (an emoji font may be missing).
function chip(kind, text, icon) {
  const el = document.createElement("span");
  el.className = `chip chip--${kind}`;
  if (icon) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("aria-hidden", "true");
    const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
    use.setAttribute("href", `#${icon}`);
    svg.append(use);
    el.append(svg);
  }
  el.append(text);
  return el;
}

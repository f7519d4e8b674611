// The row under each message: "‹ 2 / 3 ›" where it has other versions, then Edit, Copy and
// Fork for a question; Copy, Regenerate (with a menu of other models), Continue, Fork, Share
// and Report for an ended answer. Built here for every message from its data-* attributes
// (templates/conversations/_message.html, static/js/thread.js), so a page's messages and
// those arriving by socket get the same row. app.js handles the clicks (data-action).
//
// Each button's name ends with the start of its message ("Copy answer: Merge them…"), as a
// sidebar row's "Rename <title>" does: a screen reader's list of buttons tells rows apart.

import { icon } from "./icons.js";

const SNIPPET_CHARS = 40;
const CONTINUABLE_FINISH = new Set(["length", "model_length"]); // as conversations/branches.py
const CONTINUABLE_STATUS = new Set(["stopped", "interrupted"]);

const QUESTION_ACTIONS = [
  { action: "edit", label: "Edit question", icon: "i-pencil" },
  { action: "copy", label: "Copy question", icon: "i-copy" },
  { action: "fork", label: "Fork from this question", icon: "i-fork" },
];
const ANSWER_ACTIONS = [
  { action: "copy", label: "Copy answer", icon: "i-copy" },
  { action: "regenerate", label: "Regenerate answer", icon: "i-retry" },
  { action: "models", label: "Regenerate with another model", icon: "i-chevron" },
  { action: "continue", label: "Continue answer", icon: "i-continue" },
  { action: "fork", label: "Fork from this answer", icon: "i-fork" },
  { action: "share", label: "Share up to this answer", icon: "i-share" },
];

// Adds the row to a message, or brings it up to date (versions, names, Continue).
export function decorate(el) {
  let row = el.querySelector(":scope > .msg-actions");
  if (!row) {
    row = document.createElement("div");
    row.className = "msg-actions";
    const buttons = el.dataset.role === "user" ? QUESTION_ACTIONS : ANSWER_ACTIONS;
    row.append(versionsElement(), ...buttons.map(actionButton));
    const report = el.querySelector(":scope > .msg-report");
    if (report) row.append(report);
    el.append(row);
    if (el.dataset.role === "assistant") {
      row.querySelector('[data-action="models"]').setAttribute("aria-haspopup", "menu");
      row.querySelector('[data-action="models"]').setAttribute("aria-expanded", "false");
    }
  }
  const siblings = siblingsOf(el);
  const at = siblings.indexOf(Number(el.dataset.id));
  const versions = row.querySelector(".msg-versions");
  versions.hidden = siblings.length < 2;
  versions.querySelector(".msg-versions-count").textContent = `${at + 1} / ${siblings.length}`;
  versions.querySelector('[data-action="previous"]').disabled = at <= 0;
  versions.querySelector('[data-action="next"]').disabled = at >= siblings.length - 1;
  const snippet = snippetOf(el);
  for (const button of row.querySelectorAll("[data-label]")) {
    button.setAttribute("aria-label", snippet ? `${button.dataset.label}: ${snippet}` : button.dataset.label);
  }
  const report = row.querySelector(".msg-report");
  if (report && report.getAttribute("aria-pressed") !== "true") {
    report.setAttribute("aria-label", snippet ? `Report this answer: ${snippet}` : "Report this answer");
  }
  const more = row.querySelector('[data-action="continue"]');
  if (more) more.hidden = !continuable(el);
}

export function siblingsOf(el) {
  const ids = (el.dataset.siblings ?? "").split(" ").filter(Boolean).map(Number);
  return ids.length ? ids : [Number(el.dataset.id)];
}

// The text a message was written in: a question's own words, an answer's markdown.
export function sourceText(el) {
  if (el.dataset.role === "user") return el.querySelector(".bubble").textContent;
  return el.querySelector(".msg-source")?.content.textContent ?? "";
}

function continuable(el) {
  return sourceText(el).trim() !== "" &&
    (CONTINUABLE_FINISH.has(el.dataset.finish) || CONTINUABLE_STATUS.has(el.dataset.status));
}

function snippetOf(el) {
  const source = (el.dataset.role === "user" ? el.querySelector(".bubble") : el.querySelector(".msg-body")).cloneNode(true);
  for (const head of source.querySelectorAll(".code-head")) head.remove(); // "python Copy"
  const text = source.textContent.replace(/\s+/g, " ").trim();
  if (!text) return el.dataset.role === "user" && el.querySelector(".msg-images, .msg-docs") ? "attachments" : "";
  return text.length > SNIPPET_CHARS ? `${text.slice(0, SNIPPET_CHARS - 1).trimEnd()}…` : text;
}

function actionButton({ action, label, icon: name }) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = `icon-btn msg-action msg-action--${action}`;
  button.dataset.action = action;
  button.dataset.label = label;
  button.setAttribute("aria-label", label);
  button.title = label;
  button.append(icon(name));
  return button;
}

function versionsElement() {
  const group = document.createElement("div");
  group.className = "msg-versions";
  group.setAttribute("role", "group");
  group.setAttribute("aria-label", "Versions");
  const previous = actionButton({ action: "previous", label: "Previous version", icon: "i-left" });
  const next = actionButton({ action: "next", label: "Next version", icon: "i-right" });
  const count = document.createElement("span");
  count.className = "msg-versions-count";
  group.append(previous, count, next);
  return group;
}

// The models to regenerate an answer with, under its Regenerate button: arrows move, Enter
// picks, Escape or a click elsewhere closes it and gives focus back.
export class ModelMenu {
  constructor({ onPick }) {
    this.onPick = onPick;
    this.menu = null;
    document.addEventListener("pointerdown", (event) => {
      if (this.menu && !this.menu.contains(event.target) && event.target !== this.button) this.close(false);
    });
  }

  toggle(button, models) {
    if (this.menu && this.button === button) {
      this.close();
      return;
    }
    this.close(false);
    this.button = button;
    const menu = document.createElement("ul");
    menu.className = "model-menu";
    menu.setAttribute("role", "menu");
    menu.setAttribute("aria-label", "Regenerate with");
    for (const model of models) {
      const item = document.createElement("li");
      item.setAttribute("role", "none");
      const pick = document.createElement("button");
      pick.type = "button";
      pick.setAttribute("role", "menuitem");
      pick.tabIndex = -1;
      pick.textContent = model.local ? model.name.split(",")[0] : model.id;
      pick.addEventListener("click", () => {
        this.close();
        this.onPick(button, model.id);
      });
      item.append(pick);
      menu.append(item);
    }
    menu.addEventListener("keydown", (event) => this.onKey(event));
    menu.addEventListener("focusout", (event) => {
      if (this.menu && !this.menu.contains(event.relatedTarget)) this.close(false);
    });
    button.after(menu);
    button.setAttribute("aria-expanded", "true");
    this.menu = menu;
    this.items()[0]?.focus();
  }

  items() {
    return Array.from(this.menu?.querySelectorAll("[role=menuitem]") ?? []);
  }

  onKey(event) {
    const items = this.items();
    const at = items.indexOf(document.activeElement);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 };
    if (event.key in moves) {
      event.preventDefault();
      items[(moves[event.key] + items.length) % items.length]?.focus();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.close();
    } else if (event.key === "Tab") {
      this.close(false);
    }
  }

  close(refocus = true) {
    if (!this.menu) return;
    const { menu, button } = this;
    this.menu = null;
    menu.remove();
    button.setAttribute("aria-expanded", "false");
    if (refocus) button.focus();
  }
}

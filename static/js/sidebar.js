// The conversation list: newest first, one page at a time, kept current by the
// `conversation` and `conversation.deleted` frames every tab of the user receives.

import { urlFor } from "./http.js";

export class Sidebar {
  constructor({ root, list, template, conversationUrl, onRename, onDelete }) {
    this.root = root;
    this.list = list;
    this.template = template;
    this.conversationUrl = conversationUrl;
    this.list.addEventListener("click", (event) => {
      const more = event.target.closest("[data-more]");
      if (more) {
        event.preventDefault();
        this.loadMore(more);
        return;
      }
      const action = event.target.closest("[data-action]");
      if (!action) return;
      const item = action.closest(".conv");
      const id = Number(item.dataset.id);
      const title = item.querySelector(".conv-title").textContent;
      if (action.dataset.action === "rename") onRename(id, item.dataset.title ?? "", title);
      if (action.dataset.action === "delete") onDelete(id, title);
    });
    this.refreshEmpty();
  }

  item(id) {
    return this.list.querySelector(`.conv[data-id="${id}"]`);
  }

  has(id) {
    return this.item(id) !== null;
  }

  // Adds or updates a conversation and moves it to its place by `updated_at`.
  upsert(conversation) {
    let item = this.item(conversation.id);
    const isNew = item === null;
    if (isNew) {
      item = this.template.content.firstElementChild.cloneNode(true);
      item.dataset.id = String(conversation.id);
      item.querySelector(".conv-link").href = urlFor(this.conversationUrl, conversation.id);
    }
    const title = conversation.title || "New chat";
    item.querySelector(".conv-title").textContent = title;
    // Each row's buttons say whose they are: a list of "Delete" buttons tells nothing apart.
    item.querySelector('[data-action="rename"]').setAttribute("aria-label", `Rename ${title}`);
    item.querySelector('[data-action="delete"]').setAttribute("aria-label", `Delete ${title}`);
    item.dataset.title = conversation.title;
    item.dataset.updated = conversation.updated_at;
    this.place(item, isNew);
    this.refreshEmpty();
  }

  // Moves an item up when its conversation got a new message here.
  touch(id) {
    const item = this.item(id);
    if (!item) return;
    item.dataset.updated = new Date().toISOString();
    this.place(item, false);
  }

  place(item, isNew) {
    const time = Date.parse(item.dataset.updated);
    const more = this.list.querySelector(".conv-more");
    for (const other of this.list.querySelectorAll(":scope > .conv")) {
      if (other === item) continue;
      if (Date.parse(other.dataset.updated) <= time) {
        if (other.previousElementSibling !== item) this.list.insertBefore(item, other);
        return;
      }
    }
    // Older than every loaded item: it belongs to a page not loaded yet.
    if (more && isNew) return;
    if (more) item.remove();
    else this.list.append(item);
  }

  remove(id) {
    this.item(id)?.remove();
    this.refreshEmpty();
  }

  // Where focus goes once a conversation's row is gone: the row after it, else the one
  // before, else "New chat" (the list is empty).
  neighbour(id) {
    const item = this.item(id);
    const next = item?.nextElementSibling ?? item?.previousElementSibling;
    return next?.querySelector("a") ?? this.root.querySelector(".new-chat");
  }

  setActive(id) {
    for (const link of this.list.querySelectorAll("[aria-current]")) link.removeAttribute("aria-current");
    this.item(id)?.querySelector(".conv-link").setAttribute("aria-current", "page");
  }

  async loadMore(link) {
    if (link.getAttribute("aria-busy") === "true") return;
    link.setAttribute("aria-busy", "true");
    link.textContent = "Loading…";
    let html;
    try {
      const response = await fetch(link.href, { credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      html = await response.text();
    } catch {
      link.removeAttribute("aria-busy");
      link.textContent = "Show more (retry)";
      return;
    }
    const page = document.createElement("template");
    page.innerHTML = html;
    for (const item of page.content.querySelectorAll(".conv")) {
      if (this.has(item.dataset.id)) item.remove();
    }
    const focusTarget = page.content.querySelector(".conv-link");
    link.closest("li").replaceWith(page.content);
    focusTarget?.focus();
  }

  refreshEmpty() {
    this.root.classList.toggle("is-empty", this.list.querySelector(".conv") === null);
  }
}

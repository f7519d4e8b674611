// The conversation list: pinned ones first, then the rest newest first, one page at a
// time; archived ones under "Archived", loaded when it is opened. Kept current by the
// `conversation` and `conversation.deleted` frames every tab of the user receives.

import { postForm, urlFor } from "./http.js";

export class Sidebar {
  constructor({ root, list, pinnedList, archived, template, urls, onRename, onDelete, onError }) {
    this.root = root;
    this.list = list;
    this.pinnedList = pinnedList;
    this.archived = archived;
    this.archivedList = archived.querySelector("ul");
    this.archivedLoaded = false;
    this.template = template;
    this.urls = urls;
    this.onError = onError;
    this.sections = [this.pinnedList, this.list, this.archivedList];
    for (const section of this.sections) {
      section.addEventListener("click", (event) => {
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
        const pressed = action.getAttribute("aria-pressed") === "true";
        if (action.dataset.action === "rename") onRename(id, item.dataset.title ?? "", title);
        if (action.dataset.action === "delete") onDelete(id, title);
        if (action.dataset.action === "pin") this.post(this.urls.pin, id, { pinned: pressed ? "0" : "1" });
        if (action.dataset.action === "archive") this.post(this.urls.archive, id, { archived: pressed ? "0" : "1" });
      });
    }
    this.archived.addEventListener("toggle", () => {
      if (this.archived.open && !this.archivedLoaded) this.loadArchived();
    });
    this.refreshEmpty();
  }

  async post(template, id, fields) {
    const body = new FormData();
    for (const [name, value] of Object.entries(fields)) body.append(name, value);
    const result = await postForm(urlFor(template, id), body);
    if (result.ok) this.upsert(result.data.conversation);
    else this.onError(result.data.errors?.__all__?.[0] ?? "That did not work. Try again.");
  }

  item(id) {
    return this.root.querySelector(`.conv[data-id="${id}"]`);
  }

  has(id) {
    const item = this.item(id);
    return item !== null && item.parentElement !== this.archivedList;
  }

  // Adds or updates a conversation and moves it to its place: the pinned list, the recent
  // list by `updated_at`, or the archived list (only once that was loaded).
  upsert(conversation) {
    let item = this.item(conversation.id);
    const isNew = item === null;
    if (isNew) {
      item = this.template.content.firstElementChild.cloneNode(true);
      item.dataset.id = String(conversation.id);
      item.querySelector(".conv-select").value = String(conversation.id);
      item.querySelector(".conv-link").href = urlFor(this.urls.conversation, conversation.id);
    }
    const title = conversation.title || "New chat";
    item.querySelector(".conv-title").textContent = title;
    // Each row's buttons say whose they are: a list of "Delete" buttons tells nothing apart.
    for (const [action, verb] of [["rename", "Rename"], ["pin", "Pin"], ["archive", "Archive"], ["delete", "Delete"]]) {
      item.querySelector(`[data-action="${action}"]`).setAttribute("aria-label", `${verb} ${title}`);
    }
    item.querySelector(".conv-select").setAttribute("aria-label", `Select ${title}`);
    item.dataset.title = conversation.title;
    item.dataset.updated = conversation.updated_at;
    const pinned = conversation.pinned === true;
    const archived = conversation.archived === true;
    item.querySelector('[data-action="pin"]').setAttribute("aria-pressed", String(pinned));
    item.querySelector('[data-action="archive"]').setAttribute("aria-pressed", String(archived));
    const target = archived ? this.archivedList : pinned ? this.pinnedList : this.list;
    const moved = !isNew && item.parentElement !== target;
    if (target === this.pinnedList) {
      if (moved || isNew) this.pinnedList.prepend(item);
    } else if (target === this.archivedList && !this.archivedLoaded) {
      item.remove();
    } else {
      this.place(target, item, isNew || moved);
    }
    this.refreshEmpty();
  }

  // Moves an item up when its conversation got a new message here.
  touch(id) {
    const item = this.item(id);
    if (!item || item.parentElement !== this.list) return;
    item.dataset.updated = new Date().toISOString();
    this.place(this.list, item, false);
  }

  place(list, item, isNew) {
    const time = Date.parse(item.dataset.updated);
    const more = list.querySelector(".conv-more");
    for (const other of list.querySelectorAll(":scope > .conv")) {
      if (other === item) continue;
      if (Date.parse(other.dataset.updated) <= time) {
        if (other.previousElementSibling !== item) list.insertBefore(item, other);
        return;
      }
    }
    // Older than every loaded item: it belongs to a page not loaded yet.
    if (more) item.remove();
    else list.append(item);
  }

  remove(id) {
    this.item(id)?.remove();
    this.refreshEmpty();
    this.root.dispatchEvent(new Event("change")); // the count of selected rows
  }

  // Where focus goes once a conversation's row is gone: the row after it, else the one
  // before, else "New chat" (the list is empty).
  neighbour(id) {
    const item = this.item(id);
    const next = item?.nextElementSibling ?? item?.previousElementSibling;
    return next?.querySelector("a") ?? this.root.querySelector(".new-chat");
  }

  setActive(id) {
    for (const link of this.root.querySelectorAll(".conv [aria-current]")) link.removeAttribute("aria-current");
    this.item(id)?.querySelector(".conv-link").setAttribute("aria-current", "page");
  }

  async loadArchived() {
    this.archivedLoaded = true;
    this.archivedList.replaceChildren();
    const more = document.createElement("a");
    more.href = this.archivedList.dataset.url;
    const holder = document.createElement("li");
    holder.className = "conv-more";
    holder.append(more);
    this.archivedList.append(holder);
    await this.loadMore(more, { focus: false });
  }

  async loadMore(link, { focus = true } = {}) {
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
      if (this.item(item.dataset.id)) item.remove();
    }
    const focusTarget = page.content.querySelector(".conv-link");
    const list = link.closest("ul");
    link.closest("li").replaceWith(page.content);
    if (focus) focusTarget?.focus();
    if (list === this.archivedList && !list.querySelector(".conv")) {
      const empty = document.createElement("li");
      empty.className = "conv-empty-archived";
      empty.textContent = "Nothing archived.";
      list.append(empty);
    }
  }

  refreshEmpty() {
    this.archivedList.querySelector(".conv-empty-archived")?.remove();
    const pinned = this.pinnedList.querySelector(".conv") !== null;
    this.root.querySelector("#pinned-heading").hidden = !pinned;
    this.root.classList.toggle("is-empty", !pinned && this.list.querySelector(".conv") === null);
  }
}

// The sidebar's search box: results (rendered and escaped by the server, matches in
// <mark>) replace the conversation list while the box holds words. A result opens its
// conversation at the message that matched, on that message's branch.

import { postForm, urlFor } from "./http.js";

const DELAY_MS = 200;

export class Search {
  constructor({ form, input, results, list, sections, branchUrl, onError }) {
    this.form = form;
    this.input = input;
    this.results = results;
    this.list = list;
    this.sections = sections;
    this.branchUrl = branchUrl;
    this.onError = onError;
    this.timer = null;
    this.controller = null;
    this.shown = "";
    input.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.run(), DELAY_MS);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && input.value) {
        event.preventDefault();
        event.stopPropagation();
        input.value = "";
        this.run();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(this.timer);
      this.run();
    });
    list.addEventListener("click", (event) => {
      const link = event.target.closest(".search-link");
      if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
      event.preventDefault();
      this.open(link);
    });
  }

  async run() {
    const query = this.input.value.trim();
    if (query === this.shown) return;
    this.controller?.abort();
    if (!query) {
      this.shown = "";
      this.results.hidden = true;
      this.sections.hidden = false;
      this.list.replaceChildren();
      return;
    }
    this.controller = new AbortController();
    const url = new URL(this.form.action, location.href);
    url.search = new URLSearchParams({ q: query, partial: "1" }).toString();
    this.list.setAttribute("aria-busy", "true");
    let html;
    try {
      const response = await fetch(url, { credentials: "same-origin", signal: this.controller.signal });
      if (!response.ok) throw new Error(String(response.status));
      html = await response.text();
    } catch (err) {
      if (err.name !== "AbortError") this.onError("Search did not answer. Try again.");
      return;
    } finally {
      this.list.setAttribute("aria-busy", "false");
    }
    this.shown = query;
    // Our own template's output: every piece of message text in it is escaped.
    const page = document.createElement("template");
    page.innerHTML = html;
    this.list.replaceChildren(page.content);
    this.results.hidden = false;
    this.sections.hidden = true;
  }

  // Shows the branch through the message first (every tab follows), then goes there.
  async open(link) {
    const conversation = link.dataset.conversation;
    const message = link.dataset.message;
    if (message) {
      const body = new FormData();
      body.append("message", message);
      const result = await postForm(urlFor(this.branchUrl, conversation), body);
      if (!result.ok) {
        this.onError(result.data.errors?.__all__?.[0] ?? result.data.errors?.message?.[0] ?? "This message is gone.");
        return;
      }
    }
    const target = new URL(link.href, location.href);
    if (target.pathname === location.pathname) {
      // Same page: a new hash alone would not show the branch just switched to.
      history.replaceState(history.state, "", target);
      location.reload();
    } else {
      location.assign(target);
    }
  }
}

// After a search result's page loads: the message it named in view, and marked. One
// older than the messages the page shows is on the same branch, further up: earlier
// messages are loaded (loadEarlier(button), as "Show earlier messages" does) until it is.
export async function showFoundMessage(loadEarlier) {
  const match = /^#message-(\d+)$/.exec(location.hash);
  if (!match) return;
  for (;;) {
    const el = document.getElementById(`message-${match[1]}`);
    if (el) {
      el.classList.add("is-found");
      el.scrollIntoView({ block: "center" });
      return;
    }
    const button = document.getElementById("thread-earlier");
    if (!button || Number(button.dataset.before) <= Number(match[1])) return;
    const before = button.dataset.before;
    await loadEarlier(button);
    if (button.isConnected && button.dataset.before === before) return; // it failed
  }
}

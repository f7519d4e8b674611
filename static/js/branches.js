// The branch of the conversation a thread shows (docs/protocol.md, "branch"): the
// "‹ 2 / 3 ›" switch, the whole thread put in again after a switch here or in another tab (or
// a reconnect), its "Show earlier messages" button, and forks into a new conversation.
// The server renders and sanitizes every thread it sends; this module only puts it in.

import { siblingsOf } from "./actions.js";
import { postForm, urlFor } from "./http.js";

// A conversation forked from a question opens with that question in its box.
const DRAFT_KEY = "mistral-chat.draft.";

export class Branches {
  // urls: {thread, earlier, branch, fork} templates (body data-*); conversation(): the open
  // one's id; onShown(): after a thread was put in.
  constructor({ thread, scroller, urls, conversation, onShown, notice, announce }) {
    Object.assign(this, { thread, scroller, urls, conversation, onShown, notice, announce });
    // Earlier messages come in on demand, above, without moving what the reader looks at.
    scroller.addEventListener("click", (event) => {
      const button = event.target.closest("#thread-earlier");
      if (button) this.loadEarlier(button);
    });
  }

  async loadEarlier(button) {
    button.disabled = true;
    try {
      const { html, earlier } = await getJson(`${button.dataset.url}?before=${button.dataset.before}`);
      const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
      this.thread.prepend(html);
      this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
      const first = this.thread.messages()[0];
      if (earlier && first) button.dataset.before = first.dataset.id;
      else button.remove();
      button.textContent = "Show earlier messages";
    } catch {
      button.textContent = "Could not load earlier messages. Try again";
    } finally {
      button.disabled = false;
    }
  }

  // Another branch's thread ({html, earlier, leaf}), from a switch here or in another tab.
  show({ html, earlier }) {
    this.thread.replace(html);
    this.showEarlierButton(earlier);
    this.onShown();
  }

  // The branch the server shows now, asked for: another tab switched, or this one was away.
  async reload() {
    const id = this.conversation();
    try {
      const data = await getJson(urlFor(this.urls.thread, id));
      if (id === this.conversation()) this.show(data);
    } catch {
      this.notice("Could not load the conversation's new branch. Reload the page.");
    }
  }

  // The branch through the message's previous or next sibling, here and in every tab. Focus
  // stays on the arrow pressed (or the other, at the end of the list). False when there is
  // no such sibling.
  async switchVersion(el, direction) {
    const siblings = siblingsOf(el);
    const at = siblings.indexOf(Number(el.dataset.id)) + (direction === "next" ? 1 : -1);
    if (at < 0 || at >= siblings.length) return false;
    const result = await this.post(this.urls.branch, siblings[at]);
    if (!result.ok) {
      this.notice(firstError(result, "That version could not be shown."));
      return true;
    }
    const hadFocus = el.contains(document.activeElement);
    this.show(result.data);
    const shown = this.thread.get(siblings[at]);
    if (hadFocus && shown) {
      const same = shown.querySelector(`.msg-versions [data-action="${direction}"]`);
      (same.disabled ? shown.querySelector(".msg-versions button:not(:disabled)") : same)?.focus();
    }
    this.announce(`Version ${at + 1} of ${siblings.length}.`);
    return true;
  }

  // The shortcuts' switch: the last answer's previous or next version.
  async switchLastAnswer(answer, direction) {
    if (!answer || siblingsOf(answer).length < 2) {
      this.announce("The last answer has no other versions.");
    } else if (!(await this.switchVersion(answer, direction))) {
      this.announce(direction === "next" ? "This is the newest version." : "This is the first version.");
    }
  }

  // A new conversation from this message up; a question forked from waits in its box.
  async fork(id) {
    const result = await this.post(this.urls.fork, id);
    if (!result.ok) {
      this.notice(firstError(result, "The conversation could not be forked."));
      return;
    }
    const { conversation, draft, url } = result.data;
    if (draft) sessionStorage.setItem(`${DRAFT_KEY}${conversation.id}`, draft);
    location.assign(url);
  }

  // The draft a fork left for this conversation, once.
  takeDraft() {
    const id = this.conversation();
    if (id === null) return null;
    const draft = sessionStorage.getItem(`${DRAFT_KEY}${id}`);
    sessionStorage.removeItem(`${DRAFT_KEY}${id}`);
    return draft;
  }

  // There when the branch has more above what the thread shows.
  showEarlierButton(earlier) {
    let button = this.scroller.querySelector("#thread-earlier");
    const first = this.thread.messages()[0];
    if (!earlier || !first) {
      button?.remove();
      return;
    }
    if (!button) {
      button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn--small thread-earlier";
      button.id = "thread-earlier";
      button.textContent = "Show earlier messages";
      this.scroller.prepend(button);
    }
    button.dataset.url = urlFor(this.urls.earlier, this.conversation());
    button.dataset.before = first.dataset.id;
  }

  post(template, messageId) {
    const body = new FormData();
    body.append("message", String(messageId));
    return postForm(urlFor(template, this.conversation()), body);
  }
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(`status ${response.status}`);
  return response.json();
}

function firstError(result, fallback) {
  return Object.values(result.data.errors ?? {}).flat()[0] ?? fallback;
}

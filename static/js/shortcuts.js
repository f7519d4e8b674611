// Keyboard shortcuts: one list, read both by the key handler and by the help dialog ("?"),
// so a key added here is listed there. A later action (regenerate, edit, branches) adds an
// entry to SHORTCUTS and a function to the `actions` wireShortcuts is given.
//
// "Mod" is ⌘ on macOS and Ctrl elsewhere. Either is accepted on every system (a Mac user on
// a PC keyboard, a remote desktop); only the help dialog's labels follow the platform.

import { copyText } from "./copy.js";

// keys: what the dialog lists and the handler matches ("Mod+Shift+O", "Escape", "?");
// action: the name of a function in `actions`, or none for keys another part handles (the
// composer's Enter). Keys with Mod work everywhere; others only outside text fields (where
// "?" is a question mark), unless `typing: true`.
export const SHORTCUTS = [
  { group: "Message box", keys: ["Enter"], label: "Send the message" },
  { group: "Message box", keys: ["Shift+Enter"], label: "New line" },
  { group: "Message box", keys: ["Escape"], label: "Stop the answer", action: "stop", typing: true },
  { group: "Message box", keys: ["Shift+Escape"], label: "Focus the message box", action: "focusComposer", typing: true },
  { group: "Message box", keys: ["ArrowUp"], label: "Edit the last question, from an empty box", action: "editLastFromBox", typing: true },
  { group: "Conversations", keys: ["Mod+Shift+O"], label: "New chat", action: "newChat" },
  { group: "Conversations", keys: ["Mod+Shift+F"], label: "Search conversations", action: "search" },
  { group: "Answers", keys: ["Mod+Shift+C"], label: "Copy the last answer", action: "copyLastAnswer" },
  { group: "Answers", keys: ["Mod+Shift+;"], label: "Copy the last code block", action: "copyLastCode" },
  { group: "Answers", keys: ["Mod+Shift+Enter"], label: "Regenerate the last answer", action: "regenerateLast" },
  { group: "Answers", keys: ["Mod+Shift+E"], label: "Edit the last question", action: "editLast" },
  { group: "Answers", keys: ["Mod+Shift+,"], label: "Previous version of the last answer", action: "previousVersion" },
  { group: "Answers", keys: ["Mod+Shift+."], label: "Next version of the last answer", action: "nextVersion" },
  { group: "Help", keys: ["?", "Mod+/"], label: "Show these shortcuts", action: "help" },
];

export const IS_MAC = /Mac|iPhone|iPad/.test(navigator.userAgentData?.platform ?? navigator.platform);

const LABELS = { Mod: IS_MAC ? "⌘" : "Ctrl", Shift: "Shift", Alt: IS_MAC ? "⌥" : "Alt", Escape: "Esc", ArrowUp: "↑" };
// Punctuation by its place on the keyboard too: Shift turns "," into "<" on many layouts.
const PUNCTUATION = { Semicolon: ";", Comma: ",", Period: "." };

// What a key press means: "Mod+Shift+O" for Ctrl or ⌘ with Shift and O, in the order the
// list writes them. Letters by their place on the keyboard (event.code), so Shift or ⌥ do
// not change them; other keys by what they type.
export function pressed(event) {
  const parts = [];
  if (event.ctrlKey || event.metaKey) parts.push("Mod");
  if (event.altKey) parts.push("Alt");
  let key = event.key;
  if (/^Key[A-Z]$/.test(event.code)) key = event.code.slice(3);
  else if (event.code in PUNCTUATION) key = PUNCTUATION[event.code];
  else if (event.code === "Slash" && parts.includes("Mod")) key = "/";
  // "?" is Shift and "/" on most layouts: Shift is part of the character, not a modifier.
  const shifted = event.shiftKey && (key.length > 1 || /[A-Z;,./]/.test(key));
  if (shifted) parts.push("Shift");
  parts.push(key);
  return parts.join("+");
}

function isTyping(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || target.matches("textarea, select, input:not([type=checkbox], [type=radio], [type=button], [type=submit])"));
}

export function keyLabel(keys) {
  return keys.split("+").map((part) => LABELS[part] ?? part);
}

// actions: {stop() -> bool (false: nothing to stop), focusComposer(), newChat(), lastAnswer()
// -> text, lastCode() -> text, regenerateLast(), editLast(), editLastFromBox(event) -> bool,
// previousVersion(), nextVersion(), announce(text)}. Each is given the key's event.
export function wireShortcuts({ help, helpButton, announce, ...actions }) {
  const run = {
    ...actions,
    help: () => help.showModal(),
    copyLastAnswer: () => copying(actions.lastAnswer(), "the last answer", announce),
    copyLastCode: () => copying(actions.lastCode(), "the last code block", announce),
  };
  fillHelp(help);
  helpButton?.addEventListener("click", () => help.showModal());
  for (const button of help.querySelectorAll("[data-dialog-cancel]")) {
    button.addEventListener("click", () => help.close());
  }
  document.addEventListener("keydown", (event) => {
    // Another part took the key (the model list, the phone sidebar), or a dialog is open:
    // Escape and Tab are the dialog's.
    if (event.defaultPrevented || event.isComposing || document.querySelector("dialog[open]")) return;
    const key = pressed(event);
    const shortcut = SHORTCUTS.find((s) => s.action && s.keys.includes(key));
    if (!shortcut) return;
    if (!key.startsWith("Mod+") && !shortcut.typing && isTyping(event.target)) return;
    if (run[shortcut.action](event) === false) return; // nothing to do: the key keeps its meaning
    event.preventDefault();
  });
}

async function copying(text, what, announce) {
  if (!text) {
    announce(`There is no ${what.replace(/^the /, "")} to copy.`);
    return;
  }
  announce((await copyText(text)) ? `Copied ${what}.` : `Could not copy ${what}.`);
}

// The dialog's list, from SHORTCUTS: a table per group, keys as <kbd>.
function fillHelp(dialog) {
  const groups = new Map();
  for (const s of SHORTCUTS) groups.set(s.group, [...(groups.get(s.group) ?? []), s]);
  const sections = [];
  for (const [group, shortcuts] of groups) {
    const table = document.createElement("table");
    table.className = "shortcut-table";
    const caption = table.createCaption();
    caption.textContent = group;
    const body = table.createTBody();
    for (const s of shortcuts) {
      const row = body.insertRow();
      const what = document.createElement("th");
      what.scope = "row";
      what.textContent = s.label;
      const keys = row.insertCell();
      s.keys.forEach((combo, i) => {
        if (i) keys.append(" or ");
        const kbd = document.createElement("kbd");
        keyLabel(combo).forEach((part, j) => {
          if (j) kbd.append(" ");
          const key = document.createElement("kbd");
          key.textContent = part;
          kbd.append(key);
        });
        keys.append(kbd);
      });
      row.prepend(what);
    }
    sections.push(table);
  }
  dialog.querySelector("#help-list").replaceChildren(...sections);
}

// The "Copy" button of rendered code blocks, for every block now and later (delegation);
// `announce` tells a screen reader it worked (the button's name stays "Copy …"). A JSON
// answer's block also has "Download .json" (conversations/live/json_answers.py): a Blob
// saved by the browser, no request to the server.

const RESET_MS = 2000;

export function wireCopyButtons(root, announce) {
  root.addEventListener("click", (event) => {
    const button = event.target.closest(".download-json");
    const code = button?.closest(".code-block")?.querySelector("code");
    if (code) downloadText(code.textContent, "answer.json", "application/json");
  });
  root.addEventListener("click", async (event) => {
    const button = event.target.closest(".copy-code");
    if (!button) return;
    const code = button.closest(".code-block")?.querySelector("code");
    if (!code) return;
    const ok = await copyText(code.textContent);
    button.textContent = ok ? "Copied" : "Press Ctrl+C";
    button.classList.toggle("is-copied", ok);
    announce?.(ok ? "Copied." : "Could not copy: press Ctrl+C.");
    clearTimeout(button.copyTimer);
    button.copyTimer = setTimeout(() => {
      button.textContent = "Copy";
      button.classList.remove("is-copied");
    }, RESET_MS);
  });
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Plain http on a LAN address has no Clipboard API; the old way still works there.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "clipboard-helper";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

function downloadText(text, filename, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

// Deleting several conversations at once (the sidebar's Select mode) or all of them (the
// account menu). Both are plain form posts the server answers with a redirect to a new
// chat; this module only shows the checkboxes, counts them and asks before posting.

export function wireBulkDelete({ sidebar, toggle, bar, count, submit, cancel, deleteAll, allForm, dialog }) {
  const text = dialog.querySelector("#bulk-delete-text");
  let confirmed = null;

  const selected = () => sidebar.querySelectorAll(".conv-select:checked");
  const refresh = () => {
    const n = selected().length;
    count.textContent = n === 0 ? "None selected" : `${n} selected`;
    submit.disabled = n === 0;
  };
  const setSelecting = (on) => {
    sidebar.classList.toggle("is-selecting", on);
    toggle.setAttribute("aria-pressed", String(on));
    bar.hidden = !on;
    if (!on) for (const box of selected()) box.checked = false;
    refresh();
  };
  const ask = (message, then) => {
    text.textContent = message;
    confirmed = then;
    dialog.showModal();
  };

  toggle.addEventListener("click", () => setSelecting(toggle.getAttribute("aria-pressed") !== "true"));
  cancel.addEventListener("click", () => setSelecting(false));
  sidebar.addEventListener("change", refresh);
  bar.addEventListener("submit", (event) => {
    event.preventDefault();
    const n = selected().length;
    const what = n === 1 ? "This conversation" : `These ${n} conversations`;
    ask(`${what} and all their messages, images and documents will be deleted for good.`, () => bar.submit());
  });
  deleteAll.addEventListener("click", () => {
    ask("Every conversation, archived ones too, and all their messages, images and documents will be deleted for good.", () => allForm.submit());
  });
  dialog.addEventListener("close", () => {
    const then = confirmed;
    confirmed = null;
    if (dialog.returnValue === "delete" && then) then();
  });
}

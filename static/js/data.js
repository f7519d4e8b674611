// The Your data page: the ticked conversations go as one comma-separated parameter.
const form = document.getElementById("export-some");
if (form) {
  form.addEventListener("submit", (event) => {
    const ids = [...form.querySelectorAll("[data-export-pick]:checked")].map((box) => box.value);
    if (!ids.length) {
      event.preventDefault();
      return;
    }
    form.elements.conversations.value = ids.join(",");
  });
}

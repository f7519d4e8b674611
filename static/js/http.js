// Small helpers for the few HTTP calls the page makes besides the socket.

export function csrfToken() {
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  if (cookie) return decodeURIComponent(cookie.slice("csrftoken=".length));
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

// URLs come from data-* attributes built by Django with the id 0 ("/c/0/rename/").
export function urlFor(template, id) {
  return template.replace("/0/", `/${id}/`);
}

// Uploads one file as multipart form data, reporting progress (fetch cannot) to
// onProgress(fraction). Returns {xhr, done}: abort with xhr.abort(); done resolves to
// {status, data} (data is {} when the answer is not JSON, e.g. a proxy's error page) and
// rejects when the connection fails. An aborted upload never settles.
export function uploadFile(url, file, onProgress) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let data = {};
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        // the status says enough
      }
      resolve({ status: xhr.status, data });
    });
    xhr.addEventListener("error", () => reject(new Error("upload failed")));
  });
  xhr.open("POST", url);
  xhr.setRequestHeader("X-CSRFToken", csrfToken());
  xhr.setRequestHeader("Accept", "application/json");
  const body = new FormData();
  body.append("file", file, file.name);
  xhr.send(body);
  return { xhr, done };
}

// Posts a form as the browser would, asking for JSON. Resolves to {ok, status, data}.
export async function postForm(url, form) {
  const body = form instanceof FormData ? form : new FormData(form);
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      body,
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
    });
  } catch {
    return { ok: false, status: 0, data: { errors: { __all__: ["The server cannot be reached. Try again."] } } };
  }
  let data = {};
  if ((response.headers.get("Content-Type") || "").includes("application/json")) {
    data = await response.json();
  } else if (!response.ok) {
    const message = response.status === 404 ? "This conversation no longer exists." : `The server answered ${response.status}.`;
    data = { errors: { __all__: [message] } };
  }
  return { ok: response.ok, status: response.status, data };
}

// Shows a form's field errors ({field: [messages]}) next to its fields; unknown fields
// and "__all__" go to the form's first error list.
export function showErrors(form, errors = {}) {
  clearErrors(form);
  const fallback = form.querySelector(".field-errors");
  for (const [name, messages] of Object.entries(errors)) {
    const field = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
    const list = field?.querySelector(".field-errors") ?? fallback;
    field?.classList.add("field--invalid");
    const input = field?.querySelector("input, textarea, select");
    input?.setAttribute("aria-invalid", "true");
    // Read with the field when it takes focus, as Django does for errors it renders.
    if (input && list?.id) describeBy(input, list.id);
    for (const message of messages) {
      const item = document.createElement("li");
      item.textContent = message;
      list?.append(item);
    }
  }
  form.querySelector(".field--invalid input, .field--invalid textarea")?.focus();
}

export function clearErrors(form) {
  for (const list of form.querySelectorAll(".field-errors")) list.replaceChildren();
  for (const field of form.querySelectorAll(".field--invalid")) field.classList.remove("field--invalid");
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function describeBy(input, id) {
  const ids = (input.getAttribute("aria-describedby") ?? "").split(" ").filter(Boolean);
  if (!ids.includes(id)) input.setAttribute("aria-describedby", [...ids, id].join(" "));
}

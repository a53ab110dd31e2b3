// Talking to the playground's API: every answer is JSON, and an error answer carries {"error": "..."}
// in words; a failure of the network or of Lumi itself becomes such a sentence too.
export const API = "/playground/api";

export class ApiError extends Error {}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`Lumi answered ${response.status} without a readable reply.`);
  }
  if (!response.ok) throw new ApiError(body && body.error ? body.error : `Lumi answered ${response.status}.`);
  return body;
}

async function send(path, init) {
  let response;
  try {
    response = await fetch(API + path, { credentials: "same-origin", ...init });
  } catch {
    throw new ApiError("Lumi cannot be reached: is it still running?");
  }
  return answer(response);
}

export const getJson = (path) => send(path, { method: "GET" });
export const postJson = (path, body) =>
  send(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
export const postForm = (path, form) => send(path, { method: "POST", body: form });

// -- small DOM helpers ---------------------------------------------------------------------------------

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function showProblem(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

// Runs `work` with the button disabled and its label changed, so a slow model shows it is busy.
export async function busy(button, label, work) {
  const before = button.textContent;
  button.disabled = true;
  button.textContent = label;
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.textContent = before;
  }
}

// Files dropped on `zone` land in the file input named by its data-drop attribute, then `onDrop` runs.
export function acceptDrops(zone, onDrop) {
  const input = document.getElementById(zone.dataset.drop);
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      onDrop();
    }
  });
}

// A box of fractions [x, y, w, h] of the picture, drawn over it with a label.
export function boxOver(preview, fractions, label, kind) {
  const [x, y, w, h] = fractions;
  const box = el("div", { class: `box ${kind}` }, el("span", { text: label }));
  box.style.left = `${x * 100}%`;
  box.style.top = `${y * 100}%`;
  box.style.width = `${w * 100}%`;
  box.style.height = `${h * 100}%`;
  preview.append(box);
}

export const percent = (value) => (value === null || value === undefined ? "off" : value.toFixed(2));

// The 3D card: the prompt check and enhanced prompt, then (with MESHY_API_KEY) a real job followed live
// over Server-Sent Events, the model on a canvas and its downloads. `#job[data-job-state]` tells tests
// where it is: running → loaded | failed | empty.
import { busy, el, getJson, postJson, showProblem } from "./api.js";

const form = document.getElementById("prompt-form");
const promptText = document.getElementById("prompt-text");
const style = document.getElementById("prompt-style");
const texture = document.getElementById("prompt-texture");
const checkButton = document.getElementById("prompt-check");
const generateButton = document.getElementById("prompt-generate");
const hint = document.getElementById("meshy-hint");
const problem = document.getElementById("generate3d-error");
const result = document.getElementById("prompt-result");
const job = document.getElementById("job");
const jobStatus = document.getElementById("job-status");
const jobBar = document.getElementById("job-bar");
const canvas = document.getElementById("job-canvas");
const downloads = document.getElementById("job-downloads");
const jobList = document.getElementById("jobs");

const STAGES = {
  queued: "Queued", enhancing: "Enhancing the prompt", preview: "Generating the shape",
  refining: "Texturing", downloading: "Saving the files", done: "Done", failed: "Failed", canceled: "Canceled",
};

function showHint(text) {
  hint.textContent = text || "";
  hint.hidden = !text;
  generateButton.disabled = Boolean(text);
  generateButton.title = text || "";
}

async function check() {
  showProblem(problem, "");
  try {
    const answer = await busy(checkButton, "Checking…", () => postJson("/3d/check", { prompt: promptText.value, style: style.value || null }));
    showHint(answer.meshy_hint);
    const verdict = el("p", { id: "prompt-verdict", class: answer.allowed ? "" : "problem", "data-allowed": String(answer.allowed) },
      el("b", { text: answer.allowed ? "Allowed. " : "Refused. " }), answer.message);
    const enhanced = answer.enhanced
      ? el("div", {}, el("p", {}, el("b", { text: "Enhanced prompt " }),
        el("span", { class: "muted", text: `(${answer.enhanced.backend}, ${answer.enhanced.elapsed_ms} ms${answer.enhanced.fallbacks.length ? `; fell back: ${answer.enhanced.fallbacks.join("; ")}` : ""})` })),
        el("p", { class: "comment", id: "prompt-enhanced", text: answer.enhanced.text }))
      : null;
    result.replaceChildren(verdict, enhanced || "");
  } catch (error) {
    showProblem(problem, error.message);
  }
}

function humanSize(bytes) {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

function showDownloads(assets) {
  downloads.replaceChildren(...assets.map((asset) => el("li", {},
    el("a", { href: asset.url, download: asset.filename, text: asset.kind === "model" ? asset.name.toUpperCase() : `${asset.kind}: ${asset.name}` }),
    ` (${humanSize(asset.size)})`)));
}

async function finished(payload, viewerUrl) {
  showDownloads(payload.assets);
  downloads.append(el("li", {}, el("a", { href: viewerUrl, target: "_blank", rel: "noopener", text: "Open in the 3D viewer" })));
  if (!payload.glb_url) {
    job.dataset.jobState = "empty";
    jobStatus.textContent = payload.files_expired || "This job has no GLB file to show; use the downloads.";
    return;
  }
  canvas.hidden = false;
  try {
    const { showModel } = await import("./model-view.js");
    await showModel(canvas, payload.glb_url);
    job.dataset.jobState = "loaded";
  } catch (error) {
    console.error(error);
    job.dataset.jobState = "failed";
    jobStatus.textContent = "The model could not be shown here (are the viewer's scripts installed?); the downloads still work.";
  }
}

function follow(created) {
  job.hidden = false;
  job.dataset.jobState = "running";
  canvas.hidden = true;
  downloads.replaceChildren();
  const events = new EventSource(created.events_url);
  const seen = [];
  events.addEventListener("progress", (event) => {
    const payload = JSON.parse(event.data);
    const state = payload.job;
    seen.push(state.progress);
    job.dataset.progressSeen = seen.join(",");
    jobStatus.textContent = `${STAGES[state.state] || state.state} · ${state.detail || `${state.progress}%`}`;
    jobBar.style.width = `${state.progress}%`;
    if (state.state === "done") {
      events.close();
      finished(payload, created.viewer_url).then(listJobs);
    } else if (state.state === "failed" || state.state === "canceled") {
      events.close();
      job.dataset.jobState = "failed";
      jobStatus.textContent = state.error || STAGES[state.state];
      listJobs();
    }
  });
  events.addEventListener("done", () => events.close());
}

async function generate() {
  showProblem(problem, "");
  try {
    const created = await busy(generateButton, "Starting…", () => postJson("/3d/jobs", {
      prompt: promptText.value, style: style.value || null, texture: texture.checked,
    }));
    follow(created);
    listJobs();
  } catch (error) {
    showProblem(problem, error.message);
  }
}

async function listJobs() {
  try {
    const answer = await getJson("/3d/jobs");
    showHint(answer.meshy_hint);
    jobList.replaceChildren(...(answer.jobs.length
      ? answer.jobs.map((item) => el("li", {}, el("a", { href: item.viewer_url, target: "_blank", rel: "noopener", text: item.prompt }),
        ` · ${STAGES[item.state] || item.state} ${item.progress}%`))
      : [el("li", { class: "muted", text: "None yet." })]));
  } catch (error) {
    showProblem(problem, error.message);
  }
}

export function setupGenerate3d(features) {
  if (features) {
    for (const name of features.styles) style.append(el("option", { value: name, text: name }));
    showHint(features.meshy_hint);
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); check(); });
  generateButton.addEventListener("click", generate);
  listJobs();
}

// The playground page: starts the models loading, tells which are still loading, and sets up the cards.
// `document.body.dataset.playground` tells tests where the page is: starting → ready.
import { el, getJson, postJson } from "./api.js";
import { setupModeration } from "./moderation.js";
import { setupComments } from "./comments.js";
import { setupGenerate3d } from "./generate3d.js";

const statusLine = document.getElementById("status-line");
const modelList = document.getElementById("models");

function showStatus(status) {
  modelList.replaceChildren(
    ...status.models.map((model) => {
      const state = model.loaded ? "loaded" : model.loading ? "loading" : model.error ? "failed" : "idle";
      const words = { loaded: `loaded (${model.device})`, loading: "loading…", failed: "unavailable", idle: "not loaded" };
      return el("li", { class: state, title: model.error || "", "data-model": model.name }, `${model.name}: ${words[state]}`);
    }),
  );
  const limits = status.limits;
  const limitsText = `Up to ${limits.max_images} images of ${limits.max_image_mb} MB per check, ` +
    `${(limits.max_pixels / 1e6).toFixed(0)} MP and ${limits.max_frames} sampled frames each; ` +
    `${limits.rate_limit} per browser.`;
  document.getElementById("moderation-limits").textContent = `Drop images here. ${limitsText}`;
  statusLine.textContent = status.loading.length
    ? `Loading models: ${status.loading.join(", ")}. The page works meanwhile; a check waits for the models it needs.`
    : "Models load on first use; a failed one says why when you point at it.";
  return status;
}

let polling = null;

async function refresh() {
  try {
    const status = showStatus(await getJson("/status"));
    if (!status.loading.length && polling !== null) {
      clearInterval(polling);
      polling = null;
    }
    return status;
  } catch (error) {
    statusLine.textContent = error.message;
    return null;
  }
}

export function watchModels() {
  if (polling === null) polling = setInterval(refresh, 1500);
  refresh();
}

async function start() {
  let status = null;
  try {
    status = showStatus(await postJson("/warmup", {}));
  } catch (error) {
    statusLine.textContent = error.message;
  }
  setupModeration({ onWork: watchModels });
  setupComments({ onWork: watchModels });
  setupGenerate3d(status ? status.features : null);
  watchModels();
  document.body.dataset.playground = "ready";
}

start();

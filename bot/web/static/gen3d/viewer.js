// Lumi's 3D viewer: follows the job's progress (Server-Sent Events) and shows the finished GLB with
// orbit controls. `document.body.dataset.viewerState` tells tests and scripts where it is:
// starting → waiting → loading → loaded | failed | empty | expired.
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

const body = document.body;
const jobId = body.dataset.jobId;
const canvas = document.getElementById("view");
const statusLine = document.getElementById("status");
const barFill = document.getElementById("bar-fill");
const overlay = document.getElementById("overlay");
const downloads = document.getElementById("downloads");
const spin = document.getElementById("spin");

function setState(state, text) {
  body.dataset.viewerState = state;
  if (text !== undefined) statusLine.textContent = text;
}

// -- scene ------------------------------------------------------------------------------------------

// preserveDrawingBuffer keeps the last frame readable, which screenshots of the page rely on.
const renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
renderer.outputColorSpace = THREE.SRGBColorSpace;
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x1f2229);
scene.add(new THREE.HemisphereLight(0xffffff, 0x3a3f4b, 2.6));
scene.add(new THREE.AmbientLight(0xffffff, 0.6));
const keyLight = new THREE.DirectionalLight(0xffffff, 2.0);
keyLight.position.set(3, 5, 4);
scene.add(keyLight);
const camera = new THREE.PerspectiveCamera(40, 1, 0.01, 1000);
camera.position.set(2.2, 1.6, 2.6);
const controls = new OrbitControls(camera, canvas);
controls.enableDamping = true;
controls.autoRotate = spin.checked;
controls.autoRotateSpeed = 1.5;
spin.addEventListener("change", () => { controls.autoRotate = spin.checked; });

function resize() {
  const width = canvas.clientWidth || 800;
  const height = canvas.clientHeight || 600;
  renderer.setSize(width, height, false);
  camera.aspect = width / height;
  camera.updateProjectionMatrix();
}
window.addEventListener("resize", resize);
resize();

function frame() {
  controls.update();
  renderer.render(scene, camera);
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);

// Centre the model on the origin and frame it whatever its size (Meshy's units vary).
function frameObject(object) {
  const box = new THREE.Box3().setFromObject(object);
  const size = box.getSize(new THREE.Vector3());
  const centre = box.getCenter(new THREE.Vector3());
  object.position.sub(centre);
  const radius = Math.max(size.x, size.y, size.z) || 1;
  const distance = radius / (2 * Math.tan((camera.fov * Math.PI) / 360)) * 1.6;
  camera.near = distance / 100;
  camera.far = distance * 100;
  camera.position.set(distance * 0.75, distance * 0.55, distance * 0.9);
  camera.updateProjectionMatrix();
  controls.target.set(0, 0, 0);
  controls.minDistance = distance * 0.2;
  controls.maxDistance = distance * 6;
  controls.update();
}

// -- job ---------------------------------------------------------------------------------------------

const STAGES = {
  queued: "Queued", enhancing: "Enhancing the prompt", preview: "Generating the shape",
  refining: "Texturing", downloading: "Saving the files", done: "Done", failed: "Failed",
  canceled: "Canceled",
};

function humanSize(bytes) {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

function showDownloads(assets) {
  downloads.replaceChildren();
  const order = { model: 0, texture: 1, thumbnail: 2 };
  const sorted = [...assets].sort((a, b) => order[a.kind] - order[b.kind] || a.name.localeCompare(b.name));
  for (const asset of sorted) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = asset.url;
    link.download = asset.filename;
    const label = asset.kind === "model"
      ? (asset.name === "zip" ? "OBJ + textures (.zip)" : asset.name.toUpperCase())
      : asset.kind === "texture" ? `Texture: ${asset.name.replace("_", " ")}` : "Thumbnail";
    link.textContent = label;
    item.append(link, ` (${humanSize(asset.size)})`);
    downloads.append(item);
  }
  if (!sorted.length) downloads.innerHTML = '<li class="muted">No files were stored.</li>';
}

function showProgress(job) {
  const stage = STAGES[job.state] || job.state;
  statusLine.textContent = job.detail ? `${stage} · ${job.detail}` : `${stage} · ${job.progress}%`;
  barFill.style.width = `${job.progress}%`;
  if (job.enhanced_prompt) document.getElementById("prompt").textContent = job.enhanced_prompt;
}

let loadedOnce = false;

function showExpired(note) {
  const item = document.createElement("li");
  item.className = "muted";
  item.textContent = note;
  downloads.replaceChildren(item);
  setState("expired", note);
}

function loadModel(payload) {
  if (loadedOnce) return;
  loadedOnce = true;
  if (payload.files_expired) {
    showExpired(payload.files_expired);
    return;
  }
  showDownloads(payload.assets);
  if (!payload.glb_url) {
    setState("empty", "This job has no GLB file to show; use the downloads.");
    return;
  }
  setState("loading", "Loading the model…");
  new GLTFLoader().load(
    payload.glb_url,
    (gltf) => {
      scene.add(gltf.scene);
      frameObject(gltf.scene);
      overlay.classList.add("hidden");
      setState("loaded");
    },
    (event) => {
      if (event.total) barFill.style.width = `${Math.round((100 * event.loaded) / event.total)}%`;
    },
    (error) => {
      console.error(error);
      setState("failed", "The model could not be loaded in the browser; the downloads still work.");
    },
  );
}

function handle(payload) {
  const job = payload.job;
  showProgress(job);
  if (job.state === "done") {
    loadModel(payload);
  } else if (job.state === "failed" || job.state === "canceled") {
    setState("failed", job.error || STAGES[job.state]);
    showDownloads(payload.assets);
  } else {
    body.dataset.viewerState = "waiting";
  }
}

const TERMINAL = ["done", "failed", "canceled"];
const POLL_MS = 5000;

// Follows the job by reading its JSON now and then: used when the server refuses a live stream (its cap
// on open streams, or a database that is not answering), where the browser stops retrying by itself.
async function poll() {
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      const response = await fetch(`/jobs/${jobId}`, { cache: "no-store" });
      if (!response.ok) continue;
      const payload = await response.json();
      handle(payload);
      if (TERMINAL.includes(payload.job.state)) return;
    } catch (error) {
      console.error(error);
    }
  }
}

async function start() {
  const response = await fetch(`/jobs/${jobId}`, { cache: "no-store" });
  if (!response.ok) {
    setState("failed", "This 3D job does not exist any more.");
    return;
  }
  const payload = await response.json();
  handle(payload);
  if (TERMINAL.includes(payload.job.state)) return;
  const events = new EventSource(`/jobs/${jobId}/events`);
  events.addEventListener("progress", (event) => handle(JSON.parse(event.data)));
  events.addEventListener("done", () => events.close());
  events.addEventListener("error", () => {
    if (events.readyState === EventSource.CLOSED) poll();
  });
}

start().catch((error) => {
  console.error(error);
  setState("failed", "Lumi's server could not be reached.");
});

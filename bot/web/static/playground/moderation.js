// The moderation card: images checked as the bot checks a post, then judged again under the policy the
// sliders or the JSON box describe, from the scores already measured (no model runs again).
import { acceptDrops, boxOver, busy, el, percent, postForm, postJson, showProblem } from "./api.js";

const form = document.getElementById("moderation-form");
const files = document.getElementById("moderation-files");
const urlInput = document.getElementById("moderation-url");
const submit = document.getElementById("moderation-submit");
const problem = document.getElementById("moderation-error");
const results = document.getElementById("moderation-results");
const sliders = document.getElementById("policy-sliders");
const policyText = document.getElementById("policy-json");
const policyProblem = document.getElementById("policy-error");
const exportLink = document.getElementById("policy-export");

const OFF = 1.01; // a slider pushed past 1 turns that threshold off (null in the policy)
let defaults = null; // category name -> {review, act}, from the default policy
let checked = []; // [{result, card}] of the last check
let current = null; // the policy view Lumi last answered with

const words = { allow: "allow", alert: "alert", hold: "hold", delete: "delete", "not checked": "not checked", error: "error" };

function readOverrides() {
  const text = policyText.value.trim() || "{}";
  try {
    const value = JSON.parse(text);
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not an object");
    showProblem(policyProblem, "");
    return value;
  } catch (error) {
    showProblem(policyProblem, `The policy is not a JSON object: ${error.message}`);
    return null;
  }
}

function setExport(overrides) {
  if (exportLink.dataset.url) URL.revokeObjectURL(exportLink.dataset.url);
  const url = URL.createObjectURL(new Blob([JSON.stringify(overrides, null, 2) + "\n"], { type: "application/json" }));
  exportLink.href = url;
  exportLink.dataset.url = url;
}

// -- sliders -------------------------------------------------------------------------------------------

function sliderValue(input) {
  const value = Number(input.value);
  return value > 1 ? null : Math.round(value * 100) / 100;
}

function slider(category, which, value, disabled) {
  const input = el("input", {
    type: "range", min: 0, max: OFF, step: 0.01, disabled,
    "data-category": category, "data-threshold": which, "aria-label": `${category} ${which} threshold`,
  });
  input.value = value === null ? OFF : value;
  const shown = el("output", { text: percent(value) });
  input.addEventListener("input", () => {
    shown.textContent = percent(sliderValue(input));
    fromSliders();
  });
  return [input, shown];
}

function showSliders(policy) {
  sliders.replaceChildren(el("b", { text: "category" }), el("b", { text: "review" }), el("span"), el("b", { text: "auto-action" }), el("span"));
  for (const rule of policy.categories) {
    const [review, reviewShown] = slider(rule.name, "review", rule.review, rule.custom);
    const [act, actShown] = slider(rule.name, "act", rule.act, rule.custom);
    const name = el("span", { title: rule.description }, rule.name, rule.custom ? " (custom)" : "");
    sliders.append(name, review, reviewShown, act, actShown);
  }
}

let pending = null;

function fromSliders() {
  const overrides = readOverrides() || {};
  const categories = {};
  for (const input of sliders.querySelectorAll("input[type=range]:not([disabled])")) {
    const category = input.dataset.category;
    const base = defaults[category];
    const value = sliderValue(input);
    if (base && base[input.dataset.threshold] !== value) {
      categories[category] = { ...(categories[category] || {}), [input.dataset.threshold]: value };
    }
  }
  if (Object.keys(categories).length) overrides.categories = categories;
  else delete overrides.categories;
  policyText.value = JSON.stringify(overrides, null, 2);
  clearTimeout(pending);
  pending = setTimeout(() => judge(overrides), 150);
}

// -- judging -------------------------------------------------------------------------------------------

async function judge(overrides, { updateSliders = false } = {}) {
  if (overrides === null) return;
  try {
    const answer = await postJson("/moderation/judge", { policy: overrides, images: checked.map((item) => item.result.scored) });
    showProblem(policyProblem, "");
    current = answer.policy;
    setExport(answer.policy.overrides);
    if (updateSliders) showSliders(current);
    answer.verdicts.forEach((verdict, index) => {
      checked[index].result.verdict = verdict;
      showVerdict(checked[index], verdict);
    });
  } catch (error) {
    showProblem(policyProblem, error.message);
  }
}

// -- one image -----------------------------------------------------------------------------------------

function showVerdict(item, verdict) {
  const badge = item.card.querySelector(".verdict");
  badge.className = `verdict ${verdict.bot_action.replace(" ", "-")}`;
  badge.textContent = words[verdict.bot_action] || verdict.bot_action;
  item.card.dataset.botAction = verdict.bot_action;
  item.card.querySelector(".reason").textContent = verdict.reason;
  item.card.querySelector(".scores-body").replaceChildren(...scoreRows(item.result));
}

function scoreRows(result) {
  const scores = result.scored.scores;
  const rules = current ? current.categories : [];
  const names = new Set([...rules.map((rule) => rule.name), ...Object.keys(scores)]);
  return [...names].map((name) => {
    const rule = rules.find((candidate) => candidate.name === name) || { review: null, act: null };
    const score = scores[name] ?? 0;
    const meter = el("div", { class: "meter" });
    const fill = el("div", { class: "fill" });
    if (rule.act !== null && score >= rule.act) fill.classList.add("act");
    else if (rule.review !== null && score >= rule.review) fill.classList.add("review");
    fill.style.width = `${score * 100}%`;
    meter.append(fill);
    for (const [which, value] of [["review", rule.review], ["act", rule.act]]) {
      if (value === null) continue;
      const mark = el("div", { class: `mark ${which}`, title: `${which} ${value}` });
      mark.style.left = `${value * 100}%`;
      meter.append(mark);
    }
    return el("tr", { "data-category": name },
      el("td", { text: name }), el("td", { text: scores[name] === undefined ? "—" : score.toFixed(3) }),
      el("td", { class: "meter-cell" }, meter),
      el("td", { class: "muted", text: `review ${percent(rule.review)} · auto-action ${percent(rule.act)}` }));
  });
}

function preview(result) {
  if (!result.preview) return el("p", { class: "muted", text: "No preview: the file was not decoded." });
  const frame = result.frames[0];
  const box = el("div", { class: "preview blurred", title: "Blurred; click to show or hide" });
  box.append(el("img", { src: result.preview, alt: `preview of ${result.name}` }));
  if (frame) {
    for (const found of frame.detections) {
      const [x, y, w, h] = found.box;
      boxOver(box, [x / frame.width, y / frame.height, w / frame.width, h / frame.height], `${found.label} ${found.score.toFixed(2)}`, "label");
    }
  }
  const note = el("p", { class: "preview-note", text: "Blurred on purpose: click to show." });
  box.addEventListener("click", () => {
    const blurred = box.classList.toggle("blurred");
    note.textContent = blurred ? "Blurred on purpose: click to show." : "Click to blur again.";
  });
  return el("div", {}, box, note);
}

function framesStrip(result) {
  if (!result.animated) return null;
  return el("div", {},
    el("p", { class: "muted", text: `Animation: ${result.frames.length} of ${result.frames_total} frames sampled.` }),
    el("div", { class: "frames" }, ...result.frames.map((frame) => el("figure", {},
      frame.thumbnail ? el("img", { src: frame.thumbnail, alt: `frame ${frame.index}` }) : null,
      el("figcaption", { text: `#${frame.index} · nsfw ${frame.nsfw_score.toFixed(2)} · ${frame.detections.length} boxes` })))));
}

function card(result) {
  const details = el("div", {},
    el("h3", { text: result.name }),
    el("p", {}, el("span", { class: "verdict" }), " ", el("span", { class: "reason" })),
    el("table", { class: "scores", hidden: result.scored.status !== "checked" }, el("tbody", { class: "scores-body" })),
    result.scored.status === "checked"
      ? null
      : el("p", { class: "problem not-checked-reason", text: `Not checked: ${result.scored.problem}` }),
    result.labels.length
      ? el("p", { class: "muted" }, "Detector labels: ", result.labels.map((label) => `${label.label} ${label.score.toFixed(2)}`).join(", "))
      : null,
    framesStrip(result),
    result.scored.status === "checked"
      ? el("p", { class: "muted", text: `${result.format} ${result.scored.width}×${result.scored.height} · ${result.elapsed_ms} ms (${Object.entries(result.model_ms).map(([name, ms]) => `${name} ${ms} ms`).join(", ")})` })
      : null);
  const node = el("article", { class: "image-card", "data-status": result.scored.status }, preview(result), details);
  return node;
}

async function check() {
  showProblem(problem, "");
  const data = new FormData();
  for (const file of files.files) data.append("image", file, file.name);
  if (urlInput.value.trim()) data.append("url", urlInput.value.trim());
  const overrides = readOverrides();
  if (overrides === null) return;
  data.append("policy", JSON.stringify(overrides));
  if (!files.files.length && !urlInput.value.trim()) {
    showProblem(problem, "Choose or drop at least one image, or paste an image link.");
    return;
  }
  try {
    const answer = await busy(submit, "Checking…", () => postForm("/moderation/check", data));
    current = answer.policy;
    checked = answer.images.map((result) => ({ result, card: card(result) }));
    results.replaceChildren(...checked.map((item) => item.card));
    checked.forEach((item) => showVerdict(item, item.result.verdict));
    results.dataset.checks = String(Number(results.dataset.checks || 0) + 1);
  } catch (error) {
    showProblem(problem, error.message);
  }
}

export function setupModeration({ onWork }) {
  form.addEventListener("submit", (event) => { event.preventDefault(); onWork(); check(); });
  acceptDrops(form, () => { onWork(); check(); });
  document.getElementById("policy-apply").addEventListener("click", () => judge(readOverrides(), { updateSliders: true }));
  document.getElementById("policy-reset").addEventListener("click", () => { policyText.value = "{}"; judge({}, { updateSliders: true }); });
  // The default policy's rules, which the sliders start from and compare with.
  postJson("/moderation/judge", { policy: {}, images: [] }).then((answer) => {
    defaults = Object.fromEntries(answer.policy.categories.map((rule) => [rule.name, { review: rule.review, act: rule.act }]));
    current = answer.policy;
    showSliders(current);
    setExport(answer.policy.overrides);
  }).catch((error) => showProblem(policyProblem, error.message));
}

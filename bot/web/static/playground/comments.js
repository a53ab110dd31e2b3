// The photo-comment card: what the models see in a photo, the labels they make, and each backend's comment.
import { acceptDrops, boxOver, busy, el, postForm, postJson, showProblem } from "./api.js";

const form = document.getElementById("comments-form");
const file = document.getElementById("comments-file");
const language = document.getElementById("comments-language");
const submit = document.getElementById("comments-submit");
const labelsForm = document.getElementById("labels-form");
const labelsText = document.getElementById("labels-text");
const labelsSubmit = document.getElementById("labels-submit");
const problem = document.getElementById("comments-error");
const result = document.getElementById("comments-result");

const labelName = (label) => (label.ko === label.en ? label.ko : `${label.ko} (${label.en})`);

function preview(answer) {
  if (!answer.preview) return null;
  const box = el("div", { class: "preview" }, el("img", { src: answer.preview, alt: "the photo" }));
  for (const face of answer.faces) {
    const top = Object.entries(face.emotions).sort((a, b) => b[1] - a[1])[0];
    boxOver(box, face.box, top ? `${top[0]} ${top[1].toFixed(2)}` : "face", "face");
  }
  for (const seen of answer.objects) boxOver(box, seen.box, `${seen.name} ${seen.score.toFixed(2)}`, "object");
  return box;
}

function show(answer) {
  const comments = answer.comments.map((item) => el("div", { class: "backend", "data-backend": item.backend },
    el("b", { text: item.backend }), " ",
    el("span", { class: "muted", text: item.comment ? `${item.elapsed_ms} ms` : `no comment: ${item.problem}` }),
    item.comment ? el("p", { class: "comment", text: item.comment }) : null));
  const facts = [];
  if (answer.faces.length) {
    facts.push(el("p", {}, el("b", { text: "Faces: " }), answer.faces.map((face) => {
      const top = Object.entries(face.emotions).sort((a, b) => b[1] - a[1]).slice(0, 3);
      return `${top.map(([name, score]) => `${name} ${score.toFixed(2)}`).join(", ") || "no emotion model"}` +
        (face.label ? ` → ${labelName(face.label)}` : " → no label");
    }).join("; ")));
  } else if (answer.preview) facts.push(el("p", { class: "muted", text: "No face found." }));
  if (answer.objects.length) {
    facts.push(el("p", {}, el("b", { text: "Objects: " }), answer.objects.map((seen) =>
      `${seen.name} ${seen.score.toFixed(2)}${seen.label ? "" : " (not a label)"}`).join(", ")));
  }
  if (answer.missing_models.length) {
    facts.push(el("p", { class: "muted", text: `Models that could not run: ${answer.missing_models.join(", ")}.` }));
  }
  const labels = el("p", { class: "labels" }, el("b", { text: "Labels: " }),
    ...(answer.labels.length ? answer.labels.map((label) => el("span", { text: labelName(label) })) : ["none"]));
  const timing = answer.preview ? el("p", { class: "muted", text: `Perception took ${answer.perceive_ms} ms.` }) : null;
  const withheld = answer.withheld ? el("p", { class: "problem", id: "comments-withheld", text: `No comment: ${answer.withheld}.` }) : null;
  const details = el("div", {}, labels, ...facts, timing, withheld, ...comments);
  const node = el("article", { class: "image-card", "data-comments": String(answer.comments.filter((c) => c.comment).length) });
  node.append(preview(answer) || el("div"), details);
  result.replaceChildren(node);
}

async function commentPhoto() {
  showProblem(problem, "");
  if (!file.files.length) return showProblem(problem, "Choose or drop a photo first.");
  const data = new FormData();
  data.append("image", file.files[0], file.files[0].name);
  data.append("language", language.value);
  try {
    show(await busy(submit, "Looking…", () => postForm("/comments/photo", data)));
  } catch (error) {
    showProblem(problem, error.message);
  }
}

async function commentLabels() {
  showProblem(problem, "");
  try {
    show(await busy(labelsSubmit, "Writing…", () => postJson("/comments/labels", { labels: labelsText.value, language: language.value })));
  } catch (error) {
    showProblem(problem, error.message);
  }
}

export function setupComments({ onWork }) {
  form.addEventListener("submit", (event) => { event.preventDefault(); onWork(); commentPhoto(); });
  labelsForm.addEventListener("submit", (event) => { event.preventDefault(); onWork(); commentLabels(); });
  acceptDrops(form, () => { onWork(); commentPhoto(); });
}

// The page of one run: settings, network, live curves, errors at a checkpoint, first layer, a digit to draw.
"use strict";

const runName = location.pathname.slice("/run/".length).split("/").map(decodeURIComponent).join("/");
const base = "/api/runs/" + runName.split("/").map(encodeURIComponent).join("/");
const stepSelect = document.getElementById("step");
const memberSelect = document.getElementById("member");
let members = null;  // a member run's [{seed, ...}, ...]; null for a lone run
let shownRecords = -1, shownSteps = "", lastInk = null, softmax = true;
let shownStep = 0;  // counts checkpoint changes: an answer for an older choice is dropped, not drawn

// The query naming the checkpoint (and, on a member run's page, the member) to show.
function step() {
  return encodeURIComponent(stepSelect.value || "latest") + (members ? `&member=${encodeURIComponent(memberSelect.value || "0")}` : "");
}
function whose(d) { return d.member == null ? "" : ` (member ${d.member}, seed ${d.seed})`; }

function showError(where, e) {
  document.getElementById(where).replaceChildren(el("p", { class: "error", text: e.message }));
}

// ------------------------------------------------------------------ settings and network

async function loadSummary() {
  const s = await api(base + "/summary");
  document.title = `nn3: ${runName}`;
  document.getElementById("name").textContent = runName;
  const rows = [["preset", s.preset], ["run directory", s.path], ["data", s.dataset + (s.limit ? `, first ${s.limit} of each split` : "")],
                ["cost", s.cost], ["initialisation", s.init]];
  if (s.imported_from) rows.push(["imported from", s.imported_from]);
  for (const [k, v] of Object.entries(s.sgd)) rows.push([k, String(v)]);
  document.getElementById("settings").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v ?? "–" }))));
  const head = el("tr", {}, ...["layer", "activation", "", "input", "output"].map(t => el("th", { text: t })), el("th", { class: "num", text: "parameters" }));
  const body = s.layers.map(l => el("tr", {}, el("td", { text: l.type }), el("td", { text: l.activation }), el("td", { text: l.detail }),
    el("td", { text: l.input.join("×") }), el("td", { text: l.output.join("×") }), el("td", { class: "num", text: l.params.toLocaleString("en") })));
  const total = el("tr", {}, el("th", { text: "total" }), el("td"), el("td"), el("td"), el("td"),
    el("th", { class: "num", text: s.params.toLocaleString("en") }));
  document.getElementById("network").replaceChildren(head, ...body, total);
  document.getElementById("macs").textContent = `${(s.macs / 1e6).toFixed(2)} million multiply-adds per digit (forward pass)`;
  softmax = s.layers[s.layers.length - 1].activation === "softmax";
  if (s.members) {
    members = s.members;
    memberSelect.replaceChildren(...members.map((m, k) => el("option", { value: String(k), text: `${k} (seed ${m.seed})` })));
    document.getElementById("member-choice").hidden = false;
    document.getElementById("status").dataset.members = members.length;
  }
}

// ------------------------------------------------------------------ curves and checkpoints (polled)

const CURVES = [["validation", "#1565c0", "#90caf9"], ["test", "#e65100", "#ffcc80"], ["training", "#2e7d32", "#a5d6a7"]];

// A member run: each member's curve thin and light (series "member K validation"; one legend row,
// "each member", for them all) under the vote's bold one; its cost is the members' mean, bold, over
// each member's, thin. A lone run: one curve per kind, as before.
function drawCurves(records) {
  const pts = (rs, key, scale = 100) => rs.map(r => [r.epoch, r[key] == null ? null : scale * r[key]]);
  const memberRecords = k => records.map(r => ({ ...((r.members || [])[k] || {}), epoch: r.epoch }));
  const thin = (kind, color, key, scale) => (members || []).map((_, k) => ({
    name: `member ${k} ${kind}`, label: `each member`, legend: k === 0, color, width: 1, points: pts(memberRecords(k), key, scale) }));
  const acc = CURVES.flatMap(([kind, color, light]) => [...thin(kind, light, kind + "_accuracy"),
    { name: members ? `vote ${kind}` : kind, color, width: members ? 3 : 2, points: pts(records, kind + "_accuracy") }]);
  const cost = [...thin("training", "#ce93d8", "train_loss", 1),
    { name: members ? "members' mean" : "training", color: "#6a1b9a", width: members ? 3 : 2, points: pts(records, "train_loss", 1) }];
  const drawn = series => series.filter(s => s.points.some(p => p[1] != null));
  lineChart(document.getElementById("accuracy-chart"), drawn(acc),
            { title: members ? `accuracy: the vote of ${members.length} members (bold), each member (thin)` : "accuracy",
              yLabel: "%", format: v => v.toFixed(1), low: 0, high: 100 });
  lineChart(document.getElementById("cost-chart"), members ? drawn(cost) : cost,
            { title: "training cost (mean per mini-batch)", yLabel: "cost", format: v => v.toFixed(3), low: 0 });
}

function setSteps(steps, best) {
  const chosen = stepSelect.value || "best";
  const last = steps[steps.length - 1];
  const options = [el("option", { value: "best", text: best == null ? "best (none yet)" : `best (step ${best})` }),
                   el("option", { value: "latest", text: last == null ? "latest (none yet)" : `latest (step ${last})` }),
                   ...steps.slice().reverse().map(s => el("option", { value: String(s), text: `step ${s}` }))];
  stepSelect.replaceChildren(...options);
  stepSelect.value = [...stepSelect.options].some(o => o.value === chosen) ? chosen : "best";
}

async function poll() {
  const p = await api(base + "/progress");
  const done = p.records.length;
  // config.json keeps the epochs first asked for; a resumed run may go past them.
  document.getElementById("status").textContent = `${done} epoch${done === 1 ? "" : "s"} done` +
    (p.epochs > done ? ` of ${p.epochs}` : "") +
    (p.records.length ? `, best validation ${percent(Math.max(...p.records.map(r => r.validation_accuracy ?? 0)))}` : "");
  if (done !== shownRecords) { drawCurves(p.records); shownRecords = done; }
  document.getElementById("curves").dataset.epochs = done;
  const key = p.steps.join(",") + "/" + p.best;
  if (key !== shownSteps) {
    shownSteps = key;
    setSteps(p.steps, p.best);
    if (p.steps.length) showStep();
  }
}

// ------------------------------------------------------------------ at a checkpoint

async function showStep() {
  const token = ++shownStep;
  const line = document.getElementById("step-accuracy");
  if (line.textContent) line.textContent = line.textContent.replace(/ …loading.*$/, "") + ` …loading ${stepSelect.selectedOptions[0].text}`;
  await Promise.all([loadWrong(token).catch(e => showError("wrong", e)), loadFilters(token).catch(e => showError("filters", e))]);
  if (lastInk && token === shownStep) send(lastInk);
}

async function loadWrong(token) {
  const w = await api(`${base}/wrong?step=${step()}`);
  if (token !== shownStep) return;
  document.getElementById("step-accuracy").textContent =
    `test accuracy${w.member == null ? "" : ` of member ${w.member} (seed ${w.seed})`} at step ${w.step} (${w.position}): ${w.correct} / ${w.n} = ${percent(w.accuracy)}` +
    (w.recorded == null ? "" : w.recorded === w.accuracy ? ", as recorded at save time" : `; recorded at save time: ${percent(w.recorded)}`);
  document.getElementById("wrong-count").textContent = `${w.count} of ${w.n} misclassified` +
    (w.count > w.index.length ? `; the first ${w.index.length} shown` : "") + " (true → predicted; click one for its outputs)";
  const bytes = unpack(w.images);
  const figures = w.index.map((index, k) => {
    const fig = el("figure", { "data-index": index, title: `test digit ${index}` },
      imageCanvas(w.images, bytes, k, "digit"), el("figcaption", { text: `${w.label[k]} → ${w.prediction[k]}` }));
    fig.addEventListener("click", () => {
      document.querySelectorAll("#wrong figure.selected").forEach(f => f.classList.remove("selected"));
      fig.classList.add("selected");
      showDigit(index).catch(e => showError("detail", e));
    });
    return fig;
  });
  document.getElementById("wrong").replaceChildren(...figures);
  document.getElementById("detail").hidden = true;
}

function probabilities(outputs, prediction) {
  const max = Math.max(...outputs, 1e-9);
  return outputs.flatMap((v, k) => {
    const top = k === prediction ? " top" : "";
    const bar = el("div", { class: "bar" + top }); bar.style.width = `${(softmax ? v : v / max) * 100}%`;
    return [el("span", { class: "digit-label" + top, text: String(k) }), el("div", {}, bar),
            el("span", { class: "p" + top, "data-digit": k, text: v.toFixed(3) })];
  });
}

function featureMaps(maps) {
  if (!maps) return [];
  const bytes = unpack(maps);
  return Array.from({ length: maps.shape[0] }, (_, k) => el("figure", { title: `feature map ${k}` }, imageCanvas(maps, bytes, k, "map")));
}

async function showDigit(index) {
  const d = await api(`${base}/digit?step=${step()}&index=${index}`);
  const panel = document.getElementById("detail");
  const kind = softmax ? "probabilities" : "output activations (sigmoid)";
  panel.replaceChildren(
    el("p", { text: `test digit ${d.index} at step ${d.step}${whose(d)}: true ${d.label}, predicted ${d.prediction}` }),
    imageCanvas(d.image, unpack(d.image), 0, "digit big"),
    el("p", { class: "note", text: kind }), el("div", { class: "probs" }, ...probabilities(d.outputs, d.prediction)),
    ...(d.maps ? [el("p", { class: "note", text: "first layer's feature maps (each on its own scale, dark = high)" }), el("div", { class: "grid" }, ...featureMaps(d.maps))] : []));
  panel.hidden = false;
}

async function loadFilters(token) {
  const f = await api(`${base}/filters?step=${step()}`);
  if (token !== shownStep) return;
  const note = document.getElementById("filters-note");
  if (f.kind === "none") { note.textContent = "the first layer's inputs are not a 28×28 image"; return; }
  document.getElementById("filters-title").textContent = f.kind === "filters" ? "First layer: filters" : "First layer: weights of each unit";
  note.textContent = (f.kind === "filters" ? `${f.count} filters` : `the first ${f.images.shape[0]} of ${f.count} units' weights as 28×28 images`) +
    ` at step ${f.step}${whose(f)} (light = positive, dark = negative)`;
  const bytes = unpack(f.images);
  document.getElementById("filters").replaceChildren(...Array.from({ length: f.images.shape[0] },
    (_, k) => imageCanvas(f.images, bytes, k, f.kind === "filters" ? "filter" : "digit", true)));
}

// ------------------------------------------------------------------ the drawing pad

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
function clearPad() { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, pad.width, pad.height); }
clearPad();
let drawing = false;

function at(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}
pad.addEventListener("pointerdown", e => {
  drawing = true; pad.setPointerCapture(e.pointerId);
  const [x, y] = at(e);
  ctx.lineWidth = 24; ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#000";
  ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x, y); ctx.stroke();
});
pad.addEventListener("pointermove", e => {
  if (!drawing) return;
  const [x, y] = at(e);
  ctx.lineTo(x, y); ctx.stroke();
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  const rgba = ctx.getImageData(0, 0, pad.width, pad.height).data;
  const ink = new Uint8Array(pad.width * pad.height);
  for (let i = 0; i < ink.length; i++) ink[i] = 255 - rgba[4 * i];
  let raw = "";
  for (let i = 0; i < ink.length; i += 8192) raw += String.fromCharCode(...ink.subarray(i, i + 8192));
  lastInk = JSON.stringify({ width: pad.width, height: pad.height, ink: btoa(raw) });
  send(lastInk);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

async function send(body) {
  const result = document.getElementById("draw-result");
  result.dataset.state = "waiting";
  const began = performance.now();
  try {
    const d = await api(`${base}/draw?step=${step()}`, { method: "POST", headers: { "Content-Type": "application/json" }, body });
    const input = document.getElementById("draw-input");
    input.replaceWith(Object.assign(imageCanvas(d.input, unpack(d.input), 0, "digit big"), { id: "draw-input" }));
    document.getElementById("draw-pred").textContent = String(d.prediction);
    document.getElementById("draw-probs").replaceChildren(...probabilities(d.outputs, d.prediction));
    document.getElementById("draw-maps-note").textContent = d.maps ? "the first layer's feature maps of the drawing (each on its own scale, dark = high)" : "";
    document.getElementById("draw-maps").replaceChildren(...featureMaps(d.maps));
    result.dataset.step = d.step;
    result.dataset.ms = (performance.now() - began).toFixed(1);
    document.getElementById("draw-note").textContent = `step ${d.step}${whose(d)}, answered in ${result.dataset.ms} ms`;
    result.dataset.state = "done";
  } catch (e) {
    document.getElementById("draw-pred").textContent = e.message;
    result.dataset.state = "error";
  }
  result.dataset.count = Number(result.dataset.count) + 1;
}

document.getElementById("clear").addEventListener("click", () => {
  clearPad(); lastInk = null;
  document.getElementById("draw-pred").textContent = "–";
  document.getElementById("draw-probs").replaceChildren();
  document.getElementById("draw-maps").replaceChildren();
  document.getElementById("draw-maps-note").textContent = "";
  document.getElementById("draw-note").textContent = "";
});
stepSelect.addEventListener("change", () => showStep());
memberSelect.addEventListener("change", () => showStep());

// ------------------------------------------------------------------ start

let polling = false;  // one poll at a time: a slow answer is not overtaken by the next
function tick() {
  if (polling) return;
  polling = true;
  poll().catch(() => {}).finally(() => { polling = false; });
}
loadSummary().then(tick).catch(e => showError("settings", e));
setInterval(tick, 1500);

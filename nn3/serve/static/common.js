// Helpers shared by the pages: JSON requests, packed images onto canvases, an SVG line chart.
"use strict";

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// A packed array (see runview.pack): {shape, lo, hi, data: base64 of 0-255 bytes}.
function unpack(packed) {
  const raw = atob(packed.data);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

// Image number k of a packed (n, h, w) stack onto a new canvas; ink dark on white unless `light`.
function imageCanvas(packed, bytes, k, cls, light) {
  const [h, w] = packed.shape.slice(-2);
  const canvas = el("canvas", { width: w, height: h, class: cls });
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const v = light ? bytes[k * h * w + i] : 255 - bytes[k * h * w + i];
    img.data.set([v, v, v, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

function percent(v) { return v == null ? "–" : (100 * v).toFixed(2) + "%"; }

// Lines over epochs: series = [{name, color, points: [[x, y], ...], width?, legend?}]. Points carry data-x.
// A series with `legend: false` is drawn (thin, say: one of many members) but has no legend row;
// `label` names a series in the legend where its `name` would not (default: the name).
// `low` / `high` bound the padded y range (no negative cost, no accuracy past 100%).
function lineChart(container, series, { title, yLabel, format, low = -Infinity, high = Infinity }) {
  const W = 460, H = 260, L = 52, R = 110, T = 24, B = 34;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  const all = series.flatMap(s => s.points).filter(p => p[1] != null && isFinite(p[1]));
  add("text", { x: L, y: 14 }, title);
  if (!all.length) {
    add("text", { x: L + 20, y: H / 2 }, "no epoch finished yet");
    container.replaceChildren(svg);
    return;
  }
  let [x0, x1] = [Math.min(...all.map(p => p[0])), Math.max(...all.map(p => p[0]))];
  let [y0, y1] = [Math.min(...all.map(p => p[1])), Math.max(...all.map(p => p[1]))];
  if (x1 === x0) { x0 -= 0.5; x1 += 0.5; }
  if (y1 === y0) { y0 -= Math.abs(y0) * 0.05 || 0.5; y1 += Math.abs(y1) * 0.05 || 0.5; }
  const pad = (y1 - y0) * 0.05; y0 = Math.max(low, y0 - pad); y1 = Math.min(high, y1 + pad);
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    add("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: "grid-line" });
    add("text", { x: L - 4, y: sy(y) + 4, "text-anchor": "end" }, format(y));
  }
  const every = Math.max(1, Math.ceil((x1 - x0) / 8));
  for (let x = Math.ceil(x0 / every) * every; x <= x1; x += every) {
    add("text", { x: sx(x), y: H - B + 14, "text-anchor": "middle" }, String(x));
  }
  add("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" });
  add("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" });
  add("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, "epoch");
  add("text", { x: 12, y: (T + H - B) / 2, transform: `rotate(-90 12 ${(T + H - B) / 2})`, "text-anchor": "middle" }, yLabel);
  let row = 0;
  for (const s of series) {
    const pts = s.points.filter(p => p[1] != null && isFinite(p[1]));
    if (!pts.length) continue;
    const width = s.width ?? 2;
    add("polyline", { points: pts.map(p => `${sx(p[0])},${sy(p[1])}`).join(" "), fill: "none",
                      stroke: s.color, "stroke-width": width, class: "series", "data-name": s.name });
    for (const p of pts) {
      const c = add("circle", { cx: sx(p[0]), cy: sy(p[1]), r: width > 1.5 ? 3 : 2, fill: s.color, class: "pt", "data-x": p[0], "data-series": s.name });
      const t = document.createElementNS(NS, "title");
      t.textContent = `${s.name}, epoch ${p[0]}: ${format(p[1])}`;
      c.append(t);
    }
    if (s.legend === false) continue;
    add("line", { x1: W - R + 10, x2: W - R + 26, y1: T + 8 + 16 * row, y2: T + 8 + 16 * row, stroke: s.color, "stroke-width": width });
    add("text", { x: W - R + 30, y: T + 12 + 16 * row }, s.label ?? s.name);
    row++;
  }
  container.replaceChildren(svg);
}

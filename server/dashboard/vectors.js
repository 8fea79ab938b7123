// Vectors, visualized: a sample of a collection's dense vectors (scrolled in pages),
// projected to 2-D by PCA computed here (power iteration on the centred sample), drawn on a
// canvas and coloured by a payload field; hovering a dot shows its point.

import { call, enc, request } from "./api.js";
import { collectionSelect, errorBox, h } from "./dom.js";

const SAMPLE_MAX = 5000;
const PAGE_MAX = 1000;
const POWER_ITERATIONS = 60;
const PALETTE = ["#2458d3", "#e8590c", "#2f9e44", "#c2255c", "#7048e8", "#0c8599",
                 "#f08c00", "#5c940d", "#862e9c", "#495057"];
const OTHER_COLOUR = "#adb5bd";

export async function render(root, context) {
  const names = (await request("GET", "collections")).collections.map((c) => c.name).sort();
  root.append(h("h2", {}, "Vectors"));
  if (names.length === 0) {
    root.append(h("p", { class: "muted" }, "No collection yet."));
    return;
  }
  const name = names.includes(context.params[0]) ? context.params[0] : names[0];
  const info = await request("GET", `collections/${enc(name)}`);
  const vectors = info.config.params.vectors || {};
  const vectorNames = "size" in vectors ? [""] : Object.keys(vectors);
  const vectorSelect = h("select", { id: "vector-name" },
    vectorNames.map((v) => h("option", { value: v }, v || "(default)")));
  const sampleInput = h("input", { type: "number", id: "sample-size", value: 1000, min: 2,
                                   max: SAMPLE_MAX });
  const colourSelect = h("select", { id: "colour-field" }, h("option", { value: "" }, "(none)"));
  const status = h("div", { id: "vectors-status" });
  const canvas = h("canvas", { id: "vectors-canvas", width: 720, height: 480,
                               style: "background: #fff; border: 1px solid #dde1e7" });
  const legend = h("div", { class: "legend", id: "vectors-legend" });
  const tooltip = h("div", { class: "tooltip", id: "vectors-tooltip", hidden: true });
  let plot = null;

  const draw = () => {
    if (plot) legend.replaceChildren(...drawPlot(canvas, plot, colourSelect.value));
  };
  const load = async () => {
    status.replaceChildren(h("p", { class: "muted" }, "Sampling…"));
    const sample = await samplePoints(name, vectorSelect.value,
      Math.min(SAMPLE_MAX, Math.max(2, Number(sampleInput.value) || 1000)));
    if (sample.error) {
      status.replaceChildren(errorBox(sample.error));
      return;
    }
    if (sample.points.length < 2) {
      status.replaceChildren(h("p", { class: "muted" }, "Fewer than two dense vectors to project."));
      return;
    }
    const coordinates = projectPca(sample.points.map((p) => p.vector));
    plot = { points: sample.points, coordinates };
    const fields = new Set(sample.points.flatMap((p) => Object.keys(p.payload || {})));
    // The first payload field until the user picks one: a colourless plot says little.
    const chosen = colourSelect.value || [...fields].sort()[0] || "";
    colourSelect.replaceChildren(h("option", { value: "" }, "(none)"),
      ...[...fields].sort().map((field) => h("option", { value: field, selected: field === chosen },
        field)));
    status.replaceChildren(h("p", { class: "muted", id: "vectors-count" },
      `${sample.points.length} points projected (PCA, first two components)`));
    draw();
  };
  canvas.addEventListener("mousemove", (event) => {
    const hit = plot && nearest(canvas, plot, event);
    if (!hit) {
      tooltip.hidden = true;
      return;
    }
    tooltip.hidden = false;
    tooltip.style.left = `${event.clientX + 12}px`;
    tooltip.style.top = `${event.clientY + 12}px`;
    tooltip.replaceChildren(h("div", {}, `id ${hit.id}`),
      h("pre", {}, JSON.stringify(hit.payload ?? {}, null, 1).slice(0, 600)));
  });
  canvas.addEventListener("mouseleave", () => { tooltip.hidden = true; });
  colourSelect.addEventListener("change", draw);
  root.append(
    h("div", { class: "row" }, "collection ",
      collectionSelect(names, name, (chosen) => { location.hash = `#/vectors/${enc(chosen)}`; }),
      "vector ", vectorSelect, "sample ", sampleInput,
      h("button", { class: "primary", id: "vectors-load", onclick: load }, "Project"),
      "colour by ", colourSelect),
    status, canvas, legend, tooltip);
  await load();
}

async function samplePoints(name, vectorName, count) {
  const points = [];
  let offset = null;
  while (points.length < count) {
    const body = { limit: Math.min(PAGE_MAX, count - points.length), with_payload: true,
                   with_vector: vectorName ? [vectorName] : true };
    if (offset !== null) body.offset = offset;
    const answer = await call("POST", `collections/${enc(name)}/points/scroll`, body);
    if (!answer.ok) return { error: answer.error };
    for (const point of answer.result.points) {
      const vector = vectorName ? point.vector?.[vectorName] : point.vector;
      // Dense vectors only: sparse ({indices, values}) and multi-vectors are not projected.
      if (Array.isArray(vector) && typeof vector[0] === "number") {
        points.push({ id: point.id, payload: point.payload, vector });
      }
    }
    offset = answer.result.next_page_offset;
    if (offset === null || offset === undefined) break;
  }
  return { points };
}

/** Rows projected on the first two principal components: [[x, y], ...]. */
export function projectPca(rows) {
  const dimension = rows[0].length;
  const mean = new Float64Array(dimension);
  for (const row of rows) for (let j = 0; j < dimension; j += 1) mean[j] += row[j] / rows.length;
  const centred = rows.map((row) => Float64Array.from(row, (value, j) => value - mean[j]));
  const components = [];
  for (let c = 0; c < 2; c += 1) {
    // Deterministic start, so the same sample always gives the same picture.
    let v = Float64Array.from({ length: dimension }, (_, j) => 1 + ((j * 7 + c * 3) % 5) / 10);
    for (let iteration = 0; iteration < POWER_ITERATIONS; iteration += 1) {
      const next = new Float64Array(dimension);
      for (const row of centred) {
        let dot = 0;
        for (let j = 0; j < dimension; j += 1) dot += row[j] * v[j];
        for (let j = 0; j < dimension; j += 1) next[j] += dot * row[j];
      }
      for (const previous of components) { // deflation: stay orthogonal to earlier ones
        let dot = 0;
        for (let j = 0; j < dimension; j += 1) dot += next[j] * previous[j];
        for (let j = 0; j < dimension; j += 1) next[j] -= dot * previous[j];
      }
      const norm = Math.hypot(...next) || 1;
      v = next.map((value) => value / norm);
    }
    components.push(v);
  }
  return centred.map((row) => components.map((component) => {
    let dot = 0;
    for (let j = 0; j < dimension; j += 1) dot += row[j] * component[j];
    return dot;
  }));
}

function screenPositions(canvas, coordinates) {
  const xs = coordinates.map((c) => c[0]);
  const ys = coordinates.map((c) => c[1]);
  const [xLow, xHigh, yLow, yHigh] = [Math.min(...xs), Math.max(...xs),
                                      Math.min(...ys), Math.max(...ys)];
  const margin = 12;
  const scaleX = (canvas.width - 2 * margin) / (xHigh - xLow || 1);
  const scaleY = (canvas.height - 2 * margin) / (yHigh - yLow || 1);
  return coordinates.map(([x, y]) =>
    [margin + (x - xLow) * scaleX, canvas.height - margin - (y - yLow) * scaleY]);
}

function drawPlot(canvas, plot, field) {
  const context2d = canvas.getContext("2d");
  context2d.clearRect(0, 0, canvas.width, canvas.height);
  const positions = screenPositions(canvas, plot.coordinates);
  const values = plot.points.map((p) => (field ? p.payload?.[field] : undefined));
  const counts = new Map();
  for (const value of values) {
    const key = JSON.stringify(value ?? null);
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, PALETTE.length);
  const colours = new Map(top.map(([key], index) => [key, PALETTE[index]]));
  positions.forEach(([x, y], index) => {
    context2d.fillStyle = field ? colours.get(JSON.stringify(values[index] ?? null)) || OTHER_COLOUR
                                : PALETTE[0];
    context2d.beginPath();
    context2d.arc(x, y, 3, 0, 2 * Math.PI);
    context2d.fill();
  });
  plot.positions = positions;
  if (!field) return [];
  const items = top.map(([key, count]) =>
    h("span", {}, h("i", { style: `background: ${colours.get(key)}` }), `${key} (${count})`));
  if (counts.size > top.length) {
    items.push(h("span", {}, h("i", { style: `background: ${OTHER_COLOUR}` }), "other"));
  }
  return items;
}

function nearest(canvas, plot, event) {
  if (!plot.positions) return null;
  const box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * (canvas.width / box.width);
  const y = (event.clientY - box.top) * (canvas.height / box.height);
  let best = null;
  let bestDistance = 36; // within 6 px
  plot.positions.forEach(([px, py], index) => {
    const distance = (px - x) ** 2 + (py - y) ** 2;
    if (distance < bestDistance) {
      bestDistance = distance;
      best = plot.points[index];
    }
  });
  return best;
}

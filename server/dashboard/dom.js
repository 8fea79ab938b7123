// Small DOM helpers shared by the views: element building, JSON rendering, error boxes.

const PREVIEW_CHARS_MAX = 80;

/** h("div", {class: "x", onclick: fn}, child, "text", [more]) */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `element`, skipping null, undefined and false as h() does. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

export function errorBox(text) {
  return h("div", { class: "error-box", role: "alert" }, text);
}

/** A value as collapsible JSON: a <details> per object or array, open at the top. */
export function jsonTree(value, { open = false, label = null } = {}) {
  if (value === null || typeof value !== "object") {
    return h("code", {}, JSON.stringify(value));
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  // Closed, it shows the start of the value on one line; open, the whole of it indented.
  const compact = JSON.stringify(value);
  const summary = label ?? (compact.length > PREVIEW_CHARS_MAX
    ? `${compact.slice(0, PREVIEW_CHARS_MAX)}… (${entries.length} ${Array.isArray(value) ? "items" : "keys"})`
    : compact);
  const details = h("details", { class: "json", open }, h("summary", {}, summary));
  details.append(h("pre", {}, JSON.stringify(value, null, 2)));
  return details;
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 0.001) return `${(seconds * 1e6).toFixed(0)} µs`;
  if (seconds < 1) return `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${(seconds / 60).toFixed(1)} min`;
}

/** The dense vector config of a collection as text: "4 Dot", "text: 4 Cosine, image: ...". */
export function describeVectors(vectors) {
  if (!vectors) return "none";
  if ("size" in vectors) return `${vectors.size} ${vectors.distance}`;
  const names = Object.entries(vectors);
  if (names.length === 0) return "none";
  return names.map(([name, config]) => `${name}: ${config.size} ${config.distance}`).join(", ");
}

/** A select of the collections, `selected` chosen; calls onchange(name). */
export function collectionSelect(names, selected, onchange) {
  const select = h("select", { "aria-label": "collection", id: "collection-select" },
    names.map((name) => h("option", { value: name, selected: name === selected }, name)));
  select.addEventListener("change", () => onchange(select.value));
  return select;
}

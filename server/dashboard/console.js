// Console: REST requests typed as in Qdrant's console ("POST collections/x/points/query"
// on the first line, a JSON body below), the answer and its time, a history kept in the
// browser's local storage, and the README's examples one click away.

import { call } from "./api.js";
import { errorBox, fill, h } from "./dom.js";

const HISTORY_STORAGE = "keel-dashboard-console-history";
const HISTORY_MAX = 50;
// The README's "Try it with curl" examples, as console requests.
const EXAMPLES = [
  ["List collections", "GET collections"],
  ["Create my_collection", 'PUT collections/my_collection\n{"vectors": {"size": 4, "distance": "Dot"}}'],
  ["Insert points", `PUT collections/my_collection/points?wait=true
{
  "points": [
    {"id": 1, "vector": [0.05, 0.61, 0.76, 0.74], "payload": {"city": "Berlin", "country": "Germany"}},
    {"id": 2, "vector": [0.19, 0.81, 0.75, 0.11], "payload": {"city": "London", "country": "UK"}},
    {"id": 3, "vector": [0.36, 0.55, 0.47, 0.94], "payload": {"city": "Paris", "country": "France"}}
  ]
}`],
  ["Query", `POST collections/my_collection/points/query
{"query": [0.2, 0.1, 0.9, 0.7], "limit": 3, "with_payload": true}`],
  ["Query with a filter", `POST collections/my_collection/points/query
{
  "query": [0.2, 0.1, 0.9, 0.7],
  "filter": {"must": [{"key": "city", "match": {"value": "London"}}]},
  "limit": 3,
  "with_payload": true
}`],
  ["Scroll", 'POST collections/my_collection/points/scroll\n{"limit": 10, "with_payload": true}'],
  ["Count", 'POST collections/my_collection/points/count\n{"exact": true}'],
  ["Collection info", "GET collections/my_collection"],
];

export async function render(root) {
  const editor = h("textarea", { id: "console-input", rows: 12, spellcheck: "false" });
  const output = h("div", { id: "console-output" });
  const historyList = h("ol", { class: "history", id: "console-history" });
  editor.value = loadHistory()[0] || EXAMPLES[0][1];

  const showHistory = () => {
    historyList.replaceChildren(...loadHistory().map((text) =>
      h("li", { class: "mono", title: text, onclick: () => { editor.value = text; } },
        text.split("\n")[0])));
  };
  const run = async () => {
    output.replaceChildren(h("p", { class: "muted" }, "Running…"));
    const parsed = parseRequest(editor.value);
    if (parsed.error) {
      output.replaceChildren(errorBox(parsed.error));
      return;
    }
    remember(editor.value.trim());
    showHistory();
    const answer = await call(parsed.method, parsed.path, parsed.body);
    const status = h("span", { class: answer.ok ? "ok" : "bad", id: "console-status" },
      answer.status === 0 ? "no answer" : `HTTP ${answer.status}`);
    const shown = typeof answer.body === "string" ? answer.body
                                                  : JSON.stringify(answer.body, null, 2);
    fill(output,
      h("div", { class: "row" }, status,
        h("span", { class: "muted", id: "console-time" },
          `${answer.tookMs.toFixed(1)} ms`)),
      answer.ok ? null : errorBox(answer.error),
      h("pre", { id: "console-answer" }, shown));
  };
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });
  showHistory();
  root.append(h("h2", {}, "Console"),
    h("div", { class: "console" },
      h("div", {},
        editor,
        h("div", { class: "row" },
          h("button", { class: "primary", id: "console-run", onclick: run }, "Run"),
          h("span", { class: "muted" }, "Ctrl+Enter · first line: METHOD path, then a JSON body")),
        output),
      h("div", {},
        h("h3", {}, "Examples"),
        h("ul", { class: "history", id: "console-examples" }, EXAMPLES.map(([label, text]) =>
          h("li", { onclick: () => { editor.value = text; } }, label))),
        h("h3", {}, "History"),
        historyList)));
}

/** "POST collections/x/points/query\n{...}" -> {method, path, body}, or {error}. */
export function parseRequest(text) {
  const trimmed = text.trim();
  const newline = trimmed.indexOf("\n");
  const firstLine = (newline === -1 ? trimmed : trimmed.slice(0, newline)).trim();
  const rest = newline === -1 ? "" : trimmed.slice(newline + 1).trim();
  const match = /^(GET|POST|PUT|PATCH|DELETE|HEAD)\s+(\S+)$/i.exec(firstLine);
  if (!match) return { error: `The first line must be "METHOD path", e.g. GET collections` };
  let body;
  if (rest) {
    try {
      body = JSON.parse(rest);
    } catch (failure) {
      return { error: `Invalid JSON body: ${failure.message}` };
    }
  }
  return { method: match[1].toUpperCase(), path: match[2].replace(/^\/+/, ""), body };
}

function loadHistory() {
  try {
    const stored = JSON.parse(localStorage.getItem(HISTORY_STORAGE) || "[]");
    return Array.isArray(stored) ? stored.filter((entry) => typeof entry === "string") : [];
  } catch {
    return []; // a corrupt history is dropped, not a broken console
  }
}

function remember(text) {
  const history = [text, ...loadHistory().filter((entry) => entry !== text)];
  localStorage.setItem(HISTORY_STORAGE, JSON.stringify(history.slice(0, HISTORY_MAX)));
}

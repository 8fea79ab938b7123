// Points browser: scroll a collection with a JSON filter (Keel's error shown inline),
// payloads as collapsible JSON, vectors on demand, next page, one point opened, and
// "find similar", a query by that point's id.

import { call, enc, request } from "./api.js";
import { collectionSelect, errorBox, h, jsonTree } from "./dom.js";

const PAGE_LIMIT = 20;

export async function render(root, context) {
  const names = (await request("GET", "collections")).collections.map((c) => c.name).sort();
  root.append(h("h2", {}, "Points"));
  if (names.length === 0) {
    root.append(h("p", { class: "muted" }, "No collection yet."));
    return;
  }
  const name = names.includes(context.params[0]) ? context.params[0] : names[0];
  const vectors = (await request("GET", `collections/${enc(name)}`)).config.params.vectors || {};
  // Named vectors: "find similar" searches with the first one (Qdrant needs `using` then).
  const using = "size" in vectors ? null : Object.keys(vectors)[0] ?? null;
  const filter = h("textarea", { id: "points-filter", rows: 3,
    placeholder: '{"must": [{"key": "city", "match": {"value": "Berlin"}}]}' });
  const filterError = h("div", { id: "points-filter-error" });
  const table = h("tbody", { id: "points-rows" });
  const pageInfo = h("span", { id: "points-page", class: "muted" });
  const detail = h("div", { id: "point-detail" });
  const nextButton = h("button", { id: "points-next" }, "Next page");
  const page = { offsets: [], next: null, filter: null };

  const load = async (offset) => {
    filterError.replaceChildren();
    const body = { limit: PAGE_LIMIT, with_payload: true, with_vector: false };
    if (page.filter) body.filter = page.filter;
    if (offset !== null && offset !== undefined) body.offset = offset;
    const answer = await call("POST", `collections/${enc(name)}/points/scroll`, body);
    if (!answer.ok) {
      filterError.append(errorBox(answer.error));
      return;
    }
    page.offsets.push(offset ?? null);
    page.next = answer.result.next_page_offset;
    table.replaceChildren(...answer.result.points.map((point) => pointRow(name, point, detail, using)));
    if (answer.result.points.length === 0) {
      table.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No point matches.")));
    }
    pageInfo.textContent = `page ${page.offsets.length} · ${answer.result.points.length} points`;
    nextButton.disabled = page.next === null || page.next === undefined;
  };
  const applyFilter = async () => {
    const text = filter.value.trim();
    if (text) {
      try {
        page.filter = JSON.parse(text);
      } catch (failure) {
        filterError.replaceChildren(errorBox(`Invalid JSON: ${failure.message}`));
        return;
      }
    } else {
      page.filter = null;
    }
    page.offsets = [];
    await load(null);
  };
  nextButton.addEventListener("click", () => load(page.next));

  root.append(
    h("div", { class: "row" }, "collection ",
      collectionSelect(names, name, (chosen) => { location.hash = `#/points/${enc(chosen)}`; })),
    h("div", { class: "panel" },
      h("label", { for: "points-filter" }, "filter (JSON, as in Qdrant's scroll)"), filter,
      h("div", { class: "row" },
        h("button", { class: "primary", id: "points-apply", onclick: applyFilter }, "Scroll"),
        nextButton, pageInfo),
      filterError),
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "payload"),
        h("th", {}, "vector"), h("th", {}, ""))),
      table),
    detail);
  await load(null);
}

function pointRow(name, point, detail, using) {
  const vectorCell = h("td", {}, h("button", { class: "show-vector", onclick: async () => {
    const answer = await call("GET", `collections/${enc(name)}/points/${enc(String(point.id))}`);
    vectorCell.replaceChildren(answer.ok ? jsonTree(answer.result.vector, { open: true })
                                         : errorBox(answer.error));
  } }, "show"));
  return h("tr", { "data-point-id": String(point.id) },
    h("td", { class: "mono" }, String(point.id)),
    h("td", {}, jsonTree(point.payload ?? {})),
    vectorCell,
    h("td", {},
      h("button", { class: "open-point", onclick: () => openPoint(name, point.id, detail) },
        "open"), " ",
      h("button", { class: "find-similar", onclick: () => findSimilar(name, point.id, detail, using) },
        "find similar")));
}

async function openPoint(name, id, detail) {
  const answer = await call("GET", `collections/${enc(name)}/points/${enc(String(id))}`);
  detail.replaceChildren(h("div", { class: "panel", id: "point-opened" },
    h("h3", {}, `Point ${id}`),
    answer.ok ? h("pre", {}, JSON.stringify(answer.result, null, 2)) : errorBox(answer.error)));
}

async function findSimilar(name, id, detail, using) {
  const body = { query: id, limit: 10, with_payload: true };
  if (using) body.using = using;
  const answer = await call("POST", `collections/${enc(name)}/points/query`, body);
  const panel = h("div", { class: "panel", id: "similar" },
    h("h3", {}, `Similar to ${id}`),
    h("p", { class: "muted mono" }, `POST /collections/${name}/points/query `,
      JSON.stringify(body)));
  if (!answer.ok) {
    panel.append(errorBox(answer.error));
  } else {
    panel.append(h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", { class: "num" }, "score"),
        h("th", {}, "payload"))),
      h("tbody", {}, answer.result.points.map((hit) => h("tr", { "data-point-id": String(hit.id) },
        h("td", { class: "mono" }, String(hit.id)),
        h("td", { class: "num" }, hit.score.toFixed(4)),
        h("td", {}, jsonTree(hit.payload ?? {})))))));
  }
  detail.replaceChildren(panel);
}

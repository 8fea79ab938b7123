// Collections: every collection with its points, status, vectors, payload schema and
// aliases; a create form that writes the JSON body; delete with a confirmation.

import { call, enc, request } from "./api.js";
import { describeVectors, errorBox, h, jsonTree } from "./dom.js";

const DISTANCES = ["Cosine", "Dot", "Euclid", "Manhattan"];

export async function render(root, context) {
  const names = (await request("GET", "collections")).collections.map((c) => c.name).sort();
  const infos = await Promise.all(names.map((name) => describe(name)));
  root.append(h("h2", {}, "Collections"));
  const table = h("table", { id: "collections-table" },
    h("thead", {}, h("tr", {},
      h("th", {}, "name"), h("th", {}, "status"), h("th", { class: "num" }, "points"),
      h("th", {}, "vectors"), h("th", {}, "sparse"), h("th", {}, "payload schema"),
      h("th", {}, "aliases"), h("th", {}, ""))),
    h("tbody", {}, infos.map((info) => row(info, context))));
  root.append(names.length ? table : h("p", { class: "muted" }, "No collection yet."));
  root.append(createForm(context));
}

async function describe(name) {
  const [info, aliases] = await Promise.all([
    call("GET", `collections/${enc(name)}`),
    call("GET", `collections/${enc(name)}/aliases`),
  ]);
  return { name, info: info.result, error: info.error,
           aliases: (aliases.result?.aliases || []).map((a) => a.alias_name) };
}

function row({ name, info, error, aliases }, context) {
  if (!info) return h("tr", {}, h("td", {}, name), h("td", { colspan: 7 }, errorBox(error)));
  const params = info.config.params;
  const sparse = Object.keys(params.sparse_vectors || {});
  const schema = info.payload_schema || {};
  const actions = h("td", { class: "actions" },
    h("a", { href: `#/points/${enc(name)}` }, "points"), " · ",
    h("a", { href: `#/vectors/${enc(name)}` }, "vectors"), " ",
    h("button", { class: "danger write", "data-action": "delete",
                  onclick: (event) => confirmDelete(event.target, name, context) }, "Delete"));
  return h("tr", { "data-collection": name },
    h("td", {}, h("strong", {}, name)),
    h("td", { class: `status-${info.status}` }, info.status),
    h("td", { class: "num", "data-field": "points_count" }, info.points_count),
    h("td", {}, describeVectors(params.vectors)),
    h("td", {}, sparse.length ? sparse.join(", ") : "–"),
    h("td", {}, Object.keys(schema).length
      ? jsonTree(schema, { label: Object.entries(schema)
          .map(([field, s]) => `${field}: ${s.data_type}`).join(", ") })
      : "–"),
    h("td", {}, aliases.length ? aliases.join(", ") : "–"),
    actions);
}

function confirmDelete(button, name, context) {
  const cell = button.parentElement;
  const message = h("div", { class: "row confirm" },
    `Delete ${name} and all its points?`,
    h("button", { class: "danger", "data-action": "confirm-delete", onclick: async () => {
      const answer = await call("DELETE", `collections/${enc(name)}`);
      if (answer.ok) context.refresh();
      else message.replaceWith(errorBox(answer.error));
    } }, "Yes, delete"),
    h("button", { onclick: () => message.remove() }, "Cancel"));
  cell.append(message);
}

function createForm(context) {
  const name = h("input", { type: "text", id: "create-name", placeholder: "my_collection" });
  const size = h("input", { type: "number", id: "create-size", value: 4, min: 1 });
  const distance = h("select", { id: "create-distance" },
    DISTANCES.map((d) => h("option", { value: d }, d)));
  const vectorName = h("input", { type: "text", id: "create-vector-name",
                                  placeholder: "(unnamed)" });
  const body = h("textarea", { id: "create-body", rows: 6 });
  const result = h("div", { id: "create-result" });
  const writeJson = () => {
    const params = { size: Number(size.value), distance: distance.value };
    const vectors = vectorName.value.trim() ? { [vectorName.value.trim()]: params } : params;
    body.value = JSON.stringify({ vectors }, null, 2);
  };
  for (const input of [size, distance, vectorName]) input.addEventListener("input", writeJson);
  writeJson();
  const submit = async (event) => {
    event.preventDefault();
    result.replaceChildren();
    let parsed;
    try {
      parsed = JSON.parse(body.value);
    } catch (failure) {
      result.append(errorBox(`Invalid JSON: ${failure.message}`));
      return;
    }
    const answer = await call("PUT", `collections/${enc(name.value.trim())}`, parsed);
    if (answer.ok) context.refresh();
    else result.append(errorBox(answer.error));
  };
  return h("form", { class: "panel write", id: "create-form", onsubmit: submit },
    h("h3", {}, "Create a collection"),
    h("div", { class: "row" },
      h("label", {}, "name ", name), h("label", {}, "vector name ", vectorName),
      h("label", {}, "size ", size), h("label", {}, "distance ", distance)),
    h("p", { class: "muted" }, "The body sent to PUT /collections/{name} (edit it freely):"),
    body,
    h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, "Create")),
    result);
}

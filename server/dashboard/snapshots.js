// Snapshots: each collection's snapshots and the full-storage ones; create, download and
// restore by upload, with progress (XMLHttpRequest: fetch reports no upload progress).

import { authHeaders, call, enc, request } from "./api.js";
import { collectionSelect, errorBox, formatBytes, h } from "./dom.js";

export async function render(root, context) {
  const names = (await request("GET", "collections")).collections.map((c) => c.name).sort();
  root.append(h("h2", {}, "Snapshots"));
  const status = h("div", { id: "snapshots-status" });
  if (names.length) {
    const name = names.includes(context.params[0]) ? context.params[0] : names[0];
    const base = `collections/${enc(name)}/snapshots`;
    const upload = h("input", { type: "file", id: "snapshot-file", accept: ".snapshot,.tar" });
    root.append(h("div", { class: "panel" },
      h("div", { class: "row" }, "collection ",
        collectionSelect(names, name, (c) => { location.hash = `#/snapshots/${enc(c)}`; }),
        h("button", { class: "primary write", id: "snapshot-create",
                      onclick: () => create(base, status, context) }, "Create snapshot")),
      await snapshotTable(base, status, "collection-snapshots"),
      h("div", { class: "row write" }, "restore ", name, " from a file: ", upload,
        h("button", { id: "snapshot-upload", onclick: () => restore(name, upload, status) },
          "Upload and restore"))));
  }
  root.append(h("div", { class: "panel" },
    h("div", { class: "row" }, h("strong", {}, "Full storage"),
      h("button", { class: "write", id: "full-snapshot-create",
                    onclick: () => create("snapshots", status, context) },
        "Create full snapshot")),
    await snapshotTable("snapshots", status, "full-snapshots")));
  root.append(status);
}

async function snapshotTable(base, status, id) {
  const answer = await call("GET", base);
  if (!answer.ok) return errorBox(answer.error);
  if (answer.result.length === 0) return h("p", { class: "muted", id }, "No snapshot.");
  return h("table", { id },
    h("thead", {}, h("tr", {}, h("th", {}, "name"), h("th", {}, "created"),
      h("th", { class: "num" }, "size"), h("th", {}, ""))),
    h("tbody", {}, answer.result.map((snapshot) => h("tr", { "data-snapshot": snapshot.name },
      h("td", { class: "mono" }, snapshot.name),
      h("td", {}, snapshot.creation_time || "–"),
      h("td", { class: "num" }, formatBytes(snapshot.size)),
      h("td", {}, h("button", { class: "download",
        onclick: () => download(`${base}/${enc(snapshot.name)}`, snapshot.name, status) },
        "download"))))));
}

async function create(base, status, context) {
  status.replaceChildren(h("p", { class: "muted" }, "Creating…"));
  const answer = await call("POST", `${base}?wait=true`);
  if (answer.ok) context.refresh();
  else status.replaceChildren(errorBox(answer.error));
}

function withProgress(label, status) {
  const bar = h("progress", { max: 1, value: 0 });
  const text = h("span", { class: "muted" });
  status.replaceChildren(h("div", { class: "row", id: "transfer" }, label, bar, text));
  return (loaded, total) => {
    if (total) bar.value = loaded / total;
    else bar.removeAttribute("value");
    text.textContent = `${formatBytes(loaded)}${total ? ` of ${formatBytes(total)}` : ""}`;
  };
}

function send(method, path, { body = null, responseType = "", onProgress, onUpload } = {}) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, "/" + path);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.responseType = responseType;
    if (onProgress) xhr.onprogress = (event) => onProgress(event.loaded, event.total);
    if (onUpload) xhr.upload.onprogress = (event) => onUpload(event.loaded, event.total);
    xhr.onload = () => resolve(xhr);
    xhr.onerror = () => resolve(xhr);
    xhr.send(body);
  });
}

async function errorText(xhr) {
  const text = xhr.response instanceof Blob ? await xhr.response.text() : xhr.responseText;
  try {
    return JSON.parse(text).status.error;
  } catch {
    return text || `HTTP ${xhr.status}: Keel did not answer`;
  }
}

async function download(path, fileName, status) {
  const progress = withProgress(`downloading ${fileName}`, status);
  const xhr = await send("GET", path, { responseType: "blob", onProgress: progress });
  if (xhr.status !== 200) {
    status.replaceChildren(errorBox(await errorText(xhr)));
    return;
  }
  const url = URL.createObjectURL(xhr.response);
  const link = h("a", { href: url, download: fileName });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  status.append(h("p", { class: "ok" }, `downloaded ${fileName}`));
}

async function restore(name, input, status) {
  const file = input.files[0];
  if (!file) {
    status.replaceChildren(errorBox("Choose a snapshot file first."));
    return;
  }
  const form = new FormData();
  form.append("snapshot", file, file.name);
  const progress = withProgress(`uploading ${file.name} to ${name}`, status);
  const xhr = await send("POST", `collections/${enc(name)}/snapshots/upload?priority=snapshot`,
    { body: form, onUpload: progress });
  if (xhr.status === 200) status.append(h("p", { class: "ok" }, `${name} restored from ${file.name}`));
  else status.replaceChildren(errorBox(await errorText(xhr)));
}

// Durability: each collection's write path, live. Polls GET /durability (one request for
// every collection) every 2 s while this view is shown: appended / durable / applied op ids
// and the gaps between them, the unapplied bytes against their budget, fsync latency and
// records per fsync, apply batches, checkpoint age, WAL segments, the write path's state,
// followers; during startup, recovery's progress.

import { request } from "./api.js";
import { errorBox, fill, formatBytes, formatSeconds, h } from "./dom.js";
import { histogramChart, sparkline } from "./charts.js";

const POLL_MS = 2000;
const RATE_SAMPLES_MAX = 60;

export async function render(root, context) {
  const body = h("div", { id: "durability-body" });
  const updated = h("span", { class: "muted", id: "durability-updated" });
  root.append(h("h2", {}, "Durability ", updated), body);
  const history = new Map(); // collection -> [{at, applied}] for the ops/s sparkline
  context.poll(async () => {
    let data;
    try {
      data = await request("GET", "durability");
    } catch (failure) {
      body.replaceChildren(errorBox(failure.message));
      return;
    }
    const now = performance.now();
    for (const collection of data.collections) {
      const samples = history.get(collection.name) || [];
      samples.push({ at: now, applied: collection.applied_op_id });
      history.set(collection.name, samples.slice(-RATE_SAMPLES_MAX));
    }
    fill(body,
      data.ready ? null : recoveryPanel(data.recovery),
      data.collections.length === 0 && data.ready
        ? h("p", { class: "muted" }, "No collection yet.") : null,
      h("div", { class: "grid" },
        data.collections.map((c) => collectionCard(c, history.get(c.name)))));
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }, POLL_MS);
}

function recoveryPanel(recovery) {
  const progress = recovery || { collections_total: 0, collections_opened: 0 };
  return h("div", { class: "panel", id: "recovery" },
    h("h3", { class: "warn" }, "Recovering"),
    h("p", {}, `collections opened: ${progress.collections_opened} / ${progress.collections_total}`),
    progress.collection
      ? h("p", {}, `replaying ${progress.collection}: op ${progress.op_id} / ${progress.last_op_id}`,
          h("progress", { max: progress.last_op_id || 1, value: progress.op_id || 0 }))
      : null);
}

function stat(label, value, field) {
  return h("div", { class: "stat" },
    h("span", { class: "value", "data-field": field }, value),
    h("span", { class: "label" }, label));
}

function collectionCard(c, samples) {
  const isRed = c.status === "red";
  const budgetShare = c.unapplied_bytes_max ? c.unapplied_bytes / c.unapplied_bytes_max : 0;
  const rates = [];
  for (let index = 1; index < (samples || []).length; index += 1) {
    const seconds = (samples[index].at - samples[index - 1].at) / 1000;
    rates.push(seconds > 0 ? (samples[index].applied - samples[index - 1].applied) / seconds : 0);
  }
  const h_ = c.histograms;
  return h("div", { class: `panel${isRed ? " card-red" : ""}`, "data-collection": c.name },
    h("h3", {}, c.name, " ", h("span", { class: `status-${c.status}` }, c.status)),
    isRed ? errorBox(`write path closed: ${c.write_path_error}`) : null,
    h("div", { class: "row" },
      stat("appended", c.appended_op_id, "appended_op_id"),
      stat("durable", c.durable_op_id, "durable_op_id"),
      stat("applied", c.applied_op_id, "applied_op_id")),
    h("div", { class: "row" },
      stat("appended − durable", c.appended_op_id - c.durable_op_id, "fsync_gap"),
      stat("durable − applied", c.durable_op_id - c.applied_op_id, "apply_gap"),
      stat("checkpoint age", formatSeconds(c.checkpoint_age_s), "checkpoint_age")),
    h("div", {},
      h("span", { class: "label muted" }, "unapplied bytes "),
      h("span", { "data-field": "unapplied" },
        `${formatBytes(c.unapplied_bytes)} of ${formatBytes(c.unapplied_bytes_max)}`),
      h("div", { class: "bar" }, h("div", { style: `width: ${(budgetShare * 100).toFixed(1)}%` }))),
    h("div", { class: "muted" }, `applied ops/s (last ${rates.length * 2} s)`),
    sparkline(rates),
    h("div", { class: "muted" }, `WAL: ${c.wal.segments.length} segments, ${formatBytes(c.wal.bytes)}`,
      c.wal.first_op_id === null ? "" : `, from op ${c.wal.first_op_id}`),
    h("div", { class: "charts" },
    chartBlock(`fsync latency (${h_.wal_fsync_latency_s.count} fsyncs)`,
      histogramChart(h_.wal_fsync_latency_s, formatSeconds)),
    chartBlock(`records per fsync`, histogramChart(h_.wal_batch_record_count, String)),
    chartBlock(`ops per apply batch (${h_.apply_batch_op_count.count} batches)`,
      histogramChart(h_.apply_batch_op_count, String)),
    chartBlock("apply batch time", histogramChart(h_.apply_batch_latency_s, formatSeconds))),
    followersTable(c));
}

function chartBlock(title, chart) {
  return h("div", {}, h("div", { class: "muted" }, title), chart);
}

function followersTable(c) {
  if (c.followers.length === 0) return h("p", { class: "muted" }, "no followers");
  return h("table", { class: "followers" },
    h("thead", {}, h("tr", {}, h("th", {}, "follower"), h("th", { class: "num" }, "lag (ops)"),
      h("th", { class: "num" }, "WAL held"), h("th", {}, ""))),
    h("tbody", {}, c.followers.map((f) => h("tr", {},
      h("td", {}, f.name),
      h("td", { class: "num" }, f.lag_ops),
      h("td", { class: "num" },
        `${formatBytes(f.retained_bytes)} / ${formatBytes(c.follower_retention_bytes_max)}`),
      h("td", { class: f.lost_reason ? "bad" : "" }, f.lost_reason ? `lost: ${f.lost_reason}` : "")))));
}

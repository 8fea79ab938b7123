// The dashboard's shell: the API key form, the read-only switch, the hash router, and the
// polling every view shares (only the visible view polls, and only while the tab is shown).

import { apiKey, probeAccess, setApiKey } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import * as collections from "./collections.js";
import * as points from "./points.js";
import * as console_ from "./console.js";
import * as durability from "./durability.js";
import * as vectors from "./vectors.js";
import * as snapshots from "./snapshots.js";

const VIEWS = { collections, points, console: console_, durability, vectors, snapshots };
const view = document.getElementById("view");
const banner = document.getElementById("banner");
const accessLabel = document.getElementById("access");
const RECOVERY_CHECK_MS = 2000;
let stopCurrent = () => {};
let renderCount = 0;

export const state = { access: "unknown" };

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

async function checkKey() {
  const answer = await probeAccess();
  if (answer.error) {
    state.access = "refused";
    accessLabel.textContent = "";
    showBanner(`${answer.status}: ${answer.error}`);
    return false;
  }
  state.access = answer.access;
  // While Keel recovers, what the key may write is not known yet: writes stay hidden.
  document.body.classList.toggle("read-only", answer.access !== "read-write");
  accessLabel.textContent = answer.access;
  showBanner("");
  if (answer.access === "recovering") setTimeout(checkAgainAfterRecovery, RECOVERY_CHECK_MS);
  return true;
}

async function checkAgainAfterRecovery() {
  if (await checkKey() && state.access !== "recovering") route();
}

/**
 * Polls `step` every `intervalMs` while this render is current and the page is visible;
 * returns nothing, stops by itself when the view changes. Never overlaps two calls.
 */
function pollerFor(renderId) {
  return (step, intervalMs = 2000) => {
    let timer = null;
    const tick = async () => {
      timer = null;
      if (renderId !== renderCount) return;
      if (document.visibilityState === "visible") {
        try {
          await step();
        } catch (failure) {
          reportError(failure);
        }
      }
      if (renderId === renderCount) timer = setTimeout(tick, intervalMs);
    };
    tick();
    const previousStop = stopCurrent;
    stopCurrent = () => {
      previousStop();
      if (timer !== null) clearTimeout(timer);
    };
  };
}

async function route() {
  stopCurrent();
  stopCurrent = () => {};
  renderCount += 1;
  const renderId = renderCount;
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const viewName = VIEWS[name] ? name : "collections";
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === viewName);
  }
  const root = clear(view);
  root.dataset.view = viewName;
  root.append(h("p", { class: "muted" }, "Loading…"));
  const context = {
    params: rest.map(decodeURIComponent),
    poll: pollerFor(renderId),
    isCurrent: () => renderId === renderCount,
    state,
    refresh: () => route(),
  };
  try {
    const content = h("div", { class: "view", id: `view-${viewName}` });
    await VIEWS[viewName].render(content, context);
    if (renderId === renderCount) root.replaceChildren(content);
  } catch (failure) {
    if (renderId === renderCount) root.replaceChildren(errorBox(failure.message || String(failure)));
  }
}

function reportError(failure) {
  showBanner(failure?.message || String(failure));
}

// Never a blank page: whatever escapes a view is shown in the banner.
window.addEventListener("error", (event) => reportError(event.error || event.message));
window.addEventListener("unhandledrejection", (event) => reportError(event.reason));

document.getElementById("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("api-key");
  setApiKey(input.value.trim());
  input.value = "";
  if (await checkKey()) route();
  else clear(view);
});

window.addEventListener("hashchange", route);

if (apiKey()) document.getElementById("api-key").placeholder = "API key (set)";
if (await checkKey()) route();
else clear(view).append(errorBox("Type an API key above to use the dashboard."));

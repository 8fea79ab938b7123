// Keel's public HTTP API, called with the key the user typed (session storage, sent as
// `api-key`). Every call resolves to {ok, status, result, error, body, tookMs}: views show
// `error`, Keel's own error text (Qdrant's `status.error`, or the plain text of a 401).

const KEY_STORAGE = "keel-dashboard-api-key";

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export function authHeaders() {
  const key = apiKey();
  return key ? { "api-key": key } : {};
}

/** One request: `path` is relative to the server root ("collections/x/points/scroll"). */
export async function call(method, path, body) {
  const headers = authHeaders();
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const started = performance.now();
  let response;
  try {
    response = await fetch("/" + path.replace(/^\/+/, ""), init);
  } catch (failure) {
    return { ok: false, status: 0, result: null, body: null, tookMs: 0,
             error: `Keel did not answer: ${failure.message}` };
  }
  const text = await response.text();
  const tookMs = performance.now() - started;
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null; // a plain-text answer: 401, the probes, /metrics
  }
  const result = parsed && typeof parsed === "object" && "result" in parsed ? parsed.result : null;
  let error = null;
  if (!response.ok) {
    error = parsed?.status?.error || text || `HTTP ${response.status}`;
  }
  return { ok: response.ok, status: response.status, result, error,
           body: parsed === null ? text : parsed, tookMs };
}

/** Like call(), but throws ApiError on a non-2xx answer; returns `result`. */
export async function request(method, path, body) {
  const answer = await call(method, path, body);
  if (!answer.ok) throw new ApiError(answer.status, answer.error);
  return answer.result;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * What the key may do: {access: "read-write" | "read-only" | "recovering"}, or {error} for a
 * refused key. The read is GET /durability, which answers during recovery too (every other
 * call waits for it); while Keel recovers the write check would wait as well, so it is left
 * for later ("recovering"). A read-only key is told apart by a write Keel refuses before
 * reading its body: with a read-only key auth answers 403, with a read-write key (or none
 * needed) the deliberately invalid body answers 4xx from the handler, so nothing is written.
 */
export async function probeAccess() {
  const read = await call("GET", "durability");
  if (read.status === 401 || read.status === 403) return { error: read.error, status: read.status };
  if (!read.ok) return { error: read.error, status: read.status };
  if (!read.result.ready) return { access: "recovering" };
  const write = await call("POST", "collections/aliases", { actions: "probe" });
  if (write.status === 403) return { access: "read-only" };
  if (write.status === 401) return { error: write.error, status: 401 };
  return { access: "read-write" };
}

/** encodeURIComponent for a collection name in a path. */
export function enc(name) {
  return encodeURIComponent(name);
}

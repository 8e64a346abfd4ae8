// predq's dashboard: one page, hash routes, reading and acting through the /v1 API with the
// session cookie (and the session's CSRF token on every POST). Everything a job carries is shown
// with textContent, never parsed as HTML.

const STATES = ["queued", "running", "retrying", "succeeded", "failed", "canceled"];
const FINAL = new Set(["succeeded", "failed", "canceled"]);
const PHASES = {
  waiting_for_rate_limit: "waiting for the rate budget",
  waiting_for_model_slot: "waiting for a model slot",
  creating: "creating the prediction",
  starting: "starting at Replicate",
  processing: "processing",
  storing_outputs: "storing outputs",
};
const REFRESH_MS = { overview: 5000, jobs: 3000, job: 2000, workers: 5000 };

let session = null; // {role, csrf_token}
let unmount = () => {};

// ---- helpers ------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    // CSSOM, not a style attribute: the page's CSP allows no inline styles
    else if (name === "style") for (const [prop, v] of Object.entries(value)) el.style.setProperty(prop, v);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Replace el's children, leaving out the null/false that conditionals give.
function put(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const svgNS = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "fill") el.style.fill = value; // CSSOM: var() works there, and CSP allows it
    else el.setAttribute(name, value);
  }
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title);
    this.status = status;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = session ? session.csrf_token : "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401 && path !== "/session") showSignIn("Your session ended: sign in again.");
    throw new ApiError(response.status, data.title || response.statusText, data.detail);
  }
  return data;
}

function badge(state) {
  return h("span", { class: `badge s-${state}`, "data-state": state }, state);
}

function ago(iso) {
  if (!iso) return "";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  if (seconds < 1) return "just now";
  return `${duration(seconds)} ago`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86400)} d ${Math.round((seconds % 86400) / 3600)} h`;
}

function when(iso) {
  if (!iso) return "–";
  return h("time", { datetime: iso, title: new Date(iso).toLocaleString() }, ago(iso));
}

function number(n) {
  return new Intl.NumberFormat().format(n);
}

function percent(part, whole) {
  return whole ? `${((100 * part) / whole).toFixed(part && part < whole / 100 ? 2 : 1)}%` : "–";
}

function progressBar(record) {
  const known = typeof record.progress === "number";
  const bar = h("div", { class: `progress${known ? "" : " indeterminate"}`, role: "progressbar" }, h("span"));
  if (known) {
    bar.firstChild.style.width = `${Math.round(record.progress * 100)}%`;
    bar.setAttribute("aria-valuenow", String(Math.round(record.progress * 100)));
  }
  return bar;
}

function canAct() {
  return session && session.role === "full";
}

function shortId(id) {
  return id.length > 12 ? `${id.slice(0, 8)}…` : id;
}

function notice(text, bad = false) {
  return h("div", { class: `notice${bad ? " bad" : ""}`, role: bad ? "alert" : "status" }, text);
}

function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } catch (error) {
      console.warn(error);
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// ---- sign in ------------------------------------------------------------------------------

function showSignIn(message = "") {
  unmount();
  unmount = () => {};
  session = null;
  document.querySelector(".top").hidden = true;
  const view = document.getElementById("view");
  put(view, document.getElementById("sign-in").content.cloneNode(true));
  const form = view.querySelector("form");
  const error = view.querySelector(".error");
  error.textContent = message;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      session = await api("/session", { method: "POST", body: { key: form.key.value } });
      form.reset();
      start();
    } catch (failure) {
      error.textContent = failure.status === 401 ? "That key is not valid here." : failure.message;
    }
  });
  form.key.focus();
}

async function signOut() {
  await api("/session/end", { method: "POST" }).catch(() => {});
  showSignIn();
}

// ---- overview -----------------------------------------------------------------------------

function overview(view) {
  let span = 60;
  const cards = h("div", { class: "cards", id: "state-cards" });
  const health = h("div", { class: "cards", id: "health-cards" });
  const charts = h("div", { class: "grid two" });
  const spanButtons = h(
    "div",
    { class: "segmented", role: "group", "aria-label": "time span" },
    [60, 1440].map((minutes) =>
      h("button", { type: "button", class: minutes === span ? "on" : "", onclick: () => { span = minutes; refresh(); } },
        minutes === 60 ? "Last hour" : "Last day"),
    ),
  );
  put(view, 
    h("div", { class: "section-head" }, h("h1", {}, "Overview"), spanButtons),
    cards,
    health,
    charts,
  );

  async function refresh() {
    for (const button of spanButtons.children) button.classList.toggle("on", button.textContent === (span === 60 ? "Last hour" : "Last day"));
    const [stats, history, workers] = await Promise.all([
      api(`/v1/stats`),
      api(`/v1/history?minutes=${span}`),
      api(`/v1/workers`),
    ]);
    put(cards, 
      ...STATES.map((state) =>
        h("a", { class: `card state s-${state}`, href: `#/jobs?state=${state}`, "data-count": state },
          h("div", { class: "label" }, state),
          h("div", { class: "value" }, number(stats.jobs[state] || 0))),
      ),
    );
    const totals = span === 60 ? stats.last_hour : stats.last_day;
    const ended = totals.succeeded + totals.failed + totals.canceled;
    const alive = workers.filter((w) => w.alive);
    const limit = alive.reduce((most, w) => Math.max(most, w.creates_per_min || 0), 0);
    const peakCreates = Math.max(0, ...history.map((m) => m.counts.creates || 0));
    put(health, 
      card("Throughput", `${number(ended)}`, `jobs ended, ${(ended / Math.max(1, totals.minutes)).toFixed(1)}/min`),
      card("Failure rate", percent(totals.failed, ended), `${number(totals.failed)} failed, ${number(totals.retried)} retries`),
      card("Mean latency", duration(totals.mean_duration_s), "enqueue to final"),
      card("Oldest queued", stats.jobs.queued ? duration(stats.oldest_queued_age_s) : "–", "waiting to start"),
      card("Replicate budget", limit ? `${number(peakCreates)}/${number(limit)}` : number(peakCreates),
        `peak creates per minute${limit ? " against the limit" : ""}, ${number(totals.throttled)} × 429`),
      h("a", { class: "card", href: "#/workers" },
        h("div", { class: "label" }, "Workers"),
        h("div", { class: "value" }, `${stats.workers_alive}`),
        h("div", { class: "sub" }, stats.workers_dead ? `alive, ${stats.workers_dead} dead` : "alive")),
      card("Callbacks pending", number(stats.callbacks_pending), "completion callbacks owed"),
    );
    const buckets = bucket(history, span === 60 ? 1 : 30);
    put(charts, 
      chartPanel("Jobs ended per " + (span === 60 ? "minute" : "30 minutes"), buckets, [
        { key: "succeeded", color: "var(--succeeded)" },
        { key: "failed", color: "var(--failed)" },
        { key: "canceled", color: "var(--canceled)" },
      ]),
      chartPanel("Mean latency (s)", buckets.map((b) => ({ ...b, latency: b.ended ? b.duration_ms / b.ended / 1000 : 0 })), [
        { key: "latency", color: "var(--running)" },
      ], { decimals: 1 }),
      chartPanel("Replicate creates per minute", buckets.map((b) => ({ ...b, per_minute: b.creates / b.width })), [
        { key: "per_minute", color: "var(--accent)" },
      ], { limit }),
      chartPanel("429s and retries", buckets, [
        { key: "throttled", color: "var(--failed)" },
        { key: "retried", color: "var(--retrying)" },
      ]),
    );
  }

  return every(REFRESH_MS.overview, refresh);
}

function card(label, value, sub) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), h("div", { class: "sub" }, sub));
}

function bucket(history, width) {
  const out = [];
  for (let i = 0; i < history.length; i += width) {
    const slice = history.slice(i, i + width);
    const sum = (name) => slice.reduce((total, m) => total + (m.counts[name] || 0), 0);
    const b = { at: slice[0].at, width: slice.length };
    for (const name of ["succeeded", "failed", "canceled", "creates", "throttled", "retried", "duration_ms"]) b[name] = sum(name);
    b.ended = b.succeeded + b.failed + b.canceled;
    out.push(b);
  }
  return out;
}

// A bar chart (stacked when there are several series), drawn as SVG: no chart library needed.
function chartPanel(title, buckets, series, { limit = 0, decimals = 0 } = {}) {
  const width = 600;
  const height = 140;
  const pad = { left: 34, bottom: 16, top: 6 };
  const totals = buckets.map((b) => series.reduce((sum, one) => sum + (b[one.key] || 0), 0));
  const highest = Math.max(limit, ...totals);
  // the top gridline: a round number (an even count for counts, so its half is whole too)
  const ceiling = decimals ? Math.max(1, Math.ceil(highest * 2) / 2) : Math.max(2, 2 * Math.ceil(highest / 2));
  const top = ceiling * 1.1;
  const step = (width - pad.left) / Math.max(1, buckets.length);
  const y = (value) => height - pad.bottom - (value / top) * (height - pad.bottom - pad.top);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  for (const fraction of [0, 0.5, 1]) {
    const value = ceiling * fraction;
    svg.append(s("line", { class: "grid-line", x1: pad.left, x2: width, y1: y(value), y2: y(value) }));
    svg.append(s("text", { class: "axis", x: 0, y: y(value) + 3 }, value.toFixed(decimals)));
  }
  buckets.forEach((b, i) => {
    let base = 0;
    for (const one of series) {
      const value = b[one.key] || 0;
      if (value <= 0) continue;
      const rect = s("rect", {
        x: pad.left + i * step + step * 0.1,
        width: Math.max(1, step * 0.8),
        y: y(base + value),
        height: Math.max(0.5, y(base) - y(base + value)),
        fill: one.color,
      });
      rect.append(s("title", {}, `${new Date(b.at).toLocaleTimeString()}: ${value.toFixed(decimals)} ${one.key}`));
      svg.append(rect);
      base += value;
    }
  });
  if (limit) svg.append(s("line", { class: "limit", x1: pad.left, x2: width, y1: y(limit), y2: y(limit) }));
  if (buckets.length) {
    svg.append(s("text", { class: "axis", x: pad.left, y: height - 2 }, new Date(buckets[0].at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    svg.append(s("text", { class: "axis", x: width - 40, y: height - 2 }, "now"));
  }
  const legend = h("div", { class: "legend" },
    series.map((one) => h("span", {}, h("span", { class: "dot", style: { "--c": one.color } }), one.key.replace("_", " "))),
    limit ? h("span", {}, h("span", { class: "dot", style: { "--c": "var(--failed)" } }), `limit ${number(limit)}/min`) : null);
  return h("section", { class: "panel chart" }, h("h2", {}, title), svg, legend);
}

// ---- jobs ---------------------------------------------------------------------------------

const SPANS = { "": "any time", 3600: "last hour", 86400: "last day", 604800: "last week" };

function jobs(view, params) {
  const state = params.get("state") || "";
  const model = params.get("model") || "";
  const since = params.get("since") || "";
  const cursor = params.get("cursor") || "";
  const form = h("form", { class: "filters", id: "job-filters" },
    h("select", { name: "state", "aria-label": "state" },
      h("option", { value: "" }, "all states"),
      STATES.map((one) => h("option", { value: one, selected: one === state }, one))),
    h("input", { name: "model", placeholder: "model (owner/name)", value: model, "aria-label": "model" }),
    h("select", { name: "since", "aria-label": "changed since" },
      Object.entries(SPANS).map(([value, label]) => h("option", { value, selected: value === since }, label))),
    h("button", { type: "submit" }, "Filter"),
    h("span", { class: "grow" }),
    h("span", { class: "bulk" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of ["state", "model", "since"]) if (form[name].value.trim()) next.set(name, form[name].value.trim());
    location.hash = `#/jobs?${next}`;
  });
  form.state.addEventListener("change", () => form.requestSubmit());
  form.since.addEventListener("change", () => form.requestSubmit());
  const status = h("div"); // what the last bulk action did
  const problem = h("div"); // why the list could not be read
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  put(view, 
    h("div", { class: "section-head" }, h("h1", {}, "Jobs"), h("span", { class: "muted" }, "most recently changed first")),
    form,
    status,
    problem,
    h("div", { class: "panel table-wrap" },
      h("table", { id: "jobs-table" },
        h("thead", {}, h("tr", {},
          h("th", {}, "job"), h("th", {}, "state"), h("th", {}, "model"), h("th", { class: "hide-narrow" }, "progress"),
          h("th", { class: "num hide-narrow" }, "attempts"), h("th", {}, "changed"))),
        body),
      pager));
  let shown = [];

  async function refresh() {
    const query = new URLSearchParams({ limit: "50" });
    if (state) query.set("state", state);
    if (model) query.set("model", model);
    if (since) query.set("changed_after", new Date(Date.now() - Number(since) * 1000).toISOString());
    if (cursor) query.set("cursor", cursor);
    let page;
    try {
      page = await api(`/v1/jobs?${query}`);
    } catch (error) {
      put(problem, notice(error.message, true));
      return;
    }
    put(problem);
    shown = page.jobs;
    put(body, ...(shown.length ? shown.map(row) : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No jobs here."))]));
    const next = new URLSearchParams(params);
    put(pager, 
      cursor ? h("a", { href: `#/jobs?${withoutCursor(params)}` }, "← newest") : null,
      page.next_cursor ? h("a", { href: (next.set("cursor", page.next_cursor), `#/jobs?${next}`) }, "older →") : null,
    );
    renderBulk();
  }

  function renderBulk() {
    const bulk = form.querySelector(".bulk");
    if (!canAct()) return put(bulk);
    const failed = shown.filter((job) => job.state === "failed");
    const queued = shown.filter((job) => job.state === "queued");
    put(bulk, 
      failed.length ? h("button", { type: "button", id: "bulk-retry", onclick: () => act("retry", failed) }, `Retry ${failed.length} failed`) : null,
      queued.length ? h("button", { type: "button", class: "danger", id: "bulk-cancel", onclick: () => act("cancel", queued) }, `Cancel ${queued.length} queued`) : null,
    );
  }

  async function act(action, chosen) {
    if (!confirm(`${action === "retry" ? "Retry" : "Cancel"} ${chosen.length} job${chosen.length === 1 ? "" : "s"}?`)) return;
    const results = await Promise.allSettled(chosen.map((job) => api(`/v1/jobs/${job.id}/${action}`, { method: "POST" })));
    const failures = results.filter((r) => r.status === "rejected");
    put(status, 
      notice(`${action === "retry" ? "Retried" : "Canceled"} ${chosen.length - failures.length} of ${chosen.length}` +
        (failures.length ? `; ${failures[0].reason.message}` : ""), failures.length > 0));
    await refresh();
  }

  // Only the first page refreshes by itself: an older page stays as it was read.
  return cursor ? (refresh(), () => {}) : every(REFRESH_MS.jobs, refresh);
}

function withoutCursor(params) {
  const copy = new URLSearchParams(params);
  copy.delete("cursor");
  return copy;
}

function row(job) {
  return h("tr", { "data-job": job.id },
    h("td", {}, h("a", { href: `#/job/${job.id}`, class: "mono", title: job.id }, shortId(job.id))),
    h("td", {}, badge(job.state)),
    h("td", { class: "mono" }, job.model),
    h("td", { class: "hide-narrow" }, job.state !== "running" ? ""
      : typeof job.progress === "number" ? h("div", { title: PHASES[job.phase] || "" }, progressBar(job))
        : h("span", { class: "muted" }, PHASES[job.phase] || "running")),
    h("td", { class: "num hide-narrow" }, String(job.attempts)),
    h("td", {}, when(job.updated_at)));
}

// ---- one job ------------------------------------------------------------------------------

function job(view, id) {
  let record = null;
  let streamed = [];
  let changes = []; // the state events, for the timeline
  let events = null;
  let followed = false;
  let stopped = false;
  const head = h("div", { class: "job-head" });
  const live = h("section", { class: "panel", id: "live" });
  const output = h("section", { class: "panel", id: "output" });
  const facts = h("section", { class: "panel" });
  const timeline = h("section", { class: "panel" });
  const input = h("section", { class: "panel" });
  const logs = h("section", { class: "panel", id: "logs" });
  const callback = h("section", { class: "panel" });
  const status = h("div");
  put(view, head, status, live, output,
    h("div", { class: "grid two" }, h("div", {}, facts, callback), h("div", {}, timeline, input)), logs);

  function render() {
    const actions = h("div", { class: "actions" });
    if (canAct() && !FINAL.has(record.state)) actions.append(h("button", { type: "button", class: "danger", id: "cancel", onclick: () => act("cancel") }, "Cancel"));
    if (canAct() && record.state === "failed") actions.append(h("button", { type: "button", class: "primary", id: "retry", onclick: () => act("retry") }, "Retry"));
    put(head, 
      h("div", {}, h("div", { class: "muted mono" }, record.model), h("h1", { class: "mono" }, record.id)),
      h("div", { class: "actions" }, badge(record.state), actions));

    live.hidden = FINAL.has(record.state);
    if (!live.hidden) {
      const what = record.state === "running" ? PHASES[record.phase] || "running" : record.state === "retrying" ? `retrying: ${record.error ? record.error.message : ""}` : "waiting for a worker";
      put(live, h("h2", {}, "Progress"), h("p", { class: "muted", id: "phase" }, what,
        typeof record.progress === "number" ? ` · ${Math.round(record.progress * 100)}%` : ""), progressBar(record));
    }
    renderOutput();

    put(facts, h("h2", {}, "Details"), h("dl", { class: "facts" },
      fact("Prediction", record.prediction_id || "–"),
      fact("Attempts", `${record.attempts}${record.max_attempts ? ` of ${record.max_attempts}` : ""}${record.recoveries ? `, ${record.recoveries} recovered` : ""}${record.redrives ? `, retried ${record.redrives}×` : ""}`),
      fact("Idempotency key", record.idempotency_key || "–"),
      fact("Worker", record.worker || "–"),
      fact("Created", when(record.created_at)),
      fact("Started", when(record.started_at)),
      fact("Finished", when(record.finished_at)),
      fact("Duration", record.finished_at ? duration((Date.parse(record.finished_at) - Date.parse(record.created_at)) / 1000) : "–"),
      record.metrics && record.metrics.predict_time !== undefined ? fact("Predict time", duration(record.metrics.predict_time)) : null,
      fact("Streamed", record.stream ? "yes" : "no")));

    put(timeline, h("h2", {}, "Timeline"), renderTimeline(record, changes));
    put(input, h("h2", {}, "Input"), h("pre", { class: "block", id: "input" }, JSON.stringify(record.input, null, 2)));
    logs.hidden = !record.logs;
    put(logs, h("h2", {}, "Logs (tail)"), h("pre", { class: "block" }, record.logs || ""));
    callback.hidden = !record.callback_url;
    if (record.callback_url) {
      const c = record.callback || { status: "pending", attempts: 0 };
      put(callback, h("h2", {}, "Completion callback"), h("dl", { class: "facts", id: "callback" },
        fact("URL", record.callback_url),
        fact("Status", c.status),
        fact("Deliveries", String(c.attempts)),
        fact("webhook-id", c.message_id || "–"),
        c.last_error ? fact("Last error", c.last_error) : null,
        c.delivered_at ? fact("Delivered", when(c.delivered_at)) : c.last_attempt_at ? fact("Last attempt", when(c.last_attempt_at)) : null));
    }
  }

  function renderOutput() {
    put(output, h("h2", {}, "Output"));
    if (record.error && record.state === "failed") output.append(notice(`${record.error.kind}: ${record.error.message}`, true));
    if (record.files && record.files.length) {
      output.append(h("div", { class: "previews" }, record.files.map((file, n) => preview(record.id, file, n))));
    }
    const text = outputText(record);
    if (text !== null) output.append(h("pre", { class: "output-text", id: "output-text" }, text));
    else if (record.output !== null && record.output !== undefined) {
      output.append(h("pre", { class: "block", id: "output-json" }, JSON.stringify(record.output, null, 2)));
    } else if (!record.files.length && record.state !== "failed") {
      output.append(h("p", { class: "muted" }, FINAL.has(record.state) ? "No output." : "Not yet."));
    }
  }

  // Text as text: a string, or a list of strings (a language model's tokens, joined as Replicate's
  // own page joins them); while a streamed job runs, the tokens that arrived so far.
  function outputText(current) {
    if (!FINAL.has(current.state) && streamed.length) return streamed.join("");
    const value = current.output;
    if (typeof value === "string" && !current.files.length) return value;
    if (Array.isArray(value) && value.length && value.every((part) => typeof part === "string") && !current.files.length) return value.join("");
    return null;
  }

  async function act(action) {
    try {
      record = await api(`/v1/jobs/${id}/${action}`, { method: "POST" });
      put(status, notice(action === "retry" ? "Retried: the job is queued again." : "Cancel requested."));
      followed = false;
      render();
      follow();
    } catch (error) {
      put(status, notice(error.message, true));
    }
  }

  function follow() {
    if (events || followed) return;
    // The job's events from the first: the timeline, then state and progress as they happen, and
    // a streamed model's tokens as they come. A final job's end at once (with its record).
    events = new EventSource(`/v1/jobs/${id}/events`);
    streamed = [];
    changes = [];
    events.addEventListener("output", (message) => {
      streamed.push(JSON.parse(message.data).output);
      if (record) renderOutput();
    });
    events.addEventListener("state", (message) => {
      const data = JSON.parse(message.data);
      changes.push(data);
      // History older than the record read is for the timeline only (no flicker through states);
      // a newer move is shown at once, and the record read again for what else it changed
      // (attempts, worker, start), instead of at the next refresh.
      if (newer(data)) {
        record = { ...record, state: data.state, error: data.error || record.error, updated_at: data.at };
        load();
      }
      render();
    });
    events.addEventListener("progress", (message) => {
      const data = JSON.parse(message.data);
      if (!newer(data)) return;
      record = { ...record, phase: data.phase ?? record.phase, progress: data.progress ?? record.progress };
      render();
    });
    events.addEventListener("final", (message) => {
      record = JSON.parse(message.data).record;
      closeEvents();
      followed = true; // until an action starts the job again
      render();
    });
    events.onerror = () => {
      if (events && events.readyState === EventSource.CLOSED) closeEvents();
    };
  }

  function newer(event) {
    return Date.parse(event.at) >= Date.parse(record.updated_at);
  }

  function closeEvents() {
    if (events) events.close();
    events = null;
  }

  async function load() {
    try {
      const read = await api(`/v1/jobs/${id}`);
      if (!record || Date.parse(read.updated_at) >= Date.parse(record.updated_at)) record = read;
    } catch (error) {
      put(view, notice(error.status === 404 ? `No job ${id}.` : error.message, true));
      stopped = true;
      return;
    }
    render();
    follow();
  }

  const stopPolling = every(REFRESH_MS.job, async () => {
    if (stopped || (record && FINAL.has(record.state) && !events && record.callback?.status !== "pending")) return;
    await load();
  });
  return () => {
    stopped = true;
    stopPolling();
    closeEvents();
  };
}

function fact(name, value) {
  return [h("dt", {}, name), h("dd", {}, value)];
}

function preview(id, file, n) {
  const src = `/v1/jobs/${id}/files/${n}`;
  const type = file.content_type || "";
  const media = type.startsWith("image/")
    ? h("img", { src, alt: `output ${n}`, loading: "lazy" })
    : type.startsWith("video/")
      ? h("video", { src, controls: true, preload: "metadata" })
      : type.startsWith("audio/")
        ? h("audio", { src, controls: true, preload: "metadata" })
        : h("a", { href: src }, `file ${n}`);
  return h("figure", {}, media,
    h("figcaption", {}, h("a", { href: src, download: "" }, `${type || "file"} · ${number(file.size_bytes)} bytes`), " · sha256 ", h("span", { class: "mono" }, file.sha256.slice(0, 12))));
}

// The timeline: the job's state changes as its events tell them (every attempt, error and retry),
// or, when those are gone (trimmed from a long stream), what the record keeps.
function renderTimeline(record, changes) {
  const items = changes.length ? changes.map((change, n) => ({
    at: change.at,
    state: change.state,
    text: timelineText(change, changes.slice(0, n)),
  })) : recordTimeline(record);
  return h("ol", { class: "timeline", id: "timeline" }, items.map((item) =>
    h("li", { class: `s-${item.state}` }, h("div", {}, item.text), h("div", { class: "when" }, new Date(item.at).toLocaleString()))));
}

function timelineText(change, before) {
  const error = change.error ? `${change.error.kind}${change.error.status_code ? ` (HTTP ${change.error.status_code})` : ""}: ${change.error.message}` : "";
  switch (change.state) {
    case "queued": return before.length ? "queued again (retried)" : "enqueued";
    case "running": return `attempt ${1 + before.filter((c) => c.state === "running").length} started`;
    case "retrying": return `attempt failed, to be retried: ${error}`;
    case "failed": return `failed: ${error}`;
    default: return change.state;
  }
}

function recordTimeline(record) {
  const items = [{ at: record.created_at, state: "queued", text: "enqueued" }];
  if (record.started_at) items.push({ at: record.started_at, state: "running", text: "first attempt started" });
  for (const error of record.errors || []) {
    items.push({
      at: error.at,
      state: "retrying",
      text: `attempt ${error.attempt}: ${error.kind}${error.status_code ? ` (HTTP ${error.status_code})` : ""}: ${error.message}`,
    });
  }
  if (record.finished_at) items.push({ at: record.finished_at, state: record.state, text: record.state });
  return items.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
}

// ---- workers ------------------------------------------------------------------------------

function workers(view) {
  const body = h("tbody");
  put(view, 
    h("div", { class: "section-head" }, h("h1", {}, "Workers"), h("span", { class: "muted" }, "a worker that misses 3 heartbeats is shown dead")),
    h("div", { class: "panel table-wrap" },
      h("table", { id: "workers-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "worker"), h("th", {}, "host"), h("th", { class: "num" }, "pid"),
          h("th", { class: "num" }, "slots used"), h("th", { class: "num" }, "done"), h("th", { class: "num" }, "failed"),
          h("th", { class: "hide-narrow" }, "started"), h("th", {}, "last seen"))),
        body)));
  return every(REFRESH_MS.workers, async () => {
    const found = await api("/v1/workers");
    put(body, ...(found.length ? found.map((w) =>
      h("tr", { class: w.alive ? "" : "dead", "data-worker": w.id },
        h("td", {}, h("span", { class: "dot", style: { "--c": `var(${w.alive ? "--succeeded" : "--failed"})` } }), w.alive ? "alive" : "dead"),
        h("td", { class: "mono" }, w.host),
        h("td", { class: "num" }, String(w.pid)),
        h("td", { class: "num" }, `${w.in_flight} / ${w.concurrency}`),
        h("td", { class: "num" }, number(w.done)),
        h("td", { class: "num" }, number(w.failed)),
        h("td", { class: "hide-narrow" }, when(w.started_at)),
        h("td", {}, when(w.last_seen))))
      : [h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No workers have registered."))]));
  });
}

// ---- search, routing, start ---------------------------------------------------------------

async function search(query) {
  const q = query.trim();
  if (!q) return;
  const view = document.getElementById("view");
  const lookups = [];
  // A job id is 32 hex digits (anything else cannot be one: no 404 asked for)
  if (/^[0-9a-f]{32}$/.test(q)) lookups.push(() => api(`/v1/jobs/${encodeURIComponent(q)}`).then((r) => [r]).catch(() => []));
  lookups.push(() => api(`/v1/jobs?idempotency_key=${encodeURIComponent(q)}`).then((p) => p.jobs).catch(() => []));
  lookups.push(() => api(`/v1/jobs?prediction_id=${encodeURIComponent(q)}`).then((p) => p.jobs).catch(() => []));
  for (const lookup of lookups) {
    const found = await lookup();
    if (found.length) {
      location.hash = `#/job/${found[0].id}`;
      return;
    }
  }
  unmount();
  unmount = () => {};
  put(view, notice(`No job has the id, idempotency key or prediction id “${q}”.`, true));
}

function route() {
  unmount();
  const view = document.getElementById("view");
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  const page = parts[0] || "overview";
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === (page === "job" ? "jobs" : page));
  }
  if (page === "jobs") unmount = jobs(view, params);
  else if (page === "job" && parts[1]) unmount = job(view, decodeURIComponent(parts[1]));
  else if (page === "workers") unmount = workers(view);
  else unmount = overview(view);
}

function start() {
  const top = document.querySelector(".top");
  top.hidden = false;
  top.querySelector(".role").textContent = session.role === "full" ? "full access" : "read only";
  route();
}

window.addEventListener("hashchange", () => session && route());
document.querySelector(".sign-out").addEventListener("click", signOut);
document.querySelector(".search").addEventListener("submit", (event) => {
  event.preventDefault();
  search(event.target.q.value);
});

api("/session").then((found) => {
  session = found;
  start();
}).catch(() => showSignIn());

// The dashboard: a client of the public /v1 API, like any other app. Every URL is relative to
// the page's <base>, so that the page works behind a reverse proxy at a sub-path.
"use strict";

const KEY_STORAGE = "backprop.apiKey";
const POLL_MS = 2000;
const FINAL = new Set(["succeeded", "failed", "cancelled", "pruned"]);
const SERIES_COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706"];
const main = document.getElementById("main");
const live = { timer: null, stream: null, charts: [] };
let token = null; // {value, expiresAt} from POST /v1/tokens, for event streams and images
let generation = 0; // one more each time the person moves to another page
const GONE = new Error("the person moved to another page");

/** A check for a page to call after each wait: it stops the page (throwing GONE) once the
 * person has moved on, before it draws over the new page or opens a stream or timer for it. */
function visit() {
  const mine = generation;
  return () => {
    if (mine !== generation) throw GONE;
  };
}

// ---------------------------------------------------------------- DOM and formatting helpers

function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...present(children));
  return element;
}

/** ``children`` without null and undefined, which stand for "nothing here": ``append`` and
 * ``replaceChildren`` would show them as the words "null" and "undefined". */
function present(children) {
  return children.flat().filter((c) => c !== null && c !== undefined);
}

/** Show ``children`` as the page (those null or undefined left out, as in ``h``). */
function render(...children) {
  main.replaceChildren(...present(children));
}

function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  return Math.abs(value) >= 1e-3 ? value.toFixed(digits) : value.toExponential(2);
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)}%`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function seconds(from, to) {
  if (!from) return "–";
  const s = ((to ? Date.parse(to) : Date.now()) - Date.parse(from)) / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function table(headings, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", {}, text)))),
    h("tbody", {}, rows),
  );
}

/** A region that scrolls sideways, reachable by the keyboard (tab to it, then the arrow keys). */
function scrolling(label, child) {
  return h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": label }, child);
}

function status(value) {
  return h("span", { class: `status ${value}`, dataset: { status: value } }, value);
}

function progress(job) {
  return h(
    "span",
    { class: "progress" },
    h("progress", { max: job.epochs || 1, value: job.epoch }),
    h("span", { class: "muted" }, `${job.epoch} / ${job.epochs}`),
  );
}

function definitions(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function failure(error) {
  return h("p", { class: "error", role: "alert" }, error.message || String(error));
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    const details = Object.entries(error.details || {})
      .map(([field, messages]) => `${field}: ${[].concat(messages).join("; ")}`)
      .join(" · ");
    const message = error.message || `HTTP ${status}`;
    super(details && !message.includes(details) ? `${message} (${details})` : message);
    this.status = status;
    this.details = error.details || null; // {field path: [messages]}, for a form to place
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

async function request(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.ok) return response;
  const error = new ApiError(response.status, await response.json().catch(() => null));
  if (response.status === 401) askForKey(error.message);
  throw error;
}

async function api(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

/** The newest ``count`` rows of a listing, newest first (listings come oldest first, a page
 * at a time: the last page may hold a single row, so the one before it is read too). */
async function newest(path, count = 100) {
  const first = await request(`${path}?page=1&page_size=${count}`);
  const last = JSON.parse(first.headers.get("X-Pagination") || "{}").last_page || 1;
  let rows = await first.json();
  if (last > 1) {
    const pages = await Promise.all(
      [last - 1, last].map((page) => api(`${path}?page=${page}&page_size=${count}`)),
    );
    rows = pages.flat();
  }
  return rows.slice(-count).reverse();
}

/** ``path`` with the ?access_token= that event streams and images need when auth is on. */
async function withToken(path) {
  if (!apiKey()) return path;
  if (!token || token.expiresAt - Date.now() < 60_000) {
    try {
      const answer = await api("v1/tokens", { method: "POST", body: { expires_in: 3600 } });
      token = { value: answer.access_token, expiresAt: Date.parse(answer.expires_at) };
    } catch (error) {
      if (error.status === 409) return path; // AUTH=off: no token needed
      throw error;
    }
  }
  return `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token.value)}`;
}

// ---------------------------------------------------------------- the key, when auth is on

function askForKey(message) {
  stopLiveViews();
  const input = h("input", {
    type: "password",
    name: "key",
    id: "api-key",
    autocomplete: "off",
    placeholder: "bpk_…",
    required: true,
  });
  const form = h(
    "form",
    {
      id: "key-form",
      class: "card",
      onsubmit: (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY_STORAGE, input.value.trim());
        token = null;
        route();
      },
    },
    h("h2", {}, "API key"),
    h("p", {}, message),
    h(
      "p",
      { class: "muted" },
      "Make one with `backprop keys create --tenant NAME --scope write`. It is kept in this " +
        "tab's session storage only, and sent to this server only.",
    ),
    h("label", { for: "api-key" }, "Key "),
    input,
    h("button", { type: "submit" }, "Use this key"),
  );
  render(form);
  input.focus();
}

function showWho() {
  const who = document.getElementById("who");
  who.replaceChildren();
  if (!apiKey()) return;
  const forget = h(
    "button",
    {
      class: "link",
      onclick: () => {
        sessionStorage.removeItem(KEY_STORAGE);
        token = null;
        route();
      },
    },
    "forget key",
  );
  who.append(`key ${apiKey().split("_").slice(0, 2).join("_")}… `, forget);
}

// ---------------------------------------------------------------- charts

function lineChart(container, title, labels, yLabel, height = 260) {
  const width = Math.max(320, container.clientWidth || 600);
  const series = [{ label: "epoch" }].concat(
    labels.map((label, i) => ({ label, stroke: SERIES_COLORS[i], width: 2, spanGaps: true })),
  );
  const chart = new uPlot(
    {
      title,
      width,
      height,
      series,
      scales: { x: { time: false } },
      axes: [{ label: "epoch" }, { label: yLabel, size: 70 }],
    },
    [[], ...labels.map(() => [])],
    container,
  );
  live.charts.push(chart);
  return chart;
}

/** A chart of one figure per hour (``hours``: the API's ISO times) over the last day. */
function hourlyChart(container, title, hours, values, yLabel) {
  const width = Math.max(320, container.clientWidth || 600);
  const now = Date.now() / 1000;
  const chart = new uPlot(
    {
      title,
      width,
      height: 200,
      series: [{ label: "hour" }, { label: yLabel, stroke: SERIES_COLORS[0], width: 2, points: { show: true } }],
      scales: { x: { time: true, range: () => [now - 24 * 3600, now] } },
      axes: [{}, { label: yLabel, size: 70 }],
    },
    [hours.map((hour) => Date.parse(hour) / 1000), values],
    container,
  );
  live.charts.push(chart);
  return chart;
}

// ---------------------------------------------------------------- pages

async function jobsPage() {
  const here = visit();
  const body = h("tbody");
  const heading = ["compare", "job", "status", "progress", "train loss", "val loss", "val accuracy",
    "data set", "model", "created"];
  const ticked = new Set(); // the jobs to compare, kept across the list's refreshes
  const compare = h("a", { id: "compare-link", class: "button" }, "Compare");
  const showCompare = () => {
    const ids = [...ticked].sort((a, b) => a - b);
    compare.textContent = `Compare ${ids.length} jobs`;
    if (ids.length >= 2) compare.setAttribute("href", `#/compare/${ids.join(",")}`);
    else compare.removeAttribute("href");
    compare.classList.toggle("disabled", ids.length < 2);
  };
  const tick = (job) => {
    const box = h("input", { type: "checkbox", "aria-label": `compare job ${job.id}`, dataset: { compare: job.id } });
    box.checked = ticked.has(job.id);
    box.addEventListener("change", () => {
      if (box.checked) ticked.add(job.id);
      else ticked.delete(job.id);
      showCompare();
    });
    return box;
  };
  showCompare();
  render(
    h("div", { class: "title" }, h("h1", {}, "Jobs"), compare),
    h("p", { class: "muted" }, "Live: the list refreshes every two seconds. Tick two jobs or more to compare them."),
    h("table", { id: "jobs" }, h("thead", {}, h("tr", {}, heading.map((t) => h("th", {}, t)))), body),
  );
  const refresh = async () => {
    const jobs = await newest("v1/jobs");
    body.replaceChildren(
      ...jobs.map((job) =>
        h(
          "tr",
          { dataset: { job: job.id } },
          h("td", {}, tick(job)),
          h("td", {}, h("a", { href: `#/jobs/${job.id}` }, `#${job.id}`)),
          h("td", {}, status(job.status)),
          h("td", {}, progress(job)),
          h("td", { class: "num" }, fmt(job.train_loss)),
          h("td", { class: "num" }, fmt(job.val_loss)),
          h("td", { class: "num" }, percent(job.val_accuracy)),
          h("td", {}, job.dataset_id ? h("a", { href: `#/datasets/${job.dataset_id}` }, `#${job.dataset_id}`) : "–"),
          h("td", {}, job.model_id ? h("a", { href: `#/models/${job.model_id}` }, job.model_name || `#${job.model_id}`) : "–"),
          h("td", {}, when(job.created_at)),
        ),
      ),
    );
    if (!jobs.length) body.append(h("tr", {}, h("td", { colspan: heading.length }, "No jobs yet.")));
  };
  await refresh();
  here();
  live.timer = setInterval(() => refresh().catch(() => {}), POLL_MS);
}

function jobHeader(job, onCancel) {
  const active = !FINAL.has(job.status);
  return h(
    "div",
    { class: "title" },
    h("h1", {}, `Job #${job.id} `, status(job.status)),
    active && !job.cancel_requested
      ? h("button", { id: "cancel", class: "danger", onclick: onCancel }, "Cancel job")
      : null,
    job.cancel_requested && active ? h("span", { class: "muted" }, "cancelling…") : null,
    job.dataset_id ? h("a", { id: "train-again", class: "button", href: `#/datasets/${job.dataset_id}/train/from/${job.id}` }, "Train again") : null,
  );
}

function jobFacts(job) {
  return definitions([
    ["progress", progress(job)],
    ["attempt", String(job.attempt)],
    ["data set", job.dataset_id ? h("a", { href: `#/datasets/${job.dataset_id}` }, `#${job.dataset_id}`) : "–"],
    ["model", job.model_id ? h("a", { href: `#/models/${job.model_id}` }, `#${job.model_id}`) : job.model_name || "–"],
    ["created", when(job.created_at)],
    ["started", when(job.started_at)],
    ["finished", when(job.finished_at)],
    ["training time", seconds(job.started_at, job.finished_at)],
  ]);
}

async function jobPage(id) {
  const here = visit();
  let job = await api(`v1/jobs/${id}`);
  here();
  const top = h("div");
  const facts = h("div");
  const errorBox = h("div");
  const lossBox = h("div", { id: "loss-chart", class: "chart", dataset: { points: 0 } });
  const accuracyBox = h("div", { id: "accuracy-chart", class: "chart" });
  const rateBox = h("div", { id: "learning-rate-chart", class: "chart small" });
  const images = h("p", { class: "muted" });
  render(
    top,
    errorBox,
    h("section", { class: "charts" }, lossBox, accuracyBox, rateBox),
    facts,
    images,
    h("h2", {}, "Spec"),
    h("pre", { id: "spec" }, JSON.stringify({ network: job.network, training: job.training }, null, 2)),
  );
  const cancel = async () => {
    try {
      job = await api(`v1/jobs/${id}/cancel`, { method: "POST" });
      show();
    } catch (error) {
      errorBox.replaceChildren(failure(error));
    }
  };
  const show = () => {
    top.replaceChildren(jobHeader(job, cancel));
    facts.replaceChildren(jobFacts(job));
    errorBox.replaceChildren(...(job.error ? [failure({ message: job.error })] : []));
    for (const warning of job.warnings || []) errorBox.append(h("p", { class: "warning" }, warning));
  };
  show();
  const lossChart = lineChart(lossBox, "Loss", ["train", "validation"], "loss");
  const accuracyChart = lineChart(accuracyBox, "Accuracy", ["train", "validation"], "accuracy");
  // The rate each epoch trained at: flat without a schedule, its shape with one.
  const rateChart = lineChart(rateBox, "Learning rate", ["learning rate"], "rate", 150);
  const points = {
    epoch: [], train_loss: [], val_loss: [], train_accuracy: [], val_accuracy: [], learning_rate: [],
  };
  const redraw = () => {
    lossChart.setData([points.epoch, points.train_loss, points.val_loss]);
    accuracyChart.setData([points.epoch, points.train_accuracy, points.val_accuracy]);
    rateChart.setData([points.epoch, points.learning_rate]);
    lossBox.dataset.points = points.epoch.length;
  };
  const onEpoch = (event) => {
    const epoch = JSON.parse(event.data);
    const last = points.epoch[points.epoch.length - 1] || 0;
    if (epoch.epoch <= last) return; // a replay after we opened the stream again
    for (const name of Object.keys(points)) points[name].push(epoch[name]);
    job = { ...job, ...epoch };
    redraw();
    facts.replaceChildren(jobFacts(job));
  };
  const onStatus = async (event) => {
    const change = JSON.parse(event.data);
    job = { ...job, ...change };
    if (FINAL.has(change.status)) job = await api(`v1/jobs/${id}`);
    show();
  };
  const open = async () => {
    const url = await withToken(`v1/jobs/${id}/events`);
    here();
    const stream = new EventSource(url);
    live.stream = stream;
    stream.addEventListener("epoch", onEpoch);
    stream.addEventListener("status", onStatus);
    // A finished job's stream ends after its final status (it also starts with it): then the
    // browser must not reconnect. While the job runs the browser reconnects by itself, sending
    // Last-Event-ID; only a stream it gave up on (its token expired, say) is opened again
    // here, and the epochs it replays are skipped.
    stream.onerror = () => {
      if (FINAL.has(job.status)) stream.close();
      else if (stream.readyState === EventSource.CLOSED && live.stream === stream) {
        setTimeout(() => live.stream === stream && open().catch(() => {}), POLL_MS);
      }
    };
  };
  await open();
  images.replaceChildren(
    "As images: ",
    h("a", { href: await withToken(`v1/jobs/${id}/loss.svg`), target: "_blank" }, "loss.svg"),
    " · ",
    h("a", { href: await withToken(`v1/jobs/${id}/loss.png?log=true`), target: "_blank" }, "loss.png (log)"),
  );
}

async function datasetsPage() {
  const here = visit();
  const datasets = await newest("v1/datasets");
  here();
  render(
    h("div", { class: "title" }, h("h1", {}, "Data sets"), h("a", { id: "upload-link", class: "button", href: "#/datasets/upload" }, "Upload a data set")),
    table(
      ["data set", "name", "rows", "features", "task", "classes / targets", "source", "created"],
      datasets.map((d) =>
        h(
          "tr",
          { dataset: { datasetId: d.id } },
          h("td", {}, h("a", { href: `#/datasets/${d.id}` }, `#${d.id}`)),
          h("td", {}, d.name),
          h("td", { class: "num" }, fmt(d.rows)),
          h("td", { class: "num" }, fmt(d.features)),
          h("td", {}, d.task),
          h("td", {}, targetsOf(d)),
          h("td", {}, d.source),
          h("td", {}, when(d.created_at)),
        ),
      ),
      { id: "datasets" },
    ),
    datasets.length ? null : h("p", {}, "No data sets yet: upload one here, with POST /v1/datasets or `backprop datasets upload`."),
  );
}

function targetsOf(dataset) {
  if (dataset.classes) {
    const shown = dataset.classes.slice(0, 10).join(", ");
    return `${dataset.classes.length}: ${shown}${dataset.classes.length > 10 ? ", …" : ""}`;
  }
  return (dataset.target_names || []).join(", ") || `${dataset.outputs} value(s)`;
}

async function datasetPage(id) {
  const here = visit();
  const [dataset, preview] = await Promise.all([
    api(`v1/datasets/${id}`),
    api(`v1/datasets/${id}/rows?limit=20`),
  ]);
  here();
  render(
    h("div", { class: "title" },
      h("h1", {}, `Data set #${dataset.id}: ${dataset.name}`),
      h("a", { id: "train-link", class: "button", href: `#/datasets/${dataset.id}/train` }, "Train a network")),
    definitions([
        ["task", dataset.task],
        ["rows", fmt(dataset.rows)],
        ["features", fmt(dataset.features)],
        ["classes / targets", targetsOf(dataset)],
        ["source", dataset.source],
        ["created", when(dataset.created_at)],
    ]),
    h("h2", {}, `The first ${preview.features.length} rows`),
    scrolling("the first rows", previewTable(preview)),
  );
}

/** The rows of ``preview`` (GET /v1/datasets/{id}/rows), features then targets, each column in
 * one format of its own. */
function previewTable(preview) {
  const rows = preview.features.map((row, i) => [...row, ...[].concat(preview.targets[i])]);
  const columns = (rows[0] || []).map((_, j) => rows.map((row) => row[j]));
  const formats = columns.map((column) => columnFormat(column));
  const nFeatures = preview.feature_names.length;
  return table(
    [...preview.feature_names, ...preview.target_names.map((name) => `→ ${name}`)],
    rows.map((row) =>
      h("tr", {}, row.map((value, j) => h("td", { class: j < nFeatures ? "num" : "target" }, formats[j](value)))),
    ),
    { id: "preview" },
  );
}

/** How to show every value of a column alike: numbers with as many decimals as the column
 * needs (at most ``digits``), so that 5.1, 3 and 5 read 5.1, 3.0 and 5.0; in exponent form
 * when a value would round to zero; labels as they are. */
function columnFormat(values, digits = 3) {
  if (!values.every((value) => typeof value === "number")) return (value) => String(value);
  if (values.some((value) => value !== 0 && Math.abs(value) < 10 ** -digits)) {
    return (value) => value.toExponential(2);
  }
  const decimals = Math.max(0, ...values.map((value) => decimalsOf(value, digits)));
  return (value) =>
    value.toLocaleString("en", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** The fewest decimals (at most ``most``) that show ``value`` exactly. */
function decimalsOf(value, most) {
  let decimals = 0;
  while (decimals < most && Number(value.toFixed(decimals)) !== value) decimals += 1;
  return decimals;
}

function modelLabel(model) {
  return model.name ? `${model.name}:${model.version}` : `#${model.id}`;
}

async function modelsPage() {
  const here = visit();
  const models = await newest("v1/models");
  here();
  render(
    h("h1", {}, "Models"),
    table(
      ["model", "name", "aliases", "task", "architecture", "val accuracy", "val loss", "created"],
      models.map((m) =>
        h(
          "tr",
          { dataset: { model: m.id } },
          h("td", {}, h("a", { href: `#/models/${m.id}` }, `#${m.id}`)),
          h("td", {}, modelLabel(m)),
          h("td", {}, (m.aliases || []).join(", ") || "–"),
          h("td", {}, m.task),
          h("td", {}, [m.n_features, ...m.network.layers.map((l) => `${l.units} ${l.activation}`)].join(" → ")),
          h("td", { class: "num" }, percent(m.metrics.val_accuracy ?? m.metrics.train_accuracy)),
          h("td", { class: "num" }, fmt(m.metrics.val_loss ?? m.metrics.train_loss)),
          h("td", {}, when(m.created_at)),
        ),
      ),
      { id: "models" },
    ),
    models.length ? null : h("p", {}, "No models yet: a job that succeeds stores one."),
  );
}

function architecture(model) {
  let inputs = model.n_features;
  let total = 0;
  const input = h(
    "div",
    { class: "layer input" },
    h("strong", {}, `${inputs}`),
    h("span", {}, "inputs"),
    h("span", { class: "muted" }, model.standardization ? "standardized" : "raw"),
  );
  const layers = model.network.layers.map((layer, i) => {
    const weights = inputs * layer.units + layer.units;
    total += weights;
    inputs = layer.units;
    const block = h(
      "div",
      { class: "layer", dataset: { units: layer.units } },
      h("strong", {}, `${layer.units}`),
      h("span", {}, layer.activation),
      h("span", { class: "muted" }, `${fmt(weights)} weights`),
      h("span", { class: "muted" }, i === model.network.layers.length - 1 ? "output" : `hidden ${i + 1}`),
    );
    // Taller for wider layers (a style property, which the page's CSP allows; a style attribute it would not).
    block.style.minHeight = `${Math.round(Math.min(160, 28 + 14 * Math.log2(layer.units + 1)))}px`;
    return block;
  });
  const row = h("div", { class: "architecture", id: "architecture" });
  for (const block of [input, ...layers]) {
    if (row.childElementCount) row.append(h("span", { class: "arrow" }, "→"));
    row.append(block);
  }
  return h("section", {}, h("h2", {}, `Architecture: ${fmt(total)} weights`), row);
}

function parseRows(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith("[")) {
    const parsed = JSON.parse(trimmed);
    return Array.isArray(parsed[0]) ? parsed : [parsed];
  }
  return trimmed
    .split(/\n+/)
    .filter((line) => line.trim())
    .map((line) => line.trim().split(/[\s,;]+/).map(Number));
}

function predictionTable(answer, rows) {
  return table(
    ["row", "prediction", "probability"],
    answer.predictions.map((prediction, i) =>
      h(
        "tr",
        {},
        h("td", {}, String(i + 1)),
        h("td", { class: "prediction" }, Array.isArray(prediction) ? prediction.map((v) => fmt(v)).join(", ") : fmt(prediction)),
        h("td", { class: "num" }, answer.probabilities ? percent(Math.max(...answer.probabilities[i])) : "–"),
      ),
    ),
    { id: "predictions", dataset: { rows: rows.length } },
  );
}

// A model whose signature names at most this many inputs gets one labelled field per input.
const MAX_NAMED_FIELDS = 32;

// The form explains its first rows only: each costs 64 forward and backward passes of the model.
const EXPLAINED_ROWS = 10;

/** Integrated Gradients (of each row's predicted class) of the first rows of a predict body,
 * ``instances`` or ``records``, from the API. */
function explainRows(ref, sent) {
  const body = sent.instances
    ? { instances: sent.instances.slice(0, EXPLAINED_ROWS) }
    : { records: sent.records.slice(0, EXPLAINED_ROWS) };
  return api(`v1/models/${encodeURIComponent(ref)}/explain`, { method: "POST", body });
}

function whyHeading(row, i) {
  return h(
    "p",
    { class: "why-heading" },
    h("strong", {}, `Row ${i + 1} → ${fmt(row.target)}`),
    ` f = ${fmt(row.f_x)}, at the baseline ${fmt(row.f_baseline)}`,
  );
}

/** One row's attributions as signed bars beside each feature's value: right and green for
 * what pushed the output up, left and red for what pulled it down, scaled to the largest. */
function attributionBars(row, values) {
  const entries = Object.entries(row.attributions);
  const largest = Math.max(...entries.map(([, a]) => Math.abs(a))) || 1;
  return h(
    "div",
    { class: "attributions" },
    entries.map(([name, a], j) => {
      const bar = h("span", { class: `bar ${a >= 0 ? "positive" : "negative"}` });
      bar.style.width = `${(50 * Math.abs(a)) / largest}%`; // a style property: the CSP allows it
      return h(
        "div",
        { class: "attribution", dataset: { feature: name, attribution: String(a) } },
        h("span", { class: "feature" }, name),
        h("span", { class: "num" }, fmt(values[j])),
        h("span", { class: "track" }, bar),
        h("span", { class: "num" }, fmt(a)),
      );
    }),
  );
}

/** The 64 attributions of an 8x8 digit over the digit itself: its ink in grey, then green
 * where a pixel spoke for the class, red where against, as strong as the attribution. */
function heatMap(features, attributions, attrs = {}) {
  const canvas = h("canvas", { class: "heat", width: 64, height: 64, ...attrs });
  canvas.dataset.attributions = attributions.join(",");
  const g = canvas.getContext("2d");
  const largest = Math.max(...attributions.map(Math.abs)) || 1;
  features.forEach((value, i) => {
    const [x, y] = [8 * (i % 8), 8 * Math.floor(i / 8)];
    const shade = 255 - Math.round((255 * Math.min(value, 16)) / 16);
    g.fillStyle = `rgb(${shade},${shade},${shade})`;
    g.fillRect(x, y, 8, 8);
    const a = attributions[i];
    g.fillStyle = a >= 0 ? `rgba(5,150,105,${(0.85 * a) / largest})` : `rgba(220,38,38,${(-0.85 * a) / largest})`;
    g.fillRect(x, y, 8, 8);
  });
  return canvas;
}

function explanations(model, result, rows) {
  const shown = result.explanations.map((row, i) =>
    h(
      "div",
      { class: "why" },
      whyHeading(row, i),
      isDigitsModel(model) ? heatMap(rows[i], Object.values(row.attributions)) : attributionBars(row, rows[i]),
    ),
  );
  const more = rows.length > EXPLAINED_ROWS ? h("p", { class: "muted" }, `The first ${EXPLAINED_ROWS} rows are explained.`) : null;
  return h(
    "div",
    { id: "why" },
    h("h3", {}, "Why: Integrated Gradients from the training mean"),
    h("p", { class: "muted" }, "Each feature's share of the change in the predicted class's probability; they add up to f − f(baseline)."),
    shown,
    more,
  );
}

function predictForm(model, ref, exampleRows) {
  const signature = model.signature;
  if (signature && signature.named && signature.inputs.length <= MAX_NAMED_FIELDS) {
    return namedPredictForm(model, ref, signature, exampleRows[0]);
  }
  const text = h("textarea", { id: "rows", rows: 6, spellcheck: "false" });
  text.value = exampleRows.map((row) => row.join(", ")).join("\n");
  const names = signature ? signature.inputs.map((input) => input.name) : [];
  const label = signature && signature.named
    ? `One row per line, ${model.n_features} numbers each, in input order (${names.join(", ")}), or a JSON list of rows:`
    : `One row per line, ${model.n_features} numbers each (or a JSON list of rows):`;
  return predictSection(model, ref, h("label", { for: "rows" }, label), text, () => ({ instances: parseRows(text.value) }));
}

/** One number field per input of the signature, labelled by its name, sent as ``records``. */
function namedPredictForm(model, ref, signature, example) {
  const fields = signature.inputs.map((input, i) =>
    h("input", {
      id: `input-${i}`,
      name: input.name,
      type: "number",
      step: "any",
      required: true,
      value: example ? example[i] : input.mean ?? 0,
      title: input.min === null ? input.dtype : `${input.dtype}, trained on ${fmt(input.min)} to ${fmt(input.max)}`,
    }),
  );
  const grid = h(
    "div",
    { class: "named-inputs" },
    fields.map((field) => h("label", {}, h("span", {}, field.name), field)),
  );
  const record = () => ({ records: [Object.fromEntries(fields.map((field) => [field.name, Number(field.value)]))] });
  return predictSection(model, ref, h("p", {}, "One row, each input by name:"), grid, record);
}

function predictSection(model, ref, label, inputs, body) {
  const answer = h("div", { id: "answer" });
  const why = h("div");
  const form = h(
    "form",
    {
      id: "predict-form",
      onsubmit: async (event) => {
        event.preventDefault();
        why.replaceChildren();
        let sent;
        try {
          sent = body();
          const result = await api(`v1/models/${encodeURIComponent(ref)}/predict`, { method: "POST", body: sent });
          answer.replaceChildren(predictionTable(result, sent.instances || sent.records));
        } catch (error) {
          answer.replaceChildren(failure(error));
          return;
        }
        try {
          // Each row's values in input order (a record's fields are made in that order).
          const rows = sent.instances || sent.records.map((record) => Object.values(record));
          why.replaceChildren(explanations(model, await explainRows(ref, sent), rows));
        } catch (error) {
          why.replaceChildren(failure(error));
        }
      },
    },
    label,
    inputs,
    h("button", { type: "submit" }, "Predict"),
  );
  return h("section", {}, h("h2", {}, "Predict"), form, answer, why);
}

/** The model's contract: its inputs with the profile of the rows it trained on, its outputs, and
 * a link to its own OpenAPI document. */
async function contractSection(model, ref) {
  const signature = model.signature;
  if (!signature) return null;
  const stat = (value) => h("td", { class: "num" }, value === null ? "–" : fmt(value));
  const outputs = signature.outputs.classes
    ? `classes (${signature.outputs.type}): ${signature.outputs.classes.join(", ")}`
    : `targets: ${signature.outputs.targets.join(", ")}`;
  return h(
    "section",
    { id: "contract" },
    h("h2", {}, "Contract"),
    h(
      "p",
      {},
      h("a", { id: "model-openapi", href: await withToken(`v1/models/${encodeURIComponent(ref)}/openapi.json`), target: "_blank" }, "OpenAPI document"),
      ` · ${outputs}`,
      signature.named ? "" : " · positional inputs: the training data named none",
    ),
    signature.inputs.length <= MAX_NAMED_FIELDS
      ? table(
          ["input", "dtype", "min", "max", "mean", "std"],
          signature.inputs.map((input) =>
            h("tr", {}, h("td", {}, input.name), h("td", {}, input.dtype), stat(input.min), stat(input.max), stat(input.mean), stat(input.std)),
          ),
          { id: "inputs" },
        )
      : h("p", { class: "muted" }, `${signature.inputs.length} inputs: ${signature.inputs.slice(0, 8).map((input) => input.name).join(", ")}, ...`),
  );
}

const WEBHOOK_DELIVERIES_SHOWN = 5;

/** Whether a webhook delivery's event is about ``model`` (its name, or the model itself). */
function concerns(delivery, model) {
  const data = delivery.data || {};
  return data.model_id === model.id || (model.name !== null && data.name === model.name);
}

/** The last deliveries of the tenant's webhooks that concern this model; null for a key that
 * may not see webhooks (they need an admin key). */
async function webhookSection(model) {
  let hooks;
  try {
    hooks = await api("v1/webhooks?page_size=20");
  } catch (error) {
    if (error.status === 403) return null;
    throw error;
  }
  if (!hooks.length) return null;
  const lists = await Promise.all(hooks.map((hook) => api(`v1/webhooks/${hook.id}/deliveries?page_size=100`)));
  const rows = lists
    .flatMap((deliveries, i) => deliveries.filter((d) => concerns(d, model)).map((d) => [hooks[i], d]))
    .sort(([, a], [, b]) => Date.parse(b.created_at) - Date.parse(a.created_at))
    .slice(0, WEBHOOK_DELIVERIES_SHOWN);
  const lastAnswer = (delivery) => {
    const last = delivery.attempts[delivery.attempts.length - 1];
    if (!last) return "–";
    return last.status_code ?? (last.finished_at ? last.error : "lost");
  };
  return h(
    "section",
    { id: "webhooks" },
    h("h2", {}, "Webhooks"),
    rows.length
      ? table(
          ["event", "webhook", "status", "attempts", "last answer", "created"],
          rows.map(([hook, delivery]) =>
            h(
              "tr",
              {},
              h("td", {}, delivery.type),
              h("td", {}, hook.url),
              h("td", {}, status(delivery.status)),
              h("td", { class: "num" }, String(delivery.attempts.length)),
              h("td", {}, String(lastAnswer(delivery))),
              h("td", {}, when(delivery.created_at)),
            ),
          ),
          { id: "webhook-deliveries" },
        )
      : h("p", { class: "muted" }, "No delivery about this model yet."),
  );
}

// The 8x8 digits of scikit-learn: 32x32 bitmaps of a digit scaled to fill the box, then the
// count of inked pixels in each 4x4 block (0 to 16). A drawing goes through the same steps.
function digitFeatures(canvas) {
  const { width, height } = canvas;
  const ink = canvas.getContext("2d").getImageData(0, 0, width, height).data;
  let [left, top, right, bottom] = [width, height, -1, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (ink[4 * (y * width + x) + 3] > 64) {
        left = Math.min(left, x); right = Math.max(right, x);
        top = Math.min(top, y); bottom = Math.max(bottom, y);
      }
    }
  }
  if (right < 0) return null;
  const side = Math.max(right - left, bottom - top) + 1;
  const small = h("canvas", { width: 32, height: 32 }).getContext("2d");
  const x0 = left - (side - (right - left + 1)) / 2;
  const y0 = top - (side - (bottom - top + 1)) / 2;
  small.drawImage(canvas, x0, y0, side, side, 2, 2, 28, 28);
  const bits = small.getImageData(0, 0, 32, 32).data;
  const features = new Array(64).fill(0);
  for (let i = 0; i < 32 * 32; i++) {
    if (bits[4 * i + 3] > 96) features[8 * Math.floor(i / 32 / 4) + Math.floor((i % 32) / 4)] += 1;
  }
  return features;
}

function digitPad(ref) {
  const canvas = h("canvas", { id: "digit-canvas", width: 192, height: 192 });
  const grid = h("canvas", { id: "digit-grid", width: 64, height: 64 });
  const answer = h("div", { id: "digit-answer", class: "digit-answer" }, "Draw a digit.");
  let heat = h("canvas", { id: "digit-heat", class: "heat", width: 64, height: 64 });
  const pen = canvas.getContext("2d");
  pen.lineWidth = 16;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.strokeStyle = "#111";
  let drawing = false;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
  };
  const showGrid = (features) => {
    grid.dataset.features = features.join(","); // what was sent, for a test to send it too
    const g = grid.getContext("2d");
    features.forEach((value, i) => {
      const shade = 255 - Math.round((255 * value) / 16);
      g.fillStyle = `rgb(${shade},${shade},${shade})`;
      g.fillRect(8 * (i % 8), 8 * Math.floor(i / 8), 8, 8);
    });
  };
  const predict = async () => {
    const features = digitFeatures(canvas);
    if (!features) return;
    showGrid(features);
    try {
      const result = await api(`v1/models/${encodeURIComponent(ref)}/predict`, {
        method: "POST",
        body: { instances: [features] },
      });
      const p = result.probabilities ? Math.max(...result.probabilities[0]) : null;
      answer.replaceChildren(h("strong", { id: "digit-prediction" }, String(result.predictions[0])), p === null ? "" : ` (${percent(p)})`);
      const explained = (await explainRows(ref, { instances: [features] })).explanations[0];
      heat.replaceWith((heat = heatMap(features, Object.values(explained.attributions), { id: "digit-heat" })));
    } catch (error) {
      answer.replaceChildren(failure(error));
    }
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    pen.beginPath();
    pen.moveTo(...at(event));
    pen.lineTo(...at(event));
    pen.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    pen.lineTo(...at(event));
    pen.stroke();
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    predict();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  const clear = h("button", {
    type: "button",
    id: "digit-clear",
    onclick: () => {
      pen.clearRect(0, 0, canvas.width, canvas.height);
      grid.getContext("2d").clearRect(0, 0, grid.width, grid.height);
      heat.getContext("2d").clearRect(0, 0, heat.width, heat.height);
      answer.replaceChildren("Draw a digit.");
    },
  }, "Clear");
  return h(
    "section",
    {},
    h("h2", {}, "Draw a digit"),
    h(
      "div",
      { class: "digit-pad" },
      canvas,
      h("div", {}, h("p", { class: "muted" }, "What the model sees (8 × 8):"), grid, answer, clear),
      h("div", {}, h("p", { class: "muted" }, "Why: green for, red against"), heat),
    ),
  );
}

/** How a PSI compares with DRIFT_PSI: "ok" under half of it, "watch" up to it, "drifted" above. */
function psiLevel(psi, threshold) {
  if (psi > threshold) return "drifted";
  return psi > threshold / 2 ? "watch" : "ok";
}

/** One bar per feature, its length the feature's PSI (full width: twice DRIFT_PSI), coloured by
 * the threshold; a message instead when the day has too few rows. */
function driftBars(version, thresholds) {
  if (!version.features) return h("p", { id: "drift", class: "muted" }, version.message);
  const bar = (name, psi) => {
    const level = psiLevel(psi, thresholds.psi);
    const fill = h("span", { class: `bar ${level}` });
    fill.style.width = `${Math.min(100, (50 * psi) / thresholds.psi)}%`; // CSSOM: the CSP allows it
    return h(
      "div",
      { class: "drift-row", dataset: { feature: name, level } },
      h("span", { class: "drift-name" }, name),
      h("span", { class: "drift-track" }, fill),
      h("span", { class: "num" }, fmt(psi, 3)),
    );
  };
  return h(
    "div",
    { id: "drift" },
    h("p", { class: "muted" }, `PSI per feature over ${version.rows} rows of the last day (drifted above ${thresholds.psi}):`),
    ...version.features.map((feature) => bar(feature.name, feature.psi)),
  );
}

/** The model's last day in service: predictions per hour, live accuracy per hour (once labels
 * were fed back), and drift per feature against its training rows. */
async function liveSection(model) {
  const ref = encodeURIComponent(String(model.id));
  const [performance, drift] = await Promise.all([
    api(`v1/models/${ref}/performance?window=1d`),
    api(`v1/models/${ref}/drift?window=1d`),
  ]);
  const [version] = performance.versions;
  const hours = version.hourly.map((hour) => hour.hour);
  const accuracy = version.accuracy === undefined ? "" : ` · live accuracy ${percent(version.accuracy)}`;
  const countsBox = h("div", { id: "predictions-per-hour", class: "chart" });
  const accuracyBox = h("div", { id: "live-accuracy", class: "chart" });
  const section = h(
    "section",
    { id: "live" },
    h("h2", {}, "Live"),
    h("p", {}, `${version.predictions} predictions in the last day · ${version.labelled} labelled${accuracy}`),
    hours.length ? countsBox : null,
    version.hourly.some((hour) => hour.accuracy !== null) ? accuracyBox : null,
    driftBars(drift.versions[0], drift.thresholds),
  );
  if (hours.length) {
    hourlyChart(countsBox, "Predictions per hour", hours, version.hourly.map((hour) => hour.predictions), "predictions");
    hourlyChart(accuracyBox, "Live accuracy", hours, version.hourly.map((hour) => hour.accuracy), "accuracy");
  }
  return section;
}

/** Aliases (GET /v1/models/{name}/aliases/{alias} answers) as a table: each one's canary split
 * (each version's share and the requests it served) and its shadow's agreement. */
function aliasTable(aliases, id) {
  const share = (arm, arms) => percent(arm.weight / arms.reduce((sum, a) => sum + a.weight, 0));
  const shadowText = (shadow) => {
    if (!shadow) return "–";
    const agreement = shadow.agreement ?? null;
    const figure = agreement !== null ? `${percent(agreement)} agree` : shadow.mean_abs_difference !== null && shadow.mean_abs_difference !== undefined ? `mean |Δ| ${fmt(shadow.mean_abs_difference)}` : "nothing compared yet";
    return `v${shadow.version} (${percent(shadow.sample)} of requests): ${figure}, ${fmt(shadow.requests_compared)} compared, ${fmt(shadow.requests_dropped)} dropped`;
  };
  return table(
    ["alias", "versions (share, requests served)", "shadow"],
    aliases.map((alias) =>
      h(
        "tr",
        { dataset: { alias: alias.alias } },
        h("td", {}, `@${alias.alias}`),
        h("td", { class: "split" }, alias.versions.map((arm) => `v${arm.version}: ${share(arm, alias.versions)}, ${fmt(arm.served)}`).join(" · ")),
        h("td", { class: "shadow" }, shadowText(alias.shadow)),
      ),
    ),
    { id },
  );
}

/** Each alias that points at this version, as ``aliasTable`` shows it. */
async function rolloutSection(model) {
  if (!model.name || !(model.aliases || []).length) return null;
  const aliases = await Promise.all(
    model.aliases.map((alias) => api(`v1/models/${encodeURIComponent(model.name)}/aliases/${encodeURIComponent(alias)}`)),
  );
  return h("section", { id: "rollout" }, h("h2", {}, "Rollout"), aliasTable(aliases, "aliases"));
}

/** The models ``model`` was fine-tuned from, its parent first, each a link (a deleted one is
 * named, not linked: its own parent is unknown); "fresh weights" for a model that has none. */
function lineage(model) {
  const ancestors = model.lineage || [];
  if (!ancestors.length) return h("span", { id: "lineage", class: "muted" }, "fresh weights");
  const steps = ancestors.map((a) =>
    a.deleted
      ? h("span", { class: "muted", dataset: { ancestor: a.model_id } }, `#${a.model_id} (deleted)`)
      : h("a", { href: `#/models/${a.model_id}`, dataset: { ancestor: a.model_id } },
          a.name ? `#${a.model_id} ${a.name}:${a.version}` : `#${a.model_id}`),
  );
  return h("span", { id: "lineage" }, "fine-tuned from ", steps.flatMap((step, i) => (i ? [" ← ", step] : [step])));
}

function isDigitsModel(model) {
  return model.task === "classification" && model.n_features === 64 && (model.classes || []).length === 10;
}

async function modelPage(ref) {
  const here = visit();
  const model = await api(`v1/models/${encodeURIComponent(ref)}`);
  const preview = model.dataset_id
    ? await api(`v1/datasets/${model.dataset_id}/rows?limit=3`).catch(() => null)
    : null;
  here();
  const metrics = Object.entries(model.metrics || {}).filter(([, value]) => value !== null);
  render(
    h("h1", {}, `Model #${model.id}`, model.name ? ` · ${modelLabel(model)}` : ""),
    definitions([
        ["name", model.name || "–"],
        ["version", model.version ?? "–"],
        ["aliases", (model.aliases || []).map((a) => `@${a}`).join(", ") || "–"],
        ["task", model.task],
        ["classes", model.classes ? model.classes.join(", ") : "–"],
        ["job", h("a", { href: `#/jobs/${model.job_id}` }, `#${model.job_id}`)],
        ["lineage", lineage(model)],
        ["data set", model.dataset_id ? h("a", { href: `#/datasets/${model.dataset_id}` }, `#${model.dataset_id}`) : "–"],
        ["created", when(model.created_at)],
        ...metrics.map(([name, value]) => [name.replaceAll("_", " "), name.includes("accuracy") ? percent(value) : fmt(value)]),
    ]),
    architecture(model),
    await contractSection(model, ref),
    await rolloutSection(model),
    await webhookSection(model),
    await liveSection(model),
    isDigitsModel(model) ? digitPad(ref) : null,
    predictForm(model, ref, preview ? preview.features : [new Array(model.n_features).fill(0)]),
    manageSection(model),
  );
}

function params(values) {
  const text = (value) => (value !== null && typeof value === "object" ? JSON.stringify(value) : fmt(value));
  return Object.entries(values || {}).map(([path, value]) => `${path}=${text(value)}`).join(" ");
}

async function sweepsPage() {
  const here = visit();
  const sweeps = await newest("v1/sweeps");
  here();
  render(
    h("h1", {}, "Sweeps"),
    table(
      ["sweep", "status", "data set", "search", "trials", "metric", "model name", "created"],
      sweeps.map((sweep) =>
        h(
          "tr",
          { dataset: { sweep: sweep.id } },
          h("td", {}, h("a", { href: `#/sweeps/${sweep.id}` }, `#${sweep.id}`)),
          h("td", {}, status(sweep.status)),
          h("td", {}, sweep.dataset_id ? h("a", { href: `#/datasets/${sweep.dataset_id}` }, `#${sweep.dataset_id}`) : "–"),
          h("td", {}, sweep.search.method),
          h("td", { class: "num" }, fmt(sweep.n_trials)),
          h("td", {}, `${sweep.metric} (${sweep.goal})`),
          h("td", {}, sweep.model_name || "–"),
          h("td", {}, when(sweep.created_at)),
        ),
      ),
      { id: "sweeps" },
    ),
    sweeps.length ? null : h("p", {}, "No sweeps yet: POST /v1/sweeps starts one."),
  );
}

function leaderboard(sweep) {
  return table(
    ["rank", "trial", "job", "status", "parameters", sweep.metric, "epoch", "seconds", "rungs"],
    sweep.leaderboard.map((entry, i) =>
      h(
        "tr",
        { dataset: { trial: entry.trial }, class: entry.job_id === sweep.best_job_id ? "best" : null },
        h("td", { class: "num" }, entry.metric === null ? "–" : String(i + 1)),
        h("td", { class: "num" }, String(entry.trial)),
        h("td", {}, h("a", { href: `#/jobs/${entry.job_id}` }, `#${entry.job_id}`)),
        h("td", {}, status(entry.status)),
        h("td", {}, params(entry.params)),
        h("td", { class: "num" }, fmt(entry.metric)),
        h("td", { class: "num" }, fmt(entry.epoch)),
        h("td", { class: "num" }, fmt(entry.seconds, 2)),
        h("td", {}, (entry.rungs || []).map((rung) => `${rung.epoch}${rung.pruned ? " ✗" : " ✓"}`).join(" ")),
      ),
    ),
    { id: "leaderboard" },
  );
}

/** Every trial's ``metric`` per epoch on one chart, read from each job's stored epochs. */
async function sweepPage(id) {
  const here = visit();
  let sweep = await api(`v1/sweeps/${id}`);
  here();
  const top = h("div");
  const board = h("div");
  const chartBox = h("div", { id: "sweep-chart", class: "chart", dataset: { points: 0 } });
  render(top, chartBox, h("h2", {}, "Leaderboard"), board);
  const histories = new Map(); // job id -> values of the metric, by epoch (index epoch - 1)
  const complete = new Set(); // trials that ended, read after they did
  let chart = null;
  let series = [];
  const cancel = async () => {
    try {
      await api(`v1/sweeps/${id}/cancel`, { method: "POST" });
      await refresh();
    } catch (error) {
      top.append(failure(error));
    }
  };
  const draw = () => {
    const jobs = [...histories.keys()].sort((a, b) => a - b);
    const longest = Math.max(0, ...[...histories.values()].map((values) => values.length));
    const x = Array.from({ length: longest }, (_, i) => i + 1);
    const data = [x, ...jobs.map((job) => x.map((_, i) => histories.get(job)[i] ?? null))];
    if (!chart || series.join() !== jobs.join()) {
      if (chart) chart.destroy();
      live.charts = live.charts.filter((c) => c !== chart);
      chartBox.replaceChildren();
      chart = new uPlot(
        {
          title: `${sweep.metric} of every trial`,
          width: Math.max(320, chartBox.clientWidth || 900),
          height: 320,
          scales: { x: { time: false } },
          axes: [{ label: "epoch" }, { label: sweep.metric, size: 70 }],
          series: [{ label: "epoch" }].concat(
            jobs.map((job, i) => ({ label: `job ${job}`, stroke: `hsl(${(i * 137) % 360} 70% 45%)`, width: 1.5, spanGaps: true })),
          ),
        },
        data,
        chartBox,
      );
      live.charts.push(chart);
      series = jobs;
    } else chart.setData(data);
    chartBox.dataset.points = [...histories.values()].reduce((n, values) => n + values.length, 0);
  };
  const readEpochs = async (entry) => {
    const values = histories.get(entry.job_id) || [];
    histories.set(entry.job_id, values);
    const epochs = await api(`v1/jobs/${entry.job_id}/epochs?after=${values.length}&limit=10000`);
    for (const epoch of epochs) values[epoch.epoch - 1] = epoch[sweep.metric];
  };
  const refresh = async () => {
    sweep = await api(`v1/sweeps/${id}`);
    const active = !FINAL.has(sweep.status);
    top.replaceChildren(
      h(
        "div",
        { class: "title" },
        h("h1", {}, `Sweep #${sweep.id} `, status(sweep.status)),
        sweep.leaderboard.length > 1
          ? h("a", { id: "compare-trials", class: "button", href: `#/compare/${sweep.leaderboard.map((e) => e.job_id).join(",")}` }, "Compare the trials")
          : null,
        active ? h("button", { id: "cancel-sweep", class: "danger", onclick: cancel }, "Cancel sweep") : null,
      ),
      definitions([
        ["search", `${sweep.search.method}, ${sweep.n_trials} trials, ${sweep.max_parallel} at a time`],
        ["trials", Object.entries(sweep.counts).filter(([, n]) => n).map(([state, n]) => `${n} ${state}`).join(", ")],
        ["metric", `${sweep.metric} (${sweep.goal})`],
        ["early termination", sweep.early_termination ? `ASHA from epoch ${sweep.early_termination.min_epochs}, factor ${sweep.early_termination.reduction_factor}` : "none"],
        ["best", sweep.best_job_id ? h("a", { href: `#/jobs/${sweep.best_job_id}` }, `job #${sweep.best_job_id}`) : "–"],
        ["model", sweep.model_id ? h("a", { href: `#/models/${sweep.model_id}` }, sweep.model_name || `#${sweep.model_id}`) : sweep.model_name || "–"],
        ["created", when(sweep.created_at)],
        ["finished", when(sweep.finished_at)],
      ]),
    );
    board.replaceChildren(leaderboard(sweep));
    // Every trial until it has been read once since it ended (its epochs are stored by then).
    const unread = sweep.leaderboard.filter((entry) => !complete.has(entry.job_id));
    await Promise.all(unread.map(readEpochs));
    for (const entry of unread) if (FINAL.has(entry.status)) complete.add(entry.job_id);
    draw();
    if (!active) clearInterval(timer);
  };
  let timer = null;
  await refresh();
  here();
  if (!FINAL.has(sweep.status)) {
    timer = setInterval(() => refresh().catch(() => {}), POLL_MS);
    live.timer = timer;
  }
}

// ---------------------------------------------------------------- routing

const ROUTES = [
  [/^#\/jobs\/(\d+)$/, jobPage, "jobs"],
  [/^#\/jobs$/, jobsPage, "jobs"],
  [/^#\/datasets\/(\d+)$/, datasetPage, "datasets"],
  [/^#\/datasets\/(\d+)\/train(?:\/from\/(\d+))?$/, trainPage, "datasets"],
  [/^#\/datasets$/, datasetsPage, "datasets"],
  [/^#\/datasets\/upload$/, uploadPage, "datasets"],
  [/^#\/models\/(.+)$/, modelPage, "models"],
  [/^#\/models$/, modelsPage, "models"],
  [/^#\/sweeps\/(\d+)$/, sweepPage, "sweeps"],
  [/^#\/sweeps$/, sweepsPage, "sweeps"],
  [/^#\/compare\/([\d,]+)$/, comparePage, "jobs"],
  [/^#\/keys$/, keysPage, "keys"],
];

function stopLiveViews() {
  clearInterval(live.timer);
  if (live.stream) live.stream.close();
  for (const chart of live.charts) chart.destroy();
  Object.assign(live, { timer: null, stream: null, charts: [] });
}

async function route() {
  generation += 1;
  stopLiveViews();
  showWho();
  showKeysLink().catch(() => {});
  const hash = location.hash || "#/jobs";
  for (const [pattern, page, section] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("nav a[data-nav]")) {
      link.classList.toggle("active", link.dataset.nav === section);
    }
    try {
      await page(...match.slice(1).map((part) => (part === undefined ? undefined : decodeURIComponent(part))));
    } catch (error) {
      if (error !== GONE && error.status !== 401) render(failure(error));
    }
    return;
  }
  render(failure({ message: `No page ${hash}.` }));
}

window.addEventListener("hashchange", route);
route();

// The workbench: forms that send the API's own requests, and the comparison of jobs. Loaded before
// dashboard.js, whose helpers (h, api, render, visit, failure...) it calls once the page runs.
// A form validates nothing itself: what the person typed goes to the API as typed (a number as a
// number, anything else as text), and the API's errors, which name their fields, are shown under
// those fields.
"use strict";

const VALIDATE_DELAY_MS = 300;
const ACTIVATIONS = ["relu", "leaky_relu", "tanh", "sigmoid", "linear", "softmax"];
const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;
// The training fields the train form has inputs for; any other (the service's own, such as a
// time limit) of a job trained again is sent as that job had it.
const TRAINING_FIELDS = new Set([
  "epochs", "batch_size", "shuffle", "seed", "optimizer", "l2", "validation_split",
  "early_stopping", "standardize", "class_weight", "schedule", "warmup_epochs", "clip_norm",
]);
const SCHEDULE_FIELDS = {
  step: ["step_size", "gamma"],
  exponential: ["gamma"],
  cosine: ["t_max", "eta_min"],
  plateau: ["factor", "patience", "threshold", "min_lr"],
};
const OPTIMIZER_FIELDS = {
  sgd: ["learning_rate", "momentum", "nesterov", "decay"],
  adam: ["learning_rate", "beta1", "beta2", "epsilon", "decay"],
};

// ---------------------------------------------------------------- paths into a JSON body

/** ``"network.layers[0].units"`` -> ``["network", "layers", 0, "units"]``. */
function pathKeys(path) {
  return path.split(/\.|(?=\[)/).map((key) => (key.startsWith("[") ? Number(key.slice(1, -1)) : key));
}

function getPath(object, path) {
  return pathKeys(path).reduce((value, key) => (value === null || value === undefined ? undefined : value[key]), object);
}

function setPath(object, path, value) {
  const keys = pathKeys(path);
  let at = object;
  keys.slice(0, -1).forEach((key, i) => {
    if (at[key] === undefined || at[key] === null) at[key] = typeof keys[i + 1] === "number" ? [] : {};
    at = at[key];
  });
  at[keys[keys.length - 1]] = value;
}

// ---------------------------------------------------------------- fields

/** What a field's text stands for in the body: nothing when empty, a number when it reads as one,
 * else the text itself (for the API to name the field if it wants something else). */
const READERS = {
  value: (text) => (text === "" ? undefined : NUMBER.test(text.trim()) ? Number(text) : text),
  text: (text) => (text === "" ? undefined : text),
  boolean: (text) => (text === "" ? undefined : text === "true"),
  json: (text) => {
    if (text.trim() === "") return undefined;
    try {
      return JSON.parse(text);
    } catch {
      return text; // "balanced", or JSON the API will call wrong
    }
  },
};

function shownValue(value, kind) {
  if (value === undefined || value === null) return "";
  if (kind === "json") return typeof value === "string" ? value : JSON.stringify(value);
  return String(value);
}

let fieldCount = 0;

/** A labelled input (or select, with ``choices``) for the body's ``path``: its label, the resolved
 * default in grey once the API said it, and the API's error under it. */
function field(path, label, { kind = "value", choices = null, hint = null } = {}) {
  fieldCount += 1;
  const id = `field-${fieldCount}`;
  const control = choices
    ? h("select", { id, name: path }, h("option", { value: "" }, "default"), choices.map((c) => h("option", { value: c }, c)))
    : h("input", { id, name: path, type: "text", autocomplete: "off", spellcheck: "false" });
  control.setAttribute("aria-describedby", `${id}-resolved ${id}-error`);
  const resolved = h("span", { id: `${id}-resolved`, class: "resolved" });
  const error = h("p", { id: `${id}-error`, class: "field-error" });
  const box = h("div", { class: "field", dataset: { path } }, h("label", { for: id }, label), control, resolved, hint ? h("span", { class: "hint" }, hint) : null, error);
  return {
    path,
    box,
    control,
    read: () => READERS[kind](control.value),
    write: (value) => {
      control.value = shownValue(value, kind);
    },
    showResolved: (value) => {
      const text = value === null ? "none" : shownValue(value, "json");
      resolved.textContent = control.value === "" && value !== undefined ? `default: ${text}` : "";
    },
    showError: (messages) => {
      error.textContent = messages.join(" ");
      if (messages.length) control.setAttribute("aria-invalid", "true");
      else control.removeAttribute("aria-invalid");
    },
  };
}

/** The error box of a group of fields (a layer, the optimizer...), for errors naming the group. */
function groupError(path) {
  const error = h("p", { class: "field-error", dataset: { errorOf: path } });
  return { path, box: error, showError: (messages) => { error.textContent = messages.join(" "); } };
}

/** What a searched field's text asks for: ``loguniform 1e-4 1e-1``, ``uniform a b`` or ``int a b``
 * (a distribution, random search), ``choice a, b`` or a list ``a, b, c`` (grid values); each value
 * read as the field reads its own. */
function searchSpec(text, read) {
  const distribution = text.trim().match(/^(loguniform|uniform|int)\s+(\S+)\s+(\S+)$/);
  if (distribution) return { [distribution[1]]: [READERS.value(distribution[2]), READERS.value(distribution[3])] };
  const choice = text.trim().match(/^choice\s+(.*)$/);
  const values = (choice ? choice[1] : text).split(",").map((value) => read(value.trim()));
  return choice ? { choice: values } : values;
}

/** Give field ``f`` a "search" box: ticked, the field leaves the job's body and its values (or a
 * distribution) go to the sweep's ``search.parameters`` under its path. */
function searchable(f, kind) {
  f.vary = h("input", { type: "checkbox", id: `${f.control.id}-vary`, class: "vary" });
  f.values = h("input", { type: "text", id: `${f.control.id}-values`, autocomplete: "off", spellcheck: "false" });
  const values = h("div", { class: "search-values" }, h("label", { for: f.values.id }, "values to search"), f.values);
  const toggle = h("div", { class: "check search-toggle" }, f.vary, h("label", { for: f.vary.id }, "search"));
  values.hidden = true;
  f.vary.addEventListener("change", () => { values.hidden = !f.vary.checked; });
  f.box.insertBefore(toggle, f.box.lastChild);
  f.box.insertBefore(values, f.box.lastChild);
  const read = f.read;
  f.read = () => (f.vary.checked ? undefined : read());
  f.searched = () => (f.vary.checked && f.values.value.trim() !== "" ? searchSpec(f.values.value, READERS[kind]) : undefined);
  return f;
}

/** A form's way of showing the API's errors (``{path: [messages]}``): each under the target (a
 * field, or a group of fields) of its path, else of the nearest path above it (a layer for
 * ``network.layers[0].foo``); any other in ``general``. ``targets()``: those shown now. */
function errorShower(targets, general) {
  return (details) => {
    const shown = targets();
    for (const target of shown) target.showError([]);
    const unplaced = [];
    for (const [path, messages] of Object.entries(details || {})) {
      const within = (t) => path.startsWith(`${t.path}.`) || path.startsWith(`${t.path}[`);
      const target = shown.find((t) => t.path === path) || shown.find(within);
      if (target) target.showError([].concat(messages));
      else unplaced.push(h("p", { class: "error", dataset: { path } }, `${path}: ${[].concat(messages).join(" ")}`));
    }
    general.replaceChildren(...unplaced);
  };
}

// ---------------------------------------------------------------- the train form

/** ``box`` holding ``children`` and nothing else; left alone when it already does (moving the
 * field being typed into would take its focus). */
function showOnly(box, children) {
  const same = box.children.length === children.length && children.every((child, i) => box.children[i] === child);
  if (!same) box.replaceChildren(...children);
}

/** A first network for ``dataset``: one hidden layer and an output layer that fits its targets. */
function firstNetwork(dataset) {
  const output = dataset.task === "classification" ? "softmax" : "linear";
  return { layers: [{ units: 16, activation: "relu" }, { units: dataset.outputs, activation: output }] };
}

/** The network's layers, a row of fields each (all searchable), added and removed by the person;
 * ``changed`` is called after each. */
function layerEditor(changed) {
  const rows = [];
  const list = h("div", { id: "layers" });
  const addRow = () => {
    const i = rows.length;
    const row = {
      fields: [
        searchable(field(`network.layers[${i}].units`, `Layer ${i + 1} units`), "value"),
        searchable(field(`network.layers[${i}].activation`, `Layer ${i + 1} activation`, { choices: ACTIVATIONS }), "text"),
        searchable(field(`network.layers[${i}].dropout`, `Layer ${i + 1} dropout`), "value"),
      ],
      error: groupError(`network.layers[${i}]`),
    };
    row.box = h("div", { class: "layer-row", dataset: { layer: i } }, row.fields.map((f) => f.box), row.error.box);
    rows.push(row);
    list.append(row.box);
  };
  const setCount = (n) => {
    while (rows.length > n) rows.pop().box.remove();
    while (rows.length < n) addRow();
  };
  const buttons = h(
    "div",
    { class: "buttons" },
    h("button", { type: "button", id: "add-layer", class: "secondary", onclick: () => { addRow(); changed(); } }, "Add a layer"),
    h("button", { type: "button", id: "remove-layer", class: "secondary", onclick: () => { setCount(Math.max(0, rows.length - 1)); changed(); } }, "Remove the last layer"),
  );
  return {
    box: h("div", {}, list, buttons),
    rows,
    setCount,
    fields: () => rows.flatMap((row) => row.fields),
    errors: () => rows.map((row) => row.error),
  };
}

/** A spec object chosen by name (``training.optimizer``, ``training.schedule``): the name's
 * select and the fields of the chosen name's parameters (``table``: name -> parameter names);
 * ``fallback``: the name the API takes when none is chosen. */
function namedChoice(prefix, label, table, fallback, kinds = {}) {
  const name = field(`${prefix}.name`, label, { kind: "text", choices: Object.keys(table) });
  const params = Object.fromEntries(
    [...new Set(Object.values(table).flat())].map((param) => [param, field(`${prefix}.${param}`, param.replaceAll("_", " "), kinds[param] || {})]),
  );
  const box = h("div", { class: "fields" });
  return {
    name,
    params: Object.values(params),
    box: h("div", {}, h("div", { class: "fields" }, name.box), box),
    show: () => showOnly(box, (table[name.control.value || fallback] || []).map((param) => params[param].box)),
  };
}

/** The sweep's own fields: the search, the metric to rank by, how many at once, ASHA. */
function sweepSettings(group) {
  const method = field("search.method", "Search", { kind: "text", choices: ["grid", "random"] });
  method.write("grid");
  const fields = [
    method,
    field("search.trials", "Trials", { hint: "random search: how many to draw" }),
    field("search.seed", "Search seed", { hint: "random search" }),
    field("metric", "Metric", { kind: "text", choices: ["val_loss", "val_accuracy", "train_loss", "train_accuracy"] }),
    field("goal", "Goal", { kind: "text", choices: ["minimize", "maximize"] }),
    field("max_parallel", "Trials at once"),
  ];
  const asha = h("input", { type: "checkbox", id: "asha" });
  const ashaFields = [field("early_termination.min_epochs", "ASHA first rung (epochs)"), field("early_termination.reduction_factor", "ASHA reduction factor")];
  const ashaBox = h("div", { class: "fields", hidden: true }, ashaFields.map((f) => f.box));
  asha.addEventListener("change", () => { ashaBox.hidden = !asha.checked; });
  return {
    box: h("fieldset", { id: "sweep-settings", hidden: true }, h("legend", {}, "Sweep"), group("search"),
      h("div", { class: "fields" }, fields.map((f) => f.box)),
      h("div", { class: "check" }, asha, h("label", { for: "asha" }, "Stop poor trials early (ASHA)")), ashaBox),
    fields: () => fields.concat(asha.checked ? ashaFields : []),
    /** ``body`` (a job's) made a sweep's: ``parameters`` searched, and these fields. */
    body: (body, parameters) => {
      body.search = { parameters };
      if (asha.checked) body.early_termination = { method: "asha" };
      return bodyOf(fields.concat(asha.checked ? ashaFields : []), body);
    },
  };
}

/** The network's and training's fields other than layers, optimizer, schedule and early
 * stopping, each searchable where a sweep can vary it. */
function specFields() {
  const network = [
    field("network.loss", "Loss", { choices: ["cross_entropy", "binary_cross_entropy", "mse", "sse"] }),
    field("network.init", "Initialisation", { choices: ["he", "xavier", "normal"] }),
    field("network.dtype", "dtype", { choices: ["float32", "float64"] }),
  ].map((f) => searchable(f, "text"));
  const training = [
    ...[["epochs", "Epochs"], ["batch_size", "Batch size", "a number or full"], ["validation_split", "Validation split"], ["seed", "Seed"],
      ["l2", "L2"], ["warmup_epochs", "Warm-up epochs"], ["clip_norm", "Clip norm"]].map(([name, label, hint]) => searchable(field(`training.${name}`, label, { hint }), "value")),
    field("training.shuffle", "Shuffle", { kind: "boolean", choices: ["true", "false"] }),
    field("training.standardize", "Standardize", { kind: "boolean", choices: ["true", "false"] }),
    field("training.class_weight", "Class weight", { kind: "json", hint: "balanced, or {\"label\": weight}" }),
  ];
  return { network, training };
}

/** The train form of ``dataset``, filled from ``job`` (train again) if given, else with a first
 * network to change. As a sweep's form (the search toggle) it starts a sweep instead. */
function trainForm(dataset, job) {
  const groups = [];
  const group = (path) => {
    const made = groupError(path);
    groups.push(made);
    return made.box;
  };
  const layers = layerEditor(() => changed());
  const optimizer = namedChoice("training.optimizer", "Optimizer", OPTIMIZER_FIELDS, "sgd", { nesterov: { kind: "boolean", choices: ["true", "false"] } });
  const schedule = namedChoice("training.schedule", "Schedule", SCHEDULE_FIELDS, "");
  const earlyStopping = h("input", { type: "checkbox", id: "early-stopping" });
  const earlyParams = [
    searchable(field("training.early_stopping.patience", "patience"), "value"),
    searchable(field("training.early_stopping.min_delta", "min delta"), "value"),
    field("training.early_stopping.restore_best", "restore best", { kind: "boolean", choices: ["true", "false"] }),
  ];
  const earlyBox = h("div", { class: "fields" });
  const { network: networkFields, training: trainingFields } = specFields();
  searchable(optimizer.name, "text");
  for (const f of optimizer.params) searchable(f, f.path.endsWith("nesterov") ? "boolean" : "value");
  for (const f of schedule.params) searchable(f, "value");
  const modelName = field("model_name", "Model name", { kind: "text", hint: "the next version of this name" });
  const initFrom = field("network.init_from", "Start from model", { hint: "an id, name, name:version or name@alias" });
  const replaceOutput = field("network.replace_output", "New output layer", { kind: "boolean", choices: ["true", "false"] });
  const fields = [modelName, initFrom, replaceOutput, ...networkFields, ...trainingFields, optimizer.name, ...optimizer.params, schedule.name, ...schedule.params, ...earlyParams];
  const searching = h("input", { type: "checkbox", id: "search-toggle" });
  const sweep = sweepSettings(group);
  const general = h("div", { id: "form-errors" });
  const warnings = h("div", { id: "form-warnings" });
  const kept = {}; // a trained-again job's training fields the form has no input for

  /** Only the fields that belong: the chosen optimizer's and schedule's, early stopping's when on. */
  const showRelevant = () => {
    optimizer.show();
    schedule.show();
    showOnly(earlyBox, earlyStopping.checked ? earlyParams.map((f) => f.box) : []);
  };
  const shownFields = () => fields.concat(layers.fields()).filter((f) => form.contains(f.box));

  /** The request body, exactly as POST /v1/jobs takes it. */
  const body = () => {
    const built = { dataset_id: dataset.id, network: { layers: layers.rows.map(() => ({})) }, training: { ...kept } };
    if (earlyStopping.checked) built.training.early_stopping = {};
    bodyOf(shownFields(), built);
    if (!layers.rows.length) delete built.network.layers;
    return built;
  };
  /** The request body of POST /v1/sweeps: the job's, the searched fields and the sweep's own. */
  const sweepBody = () => {
    const parameters = {};
    for (const f of shownFields()) {
      const spec = f.searched ? f.searched() : undefined;
      if (spec !== undefined) parameters[f.path] = spec;
    }
    return sweep.body(body(), parameters);
  };
  const sweepShown = () => (searching.checked ? sweep.fields() : []);
  const showErrors = errorShower(() => shownFields().concat(sweepShown(), groups, layers.errors()), general);
  const showResolved = (report) => {
    for (const f of shownFields()) f.showResolved(report.network || report.training ? getPath(report, f.path) : undefined);
  };

  let asked = 0;
  let timer = null;
  const validate = async () => {
    const mine = ++asked;
    let report;
    try {
      report = await api("v1/jobs/validate", { method: "POST", body: body() });
    } catch (error) {
      if (mine !== asked) return;
      showErrors(error.details || {});
      if (!error.details) general.replaceChildren(failure(error));
      showResolved({});
      return;
    }
    if (mine !== asked) return; // a later answer is on its way
    showErrors(report.errors);
    showResolved(report);
    warnings.replaceChildren(...report.warnings.map((text) => h("p", { class: "warning" }, text)));
  };
  const changed = () => {
    showRelevant();
    clearTimeout(timer);
    timer = setTimeout(() => validate().catch(() => {}), VALIDATE_DELAY_MS);
  };
  const submit = async (event) => {
    event.preventDefault();
    clearTimeout(timer);
    asked += 1; // an answer of validate still on its way is no longer wanted
    try {
      if (searching.checked) {
        const started = await api("v1/sweeps", { method: "POST", body: sweepBody() });
        location.hash = `#/sweeps/${started.id}`;
      } else {
        const queued = await api("v1/jobs", { method: "POST", body: body() });
        location.hash = `#/jobs/${queued.id}`;
      }
    } catch (error) {
      showErrors(error.details || {});
      if (!error.details) general.replaceChildren(failure(error));
    }
  };

  const network = job ? { ...job.network } : firstNetwork(dataset);
  delete network.initial_weights; // never echoed into a form
  const training = job ? job.training : {};
  layers.setCount((network.layers || []).length);
  earlyStopping.checked = Boolean(training.early_stopping);
  for (const [key, value] of Object.entries(training)) if (!TRAINING_FIELDS.has(key)) kept[key] = value;
  const spec = { network, training, model_name: job ? job.model_name : null };
  for (const f of fields.concat(layers.fields())) f.write(getPath(spec, f.path));
  showRelevant();

  const trainButton = h("button", { type: "submit", id: "train" }, "Train");
  searching.addEventListener("change", () => {
    sweep.box.hidden = !searching.checked;
    form.classList.toggle("searching", searching.checked);
    trainButton.textContent = searching.checked ? "Start the sweep" : "Train";
  });
  const form = h(
    "form",
    { id: "train-form", class: "workbench", novalidate: true, oninput: changed, onchange: changed, onsubmit: submit },
    h("div", { class: "check" }, searching, h("label", { for: "search-toggle" }, "Search: a sweep over the fields ticked \u201csearch\u201d (grid values a, b, c; or loguniform, uniform or int low high for random search)")),
    sweep.box,
    h("fieldset", {}, h("legend", {}, "Network"), group("network"), layers.box, group("network.layers"),
      h("div", { class: "fields" }, networkFields.map((f) => f.box)),
      h("div", { class: "fields" }, initFrom.box, replaceOutput.box)),
    h("fieldset", {}, h("legend", {}, "Training"), group("training"), h("div", { class: "fields" }, trainingFields.map((f) => f.box))),
    h("fieldset", {}, h("legend", {}, "Optimizer"), group("training.optimizer"), optimizer.box),
    h("fieldset", {}, h("legend", {}, "Learning-rate schedule"), group("training.schedule"), schedule.box),
    h("fieldset", {}, h("legend", {}, "Early stopping"), group("training.early_stopping"),
      h("div", { class: "check" }, earlyStopping, h("label", { for: "early-stopping" }, "Stop when the validation loss stops improving")), earlyBox),
    h("fieldset", {}, h("legend", {}, "Model"), h("div", { class: "fields" }, modelName.box)),
    Object.keys(kept).length ? h("p", { class: "muted", id: "kept" }, `Also sent as job #${job.id} had them: ${Object.keys(kept).join(", ")}`) : null,
    general,
    warnings,
    trainButton,
  );
  validate().catch(() => {});
  return form;
}

async function trainPage(datasetId, jobId) {
  const here = visit();
  const [dataset, job] = await Promise.all([
    api(`v1/datasets/${datasetId}`),
    jobId ? api(`v1/jobs/${jobId}`) : null,
  ]);
  here();
  render(
    h("h1", {}, job ? `Train again: job #${job.id}` : `Train on data set #${dataset.id}: ${dataset.name}`),
    h("p", { class: "muted" }, `${dataset.task}, ${fmt(dataset.rows)} rows, ${fmt(dataset.features)} features, ${targetsOf(dataset)}. ` +
      "Each field left empty takes the default shown in grey; the API checks the form as you type."),
    trainForm(dataset, job),
  );
}

// ---------------------------------------------------------------- the upload form

const PREVIEW_BYTES = 64 * 1024;
const PREVIEW_ROWS = 5;
const COLUMN_ROLES = ["feature", "target", "weight", "drop"];

/** The format the API would take a file of this name for (its rule: .parquet or .pq is parquet,
 * .npz is npz, any other csv), for the preview only: the request sends no format unless chosen. */
function formatOf(fileName) {
  const name = fileName.toLowerCase();
  if (name.endsWith(".parquet") || name.endsWith(".pq")) return "parquet";
  return name.endsWith(".npz") ? "npz" : "csv";
}

/** The rows of the start of a CSV text (quoted cells with commas and doubled quotes allowed);
 * the last line is left out when the text was cut in its middle. */
function csvRows(text, complete) {
  const lines = text.split(/\r?\n/);
  if (!complete) lines.pop();
  return lines.filter((line) => line.trim() !== "").map((line) => {
    const cells = [];
    let cell = "";
    let quoted = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quoted && c === '"' && line[i + 1] === '"') { cell += '"'; i++; }
      else if (c === '"') quoted = !quoted;
      else if (c === "," && !quoted) { cells.push(cell); cell = ""; }
      else cell += c;
    }
    cells.push(cell);
    return cells;
  });
}

/** POST ``form`` (multipart) to ``path``, calling ``onProgress(fraction)`` as the body goes up;
 * resolves with the answer's JSON, rejects with an ApiError. */
function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Accept", "application/json");
    const key = apiKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // an answer that is not JSON: the status says enough
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener("error", () => reject(new Error("The upload failed: no answer from the server.")));
    xhr.send(form);
  });
}

function uploadPage() {
  const fileInput = h("input", { type: "file", id: "upload-file", name: "file", accept: ".csv,.txt,.parquet,.pq,.npz" });
  const fileError = h("p", { id: "upload-file-error", class: "field-error" });
  fileInput.setAttribute("aria-describedby", "upload-file-error");
  const drop = h("div", { id: "drop-zone", class: "drop-zone" }, h("label", { for: "upload-file" }, "Drop a CSV, Parquet or npz file here, or pick one: "), fileInput, fileError);
  const name = field("name", "Name", { kind: "text", hint: "by default the file's name" });
  const format = field("format", "Format", { kind: "text", choices: ["csv", "parquet", "npz"], hint: "by default from the file's name" });
  const task = field("task", "Task", { kind: "text", choices: ["classification", "regression"], hint: "by default inferred from the targets" });
  const header = field("header", "First line names the columns", { kind: "text", choices: ["true", "false"] });
  const target = field("target", "Target column(s)", { kind: "text", hint: "comma-separated; npz: the targets array (default y)" });
  const features = field("features", "Feature columns", { kind: "text", hint: "comma-separated; npz: the features array (default X)" });
  const weight = field("weight", "Weight column", { kind: "text" });
  const dropped = field("drop", "Columns to leave out", { kind: "text", hint: "comma-separated; not with features" });
  const columnFields = [target, features, weight, dropped];
  const all = [name, format, task, header, ...columnFields];
  const preview = h("div", { id: "csv-preview" });
  const bar = h("progress", { id: "upload-progress", max: 1, value: 0, hidden: true, "aria-label": "upload progress" });
  const general = h("div", { id: "upload-errors" });
  let file = null;

  /** The role select of each column of a CSV's preview writes the column fields, as text the
   * person could have typed. */
  const showRoles = (columns, selects) => {
    const named = (role) => columns.filter((_, j) => selects[j].value === role).join(",");
    target.write(named("target"));
    weight.write(named("weight"));
    dropped.write(named("drop"));
    features.write("");
  };
  const showPreview = async () => {
    preview.replaceChildren();
    if (!file || (format.control.value || formatOf(file.name)) !== "csv") return;
    const text = await file.slice(0, PREVIEW_BYTES).text();
    const rows = csvRows(text, file.size <= PREVIEW_BYTES);
    if (!rows.length) return;
    const hasHeader = header.control.value !== "false";
    const columns = hasHeader ? rows[0] : rows[0].map((_, j) => String(j));
    const shown = rows.slice(hasHeader ? 1 : 0, (hasHeader ? 1 : 0) + PREVIEW_ROWS);
    const selects = columns.map((column, j) =>
      h("select", { id: `role-${j}`, "aria-label": `role of column ${column}`, dataset: { column } },
        COLUMN_ROLES.map((role) => h("option", { value: role }, role))),
    );
    const last = selects[selects.length - 1];
    if (last) last.value = "target"; // the usual place of a target; the person can change it
    for (const select of selects) select.addEventListener("change", () => showRoles(columns, selects));
    showRoles(columns, selects);
    preview.replaceChildren(
      h("p", { class: "muted" }, `The first ${shown.length} rows, read in this browser; choose each column's role:`),
      scrolling("the file's first rows", table(columns, [h("tr", {}, selects.map((select) => h("td", {}, select))), ...shown.map((row) => h("tr", {}, row.map((cell) => h("td", {}, cell))))], { id: "upload-preview" })),
    );
  };
  const choose = (chosen) => {
    file = chosen;
    fileError.textContent = "";
    if (file && name.control.value === "") name.control.placeholder = file.name;
    showPreview().catch((error) => preview.replaceChildren(failure(error)));
  };
  fileInput.addEventListener("change", () => choose(fileInput.files[0] || null));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    choose(event.dataTransfer.files[0] || null);
  });
  format.control.addEventListener("change", () => showPreview().catch(() => {}));
  header.control.addEventListener("change", () => showPreview().catch(() => {}));

  const fileTarget = { path: "file", showError: (messages) => { fileError.textContent = messages.join(" "); } };
  const showErrors = errorShower(() => [fileTarget, ...all], general);
  const submit = async (event) => {
    event.preventDefault();
    general.replaceChildren();
    const body = new FormData();
    if (file) body.append("file", file, file.name);
    for (const f of all) {
      const value = f.read();
      if (value !== undefined) body.append(f.path, value);
    }
    bar.hidden = false;
    bar.value = 0;
    try {
      const dataset = await upload("v1/datasets", body, (fraction) => { bar.value = fraction; });
      location.hash = `#/datasets/${dataset.id}`;
    } catch (error) {
      bar.hidden = true;
      if (error.status === 401) askForKey(error.message);
      else if (error.details) showErrors(error.details);
      else general.replaceChildren(failure(error));
    }
  };
  render(
    h("h1", {}, "Upload a data set"),
    h(
      "form",
      // An error stays until what it is about changes: then it is the next answer's to say.
      { id: "upload-form", class: "workbench", novalidate: true, onsubmit: submit, onchange: () => showErrors({}) },
      h("fieldset", {}, h("legend", {}, "File"), drop, preview),
      h("fieldset", {}, h("legend", {}, "Columns"), h("div", { class: "fields" }, columnFields.map((f) => f.box))),
      h("fieldset", {}, h("legend", {}, "Data set"), h("div", { class: "fields" }, [name, task, format, header].map((f) => f.box))),
      general,
      h("div", { class: "buttons" }, h("button", { type: "submit", id: "upload" }, "Upload"), bar),
    ),
  );
}

// ---------------------------------------------------------------- comparing jobs

const COMPARED_FIGURES = [
  ["train_loss", "Train loss"],
  ["val_loss", "Validation loss"],
  ["train_accuracy", "Train accuracy"],
  ["val_accuracy", "Validation accuracy"],
  ["learning_rate", "Learning rate"],
];
const FINAL_FIGURES = ["status", "epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy"];

/** ``value`` as ``{path: leaf}``: ``{"a": {"b": [1]}}`` -> ``{"a.b[0]": 1}``. */
function leaves(value, path = "", out = {}) {
  if (Array.isArray(value) && value.length) value.forEach((item, i) => leaves(item, `${path}[${i}]`, out));
  else if (value !== null && typeof value === "object" && Object.keys(value).length) {
    for (const [key, item] of Object.entries(value)) leaves(item, path ? `${path}.${key}` : key, out);
  } else out[path] = value;
  return out;
}

/** The spec fields (paths) whose values are not the same in every job, in the first job's order
 * and then any a later job adds. */
function differingFields(specs) {
  const flat = specs.map((spec) => leaves(spec));
  const paths = [...new Set(flat.flatMap((f) => Object.keys(f)))];
  return {
    flat,
    paths: paths.filter((path) => new Set(flat.map((f) => JSON.stringify(f[path] ?? null))).size > 1),
  };
}

function comparedSpec(job) {
  const network = { ...job.network };
  delete network.initial_weights;
  return { dataset_id: job.dataset_id, model_name: job.model_name, network, training: job.training };
}

/** Every epoch record of job ``id``, a page of up to 10,000 at a time. */
async function allEpochs(id) {
  const epochs = [];
  for (;;) {
    const page = await api(`v1/jobs/${id}/epochs?after=${epochs.length ? epochs[epochs.length - 1].epoch : 0}&limit=10000`);
    epochs.push(...page);
    if (page.length < 10000) return epochs;
  }
}

function comparisonChart(container, title, ids, histories, figure) {
  const longest = Math.max(0, ...histories.map((epochs) => epochs.length));
  const x = Array.from({ length: longest }, (_, i) => i + 1);
  const series = histories.map((epochs) => {
    const values = new Array(longest).fill(null);
    for (const epoch of epochs) values[epoch.epoch - 1] = epoch[figure] ?? null;
    return values;
  });
  const chart = new uPlot(
    {
      title,
      width: Math.max(320, container.clientWidth || 500),
      height: 240,
      scales: { x: { time: false } },
      axes: [{ label: "epoch" }, { size: 70 }],
      series: [{ label: "epoch" }].concat(
        ids.map((id, i) => ({ label: `job ${id}`, stroke: `hsl(${(i * 137) % 360} 70% 40%)`, width: 1.5, spanGaps: true })),
      ),
    },
    [x, ...series],
    container,
  );
  live.charts.push(chart);
  container.dataset.series = String(series.filter((values) => values.some((v) => v !== null)).length);
  container.dataset.points = String(series.reduce((n, values) => n + values.filter((v) => v !== null).length, 0));
}

async function comparePage(list) {
  const here = visit();
  const ids = [...new Set(list.split(",").filter(Boolean).map(Number))];
  const [jobs, histories] = await Promise.all([
    Promise.all(ids.map((id) => api(`v1/jobs/${id}`))),
    Promise.all(ids.map(allEpochs)),
  ]);
  here();
  const { flat, paths } = differingFields(jobs.map(comparedSpec));
  const boxes = COMPARED_FIGURES.map(([figure]) => h("div", { id: `compare-${figure}`, class: "chart", dataset: { figure } }));
  const finalCell = (job, figure) => {
    if (figure === "status") return h("td", {}, status(job.status));
    return h("td", { class: "num" }, figure.includes("accuracy") ? percent(job[figure]) : fmt(job[figure]));
  };
  render(
    h("h1", {}, `Comparing ${ids.length} jobs`),
    h("p", { class: "muted" }, "This page's address holds the selection: share it to share the comparison."),
    h("h2", {}, "Spec fields that differ"),
    paths.length
      ? scrolling("spec fields that differ", table(
          ["field", ...ids.map((id) => `job #${id}`)],
          paths.map((path) => h("tr", { dataset: { field: path } }, h("th", { scope: "row" }, path), flat.map((f) => h("td", {}, f[path] === undefined ? "–" : shownValue(f[path], "json"))))),
          { id: "differences" },
        ))
      : h("p", { id: "differences" }, "The jobs' specs are the same."),
    h("h2", {}, "Final figures"),
    scrolling("final figures", table(
      ["figure", ...ids.map((id) => h("a", { href: `#/jobs/${id}` }, `job #${id}`))],
      FINAL_FIGURES.map((figure) => h("tr", { dataset: { figure } }, h("th", { scope: "row" }, figure.replaceAll("_", " ")), jobs.map((job) => finalCell(job, figure)))),
      { id: "final-figures" },
    )),
    h("section", { class: "charts" }, boxes),
  );
  COMPARED_FIGURES.forEach(([figure, title], i) => comparisonChart(boxes[i], title, ids, histories, figure));
}

// ---------------------------------------------------------------- managing a model's versions

const MAX_SPLIT = 4;
const GATE_METRICS = ["accuracy", "loss", "r2", "mse", "mae"];


/** The body's fields, each read from its field: ``{path: value}`` set into one object. */
function bodyOf(fields, start = {}) {
  for (const f of fields) {
    const value = f.read();
    if (value !== undefined) setPath(start, f.path, value);
  }
  return start;
}

/** Point an alias of the model's name at a split of its versions, with a shadow if wanted
 * (PUT /v1/models/{name}/aliases/{alias}); asks first, since callers of the alias change model. */
function aliasForm(model) {
  const alias = field("alias", "Alias", { kind: "text" });
  const rows = h("div", { id: "split-rows" });
  const arms = [];
  const addArm = (version) => {
    const i = arms.length;
    const arm = [field(`versions[${i}].version`, `Version ${i + 1}`), field(`versions[${i}].weight`, `Weight ${i + 1}`)];
    arm[0].write(version ?? "");
    arm[1].write(version === undefined ? "" : 100);
    arms.push(arm);
    rows.append(h("div", { class: "fields" }, arm.map((f) => f.box)));
  };
  addArm(model.version);
  const shadow = [field("shadow.version", "Shadow version"), field("shadow.sample", "Shadow sample", { hint: "share of requests, default 1" })];
  const force = h("input", { type: "checkbox", id: "alias-force" });
  const general = h("div");
  const result = h("div", { id: "alias-result" });
  const fields = () => [alias, ...arms.flat(), ...shadow];
  const showErrors = errorShower(fields, general);
  const more = h("button", { type: "button", class: "secondary", id: "add-version", onclick: () => arms.length < MAX_SPLIT && addArm() }, "Add a version to the split");
  const submit = async (event) => {
    event.preventDefault();
    const name = alias.read();
    if (name === undefined) return showErrors({ alias: ["is required"] });
    const body = bodyOf([...arms.flat(), ...shadow], { versions: arms.map(() => ({})) });
    const split = body.versions.map((arm) => `v${arm.version} weight ${arm.weight}`).join(", ");
    if (!confirm(`Point ${model.name}@${name} at ${split}? Its callers are answered by these versions from now on.`)) return;
    try {
      const query = force.checked ? "?force=true" : "";
      const answer = await api(`v1/models/${encodeURIComponent(model.name)}/aliases/${encodeURIComponent(name)}${query}`, { method: "PUT", body });
      showErrors({});
      result.replaceChildren(h("p", {}, `${model.name}@${answer.alias} is now:`), aliasTable([answer], "alias-set"));
    } catch (error) {
      showErrors(error.details);
      if (!error.details) general.replaceChildren(failure(error));
    }
  };
  return h(
    "form",
    { id: "alias-form", class: "workbench", novalidate: true, onsubmit: submit },
    h("fieldset", {}, h("legend", {}, "Move an alias or set its split"),
      h("div", { class: "fields" }, alias.box), rows, h("div", { class: "buttons" }, more),
      h("div", { class: "fields" }, shadow.map((f) => f.box)),
      h("div", { class: "check" }, force, h("label", { for: "alias-force" }, "Even if the versions' inputs differ from what the alias's callers send")),
      general, h("button", { type: "submit", id: "set-alias" }, "Set the alias"), result),
  );
}

/** Evaluate this version on held-out data and move the alias to it only if it passes
 * (POST .../aliases/{alias}/promote): the figures shown whether it passed or not. */
function gateForm(model) {
  const alias = field("alias", "Alias", { kind: "text" });
  const dataset = field("dataset_id", "Held-out data set id");
  const metric = field("require.metric", "Required figure", { kind: "text", choices: GATE_METRICS });
  const min = field("require.min", "at least");
  const max = field("require.max", "at most");
  const notWorse = field("not_worse_than_current", "No worse than the current version", { kind: "boolean", choices: ["true", "false"] });
  const general = h("div");
  const result = h("div", { id: "gate-result" });
  const fields = () => [alias, dataset, metric, min, max, notWorse];
  const showErrors = errorShower(fields, general);
  const figures = (answer) => {
    const evaluated = [answer.candidate, answer.current].filter(Boolean);
    const names = ["n_samples", "loss", "accuracy", "mse", "mae", "r2"].filter((n) => evaluated.some((e) => typeof e.evaluation[n] === "number"));
    return table(["figure", ...evaluated.map((e) => `v${e.version}`)],
      names.map((n) => h("tr", { dataset: { figure: n } }, h("th", { scope: "row" }, n), evaluated.map((e) => h("td", { class: "num" }, fmt(e.evaluation[n]))))),
      { id: "gate-figures" });
  };
  const submit = async (event) => {
    event.preventDefault();
    result.replaceChildren();
    const name = alias.read();
    if (name === undefined) return showErrors({ alias: ["is required"] });
    const body = { version: model.version, dataset_id: dataset.read() };
    const figure = metric.read();
    if (figure !== undefined) {
      const bounds = {};
      for (const [bound, f] of [["min", min], ["max", max]]) if (f.read() !== undefined) bounds[bound] = f.read();
      body.require = { [figure]: bounds };
    }
    const worse = notWorse.read();
    if (worse !== undefined) body.not_worse_than_current = worse;
    if (!confirm(`Evaluate v${model.version} and, if it passes, point ${model.name}@${name} at it?`)) return;
    try {
      const answer = await api(`v1/models/${encodeURIComponent(model.name)}/aliases/${encodeURIComponent(name)}/promote`, { method: "POST", body });
      showErrors({});
      result.replaceChildren(h("p", { class: "passed" }, `Passed: ${model.name}@${name} now points at v${answer.alias.version}.`), figures(answer));
    } catch (error) {
      if (error.status === 409 && error.details) {
        showErrors({});
        const rows = Object.entries(error.details).map(([path, messages]) => h("tr", {}, h("th", { scope: "row" }, path), h("td", {}, [].concat(messages).join(" "))));
        result.replaceChildren(failure(error), table(["requirement or figure", "value"], rows, { id: "gate-failures" }));
      } else {
        showErrors(error.details);
        if (!error.details) general.replaceChildren(failure(error));
      }
    }
  };
  return h(
    "form",
    { id: "gate-form", class: "workbench", novalidate: true, onsubmit: submit },
    h("fieldset", {}, h("legend", {}, `Promotion gate for v${model.version}`),
      h("div", { class: "fields" }, [alias, dataset, metric, min, max, notWorse].map((f) => f.box)),
      general, h("button", { type: "submit", id: "run-gate" }, "Run the gate"), result),
  );
}

/** Delete this version (DELETE /v1/models/{ref}), after asking. */
function deleteButton(model) {
  const general = h("div");
  const remove = async () => {
    if (!confirm(`Delete model #${model.id} (${modelLabel(model)})? This cannot be undone.`)) return;
    try {
      await api(`v1/models/${model.id}`, { method: "DELETE" });
      location.hash = "#/models";
    } catch (error) {
      general.replaceChildren(failure(error));
    }
  };
  return h("div", {}, h("button", { type: "button", id: "delete-model", class: "danger", onclick: remove }, `Delete ${modelLabel(model)}`), general);
}

function manageSection(model) {
  return h(
    "section",
    { id: "manage" },
    h("h2", {}, "Roll out"),
    model.name ? [aliasForm(model), gateForm(model)] : h("p", { class: "muted" }, "A model without a name has no aliases: train with a model_name to roll it out."),
    deleteButton(model),
  );
}

// ---------------------------------------------------------------- keys (an admin key's page)

/** Copy ``input``'s text to the clipboard, or select it for the person to copy where the
 * browser refuses (no focus, no permission); says which in ``said``. */
async function copyText(input, said) {
  try {
    await navigator.clipboard.writeText(input.value);
    said.textContent = "Copied.";
  } catch {
    input.select();
    said.textContent = "Selected: copy it with Ctrl+C.";
  }
}

function keyRow(key, revoke) {
  return h(
    "tr",
    { dataset: { key: key.id } },
    h("td", {}, `#${key.id}`),
    h("td", {}, key.scope),
    h("td", {}, key.description ?? "–"),
    h("td", {}, when(key.created_at)),
    h("td", {}, key.expires_at ? when(key.expires_at) : "never"),
    h("td", { class: "revoked" }, key.revoked_at ? `revoked ${when(key.revoked_at)}` : "active"),
    h("td", {}, key.revoked_at ? null : h("button", { type: "button", class: "danger", dataset: { revoke: key.id }, onclick: () => revoke(key) }, `Revoke #${key.id}`)),
  );
}

async function keysPage() {
  const here = visit();
  const body = h("tbody");
  const errors = h("div", { id: "keys-errors" });
  const refresh = async () => {
    const keys = await api("v1/keys");
    body.replaceChildren(...keys.map((key) => keyRow(key, revoke)));
  };
  const revoke = async (key) => {
    if (!confirm(`Revoke key #${key.id} (${key.scope}${key.description ? `, ${key.description}` : ""})? Every request with it is refused from now on.`)) return;
    try {
      await api(`v1/keys/${key.id}/revoke`, { method: "POST" });
      await refresh();
    } catch (error) {
      errors.replaceChildren(failure(error));
    }
  };
  await refresh();
  here();
  const scope = field("scope", "Scope", { kind: "text", choices: ["read", "write", "admin"] });
  const days = field("expires_in_days", "Expires in days", { hint: "empty: never" });
  const description = field("description", "Description", { kind: "text" });
  const fields = [scope, days, description];
  const general = h("div");
  const made = h("div", { id: "new-key-box" });
  const showErrors = errorShower(() => fields, general);
  const create = async (event) => {
    event.preventDefault();
    made.replaceChildren();
    try {
      const key = await api("v1/keys", { method: "POST", body: bodyOf(fields) });
      showErrors({});
      const shown = h("input", { id: "new-key", type: "text", readonly: true, value: key.key, size: 60, "aria-label": "the new key" });
      const said = h("span", { class: "muted", role: "status" });
      made.replaceChildren(
        h("p", { class: "warning" }, `Key #${key.id} (${key.scope}) is shown this once: keep it now.`),
        h("div", { class: "check" }, shown, h("button", { type: "button", id: "copy-key", onclick: () => copyText(shown, said) }, "Copy"), said),
      );
      await refresh();
    } catch (error) {
      showErrors(error.details);
      if (!error.details) general.replaceChildren(failure(error));
    }
  };
  render(
    h("h1", {}, "API keys"),
    h("p", { class: "muted" }, "This tenant's keys (never the keys themselves). A new key is shown once, when it is made."),
    errors,
    h("table", { id: "keys" }, h("thead", {}, h("tr", {}, ["key", "scope", "description", "created", "expires", "state", "revoke"].map((t) => h("th", {}, t)))), body),
    h("form", { id: "key-create", class: "workbench", novalidate: true, onsubmit: create },
      h("fieldset", {}, h("legend", {}, "Make a key"), h("div", { class: "fields" }, fields.map((f) => f.box)), general,
        h("button", { type: "submit", id: "create-key" }, "Make the key"), made)),
  );
}

/** Show the Keys link only to a key that may manage keys (GET /v1/keys answers it). */
let adminProbe = { key: undefined, admin: false };
async function showKeysLink() {
  const link = document.getElementById("nav-keys");
  const key = apiKey();
  if (adminProbe.key !== key) {
    adminProbe = { key, admin: false };
    const response = await fetch("v1/keys", { headers: { Accept: "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}) } });
    adminProbe.admin = response.ok;
  }
  link.hidden = !adminProbe.admin;
}

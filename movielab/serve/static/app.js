// The page of `movielab serve`: plain JS over the JSON API, no build step, nothing from a CDN.
// The form is built from GET /v1/models; Generate streams POST /v1/generate (Server-Sent Events
// read from fetch, since EventSource cannot POST); Stop aborts the fetch, which cancels the rows.
"use strict";

const $ = (id) => document.getElementById(id);
const NULLABLE = ["top_k", "top_p", "min_p"]; // empty means "off" (sent as null)
const SETTINGS = ["temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_new_tokens"];

let models = [];
let running = null; // {controller, entry} while a generation streams
let resultCount = 0;

function headers() {
  const key = $("api-key").value.trim();
  const sent = { "Content-Type": "application/json" };
  if (key) sent.Authorization = "Bearer " + key;
  return sent;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.classList.toggle("hidden", !message);
}

function errorText(body, status) {
  if (!body || !body.error) return "HTTP " + status;
  let text = body.error;
  if (body.allowed !== null && body.allowed !== undefined) {
    text += " (allowed: " + (typeof body.allowed === "string" ? body.allowed : JSON.stringify(body.allowed)) + ")";
  }
  return text;
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.status === 401) {
    $("key-box").classList.remove("hidden");
    showError("This server needs its API key: type it above.");
    return;
  }
  if (!response.ok) {
    showError(errorText(await response.json().catch(() => null), response.status));
    return;
  }
  showError("");
  models = (await response.json()).models;
  const select = $("model");
  select.replaceChildren(...models.map((m) => new Option(`${m.name} (${m.kind})`, m.name)));
  pickModel();
}

function current() {
  return models.find((m) => m.name === $("model").value);
}

function pickModel() {
  const model = current();
  if (!model) return;
  const loss = model.val_loss === null || model.val_loss === undefined ? "n/a" : model.val_loss.toFixed(3);
  const source = model.data && model.data.source ? String(model.data.source).split("/").pop() : "?";
  $("model-info").textContent =
    `${model.kind} · ${model.net} · ${model.parameters.toLocaleString()} parameters · step ${model.step}` +
    ` · val loss ${loss} · trained on ${source}`;
  const writes = model.endpoint === "/v1/generate";
  $("write-view").classList.toggle("hidden", !writes);
  $("genre-view").classList.toggle("hidden", writes);
  if (writes) buildForm(model);
  $("bars").replaceChildren();
}

function buildForm(model) {
  const box = $("prompt-fields");
  box.replaceChildren(box.querySelector("legend") || Object.assign(document.createElement("legend"), { textContent: "prompt" }));
  for (const field of model.prompt_fields) box.append(fieldControl(field));
  if (!model.prompt_fields.length) box.append(Object.assign(document.createElement("span"), { className: "status", textContent: "this model takes no prompt" }));
  const defaults = model.sampling.defaults;
  for (const name of SETTINGS) {
    const value = defaults[name];
    $(name).value = value === null || value === undefined ? "" : value;
  }
  $("max_new_tokens").max = model.sampling.limits.max_new_tokens;
  $("n").max = model.sampling.limits.n;
}

function fieldControl(field) {
  const label = document.createElement("label");
  label.className = "field-" + field.kind;
  label.title = field.help;
  if (field.kind === "text") {
    label.append(field.name);
    const input = Object.assign(document.createElement("input"), { type: "text", id: "field-" + field.name, placeholder: field.help });
    input.dataset.field = field.name;
    label.append(input);
  } else if (field.kind === "number") {
    const use = Object.assign(document.createElement("input"), { type: "checkbox", id: "use-" + field.name, checked: true });
    const head = document.createElement("span");
    head.append(use, " " + field.name + ` [${field.low}, ${field.high}]`);
    const slider = Object.assign(document.createElement("input"), {
      type: "range", id: "field-" + field.name, min: field.low, max: field.high,
      step: (field.high - field.low) / 100, value: field.low + 0.7 * (field.high - field.low),
    });
    slider.dataset.field = field.name;
    const shown = document.createElement("output");
    const show = () => { shown.textContent = Number(slider.value).toFixed(2); slider.disabled = !use.checked; };
    slider.addEventListener("input", show);
    use.addEventListener("change", show);
    show();
    const row = Object.assign(document.createElement("span"), { className: "slider" });
    row.append(slider, shown);
    label.append(head, row);
  } else {
    label.append(field.name);
    const choices = Object.assign(document.createElement("span"), { className: "choices", id: "field-" + field.name });
    choices.dataset.field = field.name;
    for (const choice of field.choices) {
      const item = document.createElement("label");
      const box = Object.assign(document.createElement("input"), { type: "checkbox", value: choice });
      item.append(box, choice);
      choices.append(item);
    }
    label.append(choices);
  }
  return label;
}

function promptValues(model) {
  const prompt = {};
  for (const field of model.prompt_fields) {
    const control = $("field-" + field.name);
    if (field.kind === "text" && control.value !== "") prompt[field.name] = control.value;
    if (field.kind === "number" && $("use-" + field.name).checked) prompt[field.name] = Number(control.value);
    if (field.kind === "choices") {
      const picked = [...control.querySelectorAll("input:checked")].map((box) => box.value);
      if (picked.length) prompt[field.name] = picked;
    }
  }
  return prompt;
}

function samplingValues() {
  const settings = {};
  for (const name of SETTINGS) {
    const raw = $(name).value.trim();
    if (raw === "") {
      if (NULLABLE.includes(name)) settings[name] = null;
    } else {
      settings[name] = Number(raw);
    }
  }
  const n = $("n").value.trim();
  if (n !== "") settings.n = Number(n);
  const seed = $("seed").value.trim();
  if (seed !== "") settings.seed = Number(seed);
  return settings;
}

function outputBox(index) {
  let box = document.querySelector(`#outputs .output[data-index="${index}"]`);
  if (!box) {
    box = Object.assign(document.createElement("div"), { className: "output" });
    box.dataset.index = index;
    box.append(Object.assign(document.createElement("span"), { className: "prompt" }), document.createElement("span"));
    $("outputs").append(box);
  }
  return box;
}

function flagsText(text) {
  const flags = [`seed ${text.seed}`, `${text.new_tokens} tokens`];
  flags.push(text.cut_off ? "cut off at max_new_tokens" : "finished at the stop");
  if (text.copies_training) flags.push("copies a training text");
  return flags.join(" · ");
}

function addResult(entry) {
  const item = document.createElement("li");
  item.className = "result " + entry.state;
  const settings = Object.entries(entry.settings).map(([k, v]) => `${k}=${v === null ? "off" : v}`).join(" ");
  const prompt = Object.entries(entry.prompt).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ");
  item.append(Object.assign(document.createElement("div"), {
    className: "meta",
    textContent: `#${++resultCount} ${entry.model} · ${entry.state} · seed ${entry.seed ?? "?"} · ${prompt || "no prompt"} · ${settings}`,
  }));
  for (const text of entry.texts) {
    const box = Object.assign(document.createElement("div"), { className: "result-text" });
    box.dataset.index = text.index;
    box.append(Object.assign(document.createElement("span"), { className: "text", textContent: text.text }));
    if (text.seed !== undefined) box.append(Object.assign(document.createElement("span"), { className: "flags", textContent: flagsText(text) }));
    item.append(box);
  }
  $("results").prepend(item);
}

function handleEvent(name, data, entry) {
  if (name === "piece") {
    const spans = outputBox(data.index).children;
    spans[data.prompt ? 0 : 1].textContent += data.text;
  } else if (name === "restart") {
    const box = outputBox(data.index);
    box.children[0].textContent = box.children[1].textContent = "";
  } else if (name === "finished") {
    const box = outputBox(data.index);
    box.classList.add("done");
    box.append(Object.assign(document.createElement("span"), { className: "flags", textContent: flagsText(data) }));
  } else if (name === "done") {
    entry.done = data;
  } else if (name === "error") {
    showError(errorText(data, 500));
  }
}

async function generate(event) {
  event.preventDefault();
  const model = current();
  if (!model || running) return;
  showError("");
  const prompt = promptValues(model);
  const body = { model: model.name, ...prompt, ...samplingValues(), stream: true };
  const controller = new AbortController();
  const entry = { model: model.name, prompt, settings: {}, seed: body.seed, texts: [], state: "stopped" };
  running = { controller, entry };
  $("outputs").replaceChildren();
  setRunning(true, "writing…");
  try {
    const response = await fetch("/v1/generate", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!response.ok) {
      showError(errorText(await response.json().catch(() => null), response.status));
      entry.state = "refused";
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const name = (block.match(/^event: (.*)$/m) || [])[1];
        const data = (block.match(/^data: (.*)$/m) || [])[1];
        if (name && data) handleEvent(name, JSON.parse(data), entry);
      }
    }
    if (entry.done) {
      Object.assign(entry, { settings: entry.done.settings, seed: entry.done.seed, texts: entry.done.texts, state: "finished" });
    }
  } catch (error) {
    if (error.name !== "AbortError") showError(String(error));
  } finally {
    if (entry.state !== "refused") {
      if (entry.state === "stopped") entry.texts = [...document.querySelectorAll("#outputs .output")].map((box) => ({ index: Number(box.dataset.index), text: box.children[0].textContent + box.children[1].textContent }));
      if (!Object.keys(entry.settings).length) entry.settings = Object.fromEntries(SETTINGS.filter((k) => k in body).map((k) => [k, body[k]]));
      addResult(entry);
    }
    running = null;
    setRunning(false, entry.state === "finished" ? "done" : entry.state);
  }
}

function setRunning(on, status) {
  $("generate").disabled = on;
  $("stop").disabled = !on;
  $("status").textContent = status;
}

function stop() {
  if (running) running.controller.abort();
}

async function predict(event) {
  event.preventDefault();
  const model = current();
  showError("");
  const body = { model: model.name, text: $("predict-text").value };
  const title = $("predict-title").value.trim();
  if (title) body.title = title;
  const response = await fetch("/v1/predict", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    showError(errorText(answer, response.status));
    return;
  }
  const bars = answer.genres.map((g) => {
    const row = Object.assign(document.createElement("div"), { className: "bar" + (g.above_threshold ? " above" : "") });
    row.dataset.genre = g.genre;
    const track = Object.assign(document.createElement("div"), { className: "track" });
    const fill = Object.assign(document.createElement("div"), { className: "fill" });
    fill.style.width = (100 * g.probability).toFixed(1) + "%";
    const mark = Object.assign(document.createElement("div"), { className: "threshold" });
    mark.style.left = (100 * answer.threshold).toFixed(1) + "%";
    track.append(fill, mark);
    row.append(
      Object.assign(document.createElement("span"), { className: "name", textContent: g.genre }),
      track,
      Object.assign(document.createElement("span"), { className: "value", textContent: g.probability.toFixed(3) }),
    );
    return row;
  });
  const note = Object.assign(document.createElement("p"), {
    className: "threshold-note",
    textContent: `genres above the decision threshold ${answer.threshold.toFixed(2)} (chosen on validation) are marked`,
  });
  $("bars").replaceChildren(note, ...bars);
}

document.addEventListener("DOMContentLoaded", () => {
  $("model").addEventListener("change", pickModel);
  $("write-form").addEventListener("submit", generate);
  $("stop").addEventListener("click", stop);
  $("genre-form").addEventListener("submit", predict);
  $("api-key").addEventListener("change", loadModels);
  loadModels().catch((error) => showError(String(error)));
});

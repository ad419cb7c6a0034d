// nst_tf's page: pictures in, the network's painting at once (on the server, or in this browser with
// TensorFlow.js), a refine streamed over a WebSocket, a PNG out with the command line that makes it.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { photo: null, paintings: [], mask: null, maskDrawn: false, version: 0, job: null, socket: null, info: null };

function message(text) { $("message").textContent = text || ""; }
function status(text) { $("status").textContent = text || ""; }

async function errorText(response) {
  try { return (await response.json()).error || response.statusText; } catch (e) { return `${response.status} ${response.statusText}`; }
}

// ---- pictures: picked, dropped or bundled -------------------------------------------------------
function showPhoto() {
  const src = typeof state.photo === "string" ? `/api/pictures/${state.photo}` : URL.createObjectURL(state.photo);
  $("photo-preview").src = src;
  document.querySelectorAll("#photo-bundled button").forEach((b) => b.classList.toggle("chosen", b.dataset.name === state.photo));
  clearMask();
}

function showPaintings() {
  const box = $("painting-previews");
  box.replaceChildren(...state.paintings.map((p) => {
    const img = document.createElement("img");
    img.src = typeof p === "string" ? `/api/pictures/${p}` : URL.createObjectURL(p);
    return img;
  }));
  $("blend").disabled = state.paintings.length !== 2;
  document.querySelectorAll("#painting-bundled button").forEach((b) => b.classList.toggle("chosen", state.paintings.includes(b.dataset.name)));
}

function picked(kind, files) {
  const images = [...files].filter((f) => f.type.startsWith("image/") || f.type === "");
  if (!images.length) return;
  if (kind === "photo") { state.photo = images[0]; showPhoto(); } else { state.paintings = images; showPaintings(); }
  paintSoon();
}

function dropZone(zone, kind) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); picked(kind, e.dataTransfer.files); });
}

async function loadBundled() {
  const list = await (await fetch("/api/pictures")).json();
  for (const { name, kind } of list) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.name = name;
    button.title = name;
    const img = document.createElement("img");
    img.src = `/api/pictures/${name}`;
    img.alt = name;
    button.append(img);
    button.addEventListener("click", () => {
      if (kind === "photo") { state.photo = name; showPhoto(); } else {
        const i = state.paintings.indexOf(name);
        state.paintings = i >= 0 ? state.paintings.filter((p) => p !== name) : [...state.paintings.filter((p) => typeof p === "string"), name];
        showPaintings();
      }
      paintSoon();
    });
    $(kind === "photo" ? "photo-bundled" : "painting-bundled").append(button);
  }
}

// ---- a painted region ---------------------------------------------------------------------------
function clearMask() {
  const canvas = $("mask-canvas"), img = $("photo-preview");
  canvas.width = img.naturalWidth || 1;
  canvas.height = img.naturalHeight || 1;
  state.maskDrawn = false;
}

function placeMask() {
  const canvas = $("mask-canvas"), img = $("photo-preview");
  canvas.style.left = `${img.offsetLeft}px`;
  canvas.style.top = `${img.offsetTop}px`;
  canvas.style.width = `${img.clientWidth}px`;
  canvas.style.height = `${img.clientHeight}px`;
}

function maskDrawing() {
  const canvas = $("mask-canvas");
  let down = false;
  const draw = (e) => {
    if (!down) return;
    const r = canvas.getBoundingClientRect(), ctx = canvas.getContext("2d");
    const x = (e.clientX - r.left) * canvas.width / r.width, y = (e.clientY - r.top) * canvas.height / r.height;
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.arc(x, y, canvas.width / 16, 0, 2 * Math.PI);
    ctx.fill();
    state.maskDrawn = true;
  };
  canvas.addEventListener("pointerdown", (e) => { down = true; draw(e); });
  canvas.addEventListener("pointermove", draw);
  window.addEventListener("pointerup", () => { if (down) { down = false; paintSoon(); } });
  $("photo-preview").addEventListener("load", () => { clearMask(); placeMask(); });
  $("mask-toggle").addEventListener("click", () => {
    const canvas = $("mask-canvas");
    canvas.hidden = !canvas.hidden;
    $("mask-clear").hidden = canvas.hidden;
    placeMask();
    paintSoon();
  });
  $("mask-clear").addEventListener("click", () => { clearMask(); paintSoon(); });
}

function maskBlob() {  // black outside, white where painted; null when no region is painted
  const canvas = $("mask-canvas");
  if (canvas.hidden || !state.maskDrawn) return Promise.resolve(null);
  const out = document.createElement("canvas");
  out.width = canvas.width; out.height = canvas.height;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(canvas, 0, 0);
  return new Promise((resolve) => out.toBlob(resolve, "image/png"));
}

// ---- the request --------------------------------------------------------------------------------
function settings() {  // every control the server described (/api/info's options), by the option's name
  const s = {};
  for (const control of document.querySelectorAll("[data-group]")) s[control.id] = control.value;
  if (state.paintings.length === 2) { const b = Number($("blend").value); s.style_blend = `${(1 - b).toFixed(2)},${b.toFixed(2)}`; }
  return s;
}

async function form() {
  const data = new FormData();
  data.append("photo", state.photo);
  for (const p of state.paintings) data.append("painting", p);
  const mask = await maskBlob();
  if (mask) data.append("mask", mask, "mask.png");
  for (const [k, v] of Object.entries(settings())) data.append(k, v);
  return data;
}

function showResult(url, command) {
  const img = $("result");
  img.src = url;
  img.hidden = false;
  $("placeholder").hidden = true;
  $("download").href = url;
  $("download").hidden = false;
  if (command) { $("command").textContent = command; $("command").hidden = false; }
}

function clearResult() {  // a failed request: no stale picture, link or command stays
  $("result").hidden = true;
  $("result").removeAttribute("src");
  $("download").hidden = true;
  $("command").hidden = true;
  $("placeholder").hidden = false;
}

function restoreInputs() {  // back to the last pictures that painted (the previews stay meaningful)
  if (!state.good) return;
  if (state.photo !== state.good.photo) { state.photo = state.good.photo; showPhoto(); }
  if (state.paintings !== state.good.paintings) { state.paintings = state.good.paintings; showPaintings(); }
}

let timer = null;
function paintSoon() {
  clearTimeout(timer);
  timer = setTimeout(paint, 120);
}

async function paint() {
  $("refine").disabled = !(state.photo && state.paintings.length);
  if (!state.photo || !state.paintings.length || state.job) return;
  const version = ++state.version, start = performance.now();
  message("");
  status("painting...");
  if ($("in-browser").checked) return paintInBrowser(version, start);
  const response = await fetch("/api/paint", { method: "POST", body: await form() });
  if (version !== state.version) return;  // a newer painting was asked for
  if (!response.ok) { status(""); message(await errorText(response)); clearResult(); restoreInputs(); return; }
  state.good = { photo: state.photo, paintings: state.paintings };
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  $("result").onload = () => {  // once: later pictures (a refine's) are not this painting
    $("result").onload = null;
    const ms = performance.now() - start;
    $("result").dataset.paintMs = ms.toFixed(0);
    $("result").dataset.version = String(version);
    status(`painted in ${ms.toFixed(0)} ms (the network: ${(1000 * Number(response.headers.get("X-Paint-Seconds"))).toFixed(0)} ms)`);
  };
  showResult(url, decodeURIComponent(response.headers.get("X-Command") || ""));  // percent-encoded by the server
}

// ---- refine over a WebSocket --------------------------------------------------------------------
async function refine() {
  message("");
  const response = await fetch("/api/refine", { method: "POST", body: await form() });
  if (!response.ok) { message(await errorText(response)); return; }
  const { job } = await response.json();
  state.job = job;
  $("refine").disabled = true;
  $("stop").disabled = false;
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/jobs/${job}`);
  state.socket = socket;
  socket.onmessage = (e) => {
    const ev = JSON.parse(e.data);
    if (ev.type === "queued") status(`waiting for the device: ${ev.place} job(s) ahead`);
    if (ev.type === "started") { status("refining..."); $("progress").hidden = false; $("command").textContent = ev.command; }
    if (ev.type === "progress") {  // ev.steps is null for a refine given a time: its progress is the time spent
      const of = ev.steps === null ? "" : `/${ev.steps}`;
      window.lastProgress = `step ${ev.step}${of}, ${ev.seconds_per_step.toFixed(3)} s/step`;
      $("progress").value = ev.fraction;
      status(`step ${ev.step}${of}, loss ${ev.loss.toPrecision(4)}, ${ev.seconds_per_step.toFixed(2)} s/step, ${ev.steps === null ? "" : "ETA "}${Math.round(ev.eta)} s${ev.steps === null ? " left" : ""}`);
      $("status").dataset.step = String(ev.step);
    }
    if (ev.image) showResult(ev.image, ev.command);
    if (ev.type === "done" || ev.type === "stopped") {
      status(ev.type === "done" ? `refined (${ev.step} step${ev.step === 1 ? "" : "s"})` : `stopped at step ${ev.step}`);
      $("status").dataset.finished = ev.type;
    }
    if (ev.type === "error") message(ev.message);
  };
  socket.onclose = () => {
    state.job = null; state.socket = null;
    $("refine").disabled = false; $("stop").disabled = true; $("progress").hidden = true;
  };
}

// ---- painting in the browser (TensorFlow.js) ----------------------------------------------------
let browserModels = null;
function loadScript(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src; s.onload = resolve; s.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.append(s);
  });
}

function hardwareWebGL() {  // a GPU behind WebGL; software WebGL (SwiftShader, llvmpipe) is slower than WebAssembly
  const gl = document.createElement("canvas").getContext("webgl2") || document.createElement("canvas").getContext("webgl");
  if (!gl) return false;
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const renderer = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
  return !/swiftshader|llvmpipe|software/i.test(renderer);
}

async function models() {
  if (browserModels) return browserModels;
  if (!window.tf) {
    await loadScript("/tfjs/tf.min.js");
    await loadScript("/tfjs/tf-backend-wasm.min.js");
    tf.wasm.setWasmPaths("/tfjs/");
  }
  const asked = new URLSearchParams(location.search).get("backend");  // ?backend=webgl|wasm|cpu to choose
  await tf.setBackend(asked || (hardwareWebGL() ? "webgl" : "wasm"));
  await tf.ready();
  const [predict, transform] = await Promise.all(["style_predict", "style_transform"].map((m) => tf.loadGraphModel(`/tfjs/${m}/model.json`)));
  browserModels = { predict, transform };
  return browserModels;
}

function pictureElement(p) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("this browser cannot read that picture"));
    img.src = typeof p === "string" ? `/api/pictures/${p}` : URL.createObjectURL(p);
  });
}

function styleInput(painting) {  // the predictor's input: [1, 256, 256, 3] in [0, 1]
  const pixels = tf.browser.fromPixels(painting).toFloat().div(255).expandDims(0);
  // Magenta's network sees the painting's centred square (as the server's painter does); the universal painter all of it
  const [ph, pw] = [painting.naturalHeight, painting.naturalWidth], side = Math.min(ph, pw);
  const box = state.info.painter === "arbitrary"
    ? [[(ph - side) / 2 / ph, (pw - side) / 2 / pw, (ph + side) / 2 / ph, (pw + side) / 2 / pw]] : [[0, 0, 1, 1]];
  return tf.image.cropAndResize(pixels, box, [0], [256, 256]);
}

// ---- live: the webcam painted frame by frame in this browser -------------------------------------
let live = null;
async function startLive() {
  if (!state.paintings.length) { message("pick a painting first"); return; }
  try {
    const { predict, transform } = await models();
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    const video = $("live-video");
    video.srcObject = stream;
    await video.play();
    const painting = await pictureElement(state.paintings[0]);
    const representation = tf.tidy(() => predict.execute(styleInput(painting)));  // once per painting
    live = { stream, representation, frames: 0, start: performance.now() };
    $("live").textContent = "stop the webcam";
    $("live-canvas").hidden = false;
    $("placeholder").hidden = true;
    message("");
    const frame = async () => {
      if (!live) return;
      const side = Math.min(Number($("size").value), 512), strength = Number($("strength").value);
      const scale = side / Math.max(video.videoWidth, video.videoHeight);
      const h = Math.max(16, Math.round(video.videoHeight * scale)), w = Math.max(16, Math.round(video.videoWidth * scale));
      const out = tf.tidy(() => {
        const content = tf.image.resizeBilinear(tf.browser.fromPixels(video).toFloat().div(255).expandDims(0), [h, w], false, true);
        return transform.execute({ content, representation: live.representation, strength: tf.tensor1d([strength]) }).squeeze().clipByValue(0, 1);
      });
      await tf.browser.toPixels(out, $("live-canvas"));
      out.dispose();
      if (!live) return;
      live.frames += 1;
      const fps = live.frames / ((performance.now() - live.start) / 1000);
      Object.assign($("live-canvas").dataset, { frames: String(live.frames), fps: fps.toFixed(2) });
      status(`live: ${fps.toFixed(1)} frames/s at ${w}x${h} (TensorFlow.js, ${tf.getBackend()})`);
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  } catch (e) {
    message(`the webcam cannot be painted here: ${e.message}`);
    stopLive();
  }
}

function stopLive() {
  if (live) { live.stream.getTracks().forEach((t) => t.stop()); live.representation.dispose(); }
  live = null;
  $("live").textContent = "live webcam";
  $("live-canvas").hidden = true;
  $("placeholder").hidden = !$("result").hidden;
}

const BROWSER_HONOURS = new Set(["size", "strength"]);  // the TensorFlow.js export's inputs
function unusedInBrowser() {  // what the server's painting would honour and this browser's does not
  const unused = state.info.options
    .filter((o) => o.group === "paint" && !BROWSER_HONOURS.has(o.name) && $(o.name).value !== String(o.default ?? ""))
    .map((o) => `no ${o.label.toLowerCase()}`);
  if (state.paintings.length > 1) unused.unshift("only the first painting");
  if (!$("mask-canvas").hidden && state.maskDrawn) unused.push("no region");
  return unused;
}

async function paintInBrowser(version, start) {
  try {
    const { predict, transform } = await models();
    const size = Number($("size").value), strength = Number($("strength").value);
    const photo = await pictureElement(state.photo), painting = await pictureElement(state.paintings[0]);
    const scale = size / Math.max(photo.naturalWidth, photo.naturalHeight);
    const h = Math.max(16, Math.round(photo.naturalHeight * scale)), w = Math.max(16, Math.round(photo.naturalWidth * scale));
    const out = tf.tidy(() => {
      const style = styleInput(painting);
      const representation = predict.execute(style);
      const content = tf.image.resizeBilinear(tf.browser.fromPixels(photo).toFloat().div(255).expandDims(0), [h, w], false, true);
      return transform.execute({ content, representation, strength: tf.tensor1d([strength]) }).squeeze().clipByValue(0, 1);
    });
    const canvas = document.createElement("canvas");
    await tf.browser.toPixels(out, canvas);
    out.dispose();
    if (version !== state.version) return;
    const ms = performance.now() - start;
    $("result").onload = () => { $("result").onload = null; $("result").dataset.paintMs = ms.toFixed(0); $("result").dataset.version = String(version); };
    const unused = unusedInBrowser();
    status(`painted in this browser in ${ms.toFixed(0)} ms (TensorFlow.js, ${tf.getBackend()})` + (unused.length ? `: ${unused.join(", ")} (the server's painting has them)` : ""));
    const note = "painted in this browser by the TensorFlow.js export (nst-tf-export-network --tfjs_dir)";
    canvas.toBlob((blob) => showResult(URL.createObjectURL(blob), note), "image/png");
  } catch (e) {
    message(`painting in the browser failed: ${e.message}`);
    status("");
  }
}

// ---- start --------------------------------------------------------------------------------------
function buildControls(options) {  // one control per option the server described; its id is the option's name
  for (const o of options) {
    const label = document.createElement("label");
    label.title = o.help;
    label.append(`${o.label} `);
    let control;
    if (o.values) {
      control = document.createElement("select");
      o.values.forEach((v, i) => control.add(new Option(o.labels[i], v, false, String(v) === String(o.default))));
    } else {
      control = document.createElement("input");
      control.type = o.slider ? "range" : "number";
      if (o.low !== null) control.min = o.low;
      if (o.high !== null) control.max = o.high;
      control.step = o.step;
      control.value = o.default === null ? "" : o.default;
      if (o.default === null) control.placeholder = "off";
    }
    control.id = o.name;
    control.dataset.group = o.group;
    label.append(control);
    if (o.slider) {
      const shown = document.createElement("output");
      shown.id = `${o.name}-value`;
      shown.textContent = control.value;
      control.addEventListener("input", () => { shown.textContent = control.value; });
      label.append(" ", shown);
    }
    $(`${o.group}-options`).append(label);
    if (o.group === "paint") control.addEventListener("input", paintSoon);
  }
}

async function start() {
  state.info = await (await fetch("/api/info")).json();
  buildControls(state.info.options);
  const browser = ["style_predict", "style_transform"].every((m) => state.info.tfjs.includes(m));
  $("browser-row").hidden = !browser;
  $("photo-input").addEventListener("change", (e) => picked("photo", e.target.files));
  $("painting-input").addEventListener("change", (e) => picked("painting", e.target.files));
  dropZone($("photo-drop"), "photo");
  dropZone($("painting-drop"), "painting");
  for (const id of ["blend", "in-browser"]) $(id).addEventListener("input", paintSoon);
  $("live").addEventListener("click", () => (live ? stopLive() : startLive()));
  $("refine").addEventListener("click", refine);
  $("stop").addEventListener("click", () => { if (state.socket) state.socket.send("stop"); });
  maskDrawing();
  await loadBundled();
}

start();

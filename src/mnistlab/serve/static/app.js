// The drawing page: pointer strokes on a canvas, throttled requests to /activations while you
// draw, and the answer rendered as probability bars, the 28x28 input and feature maps.
"use strict";

const MIN_INTERVAL_MS = 120; // at most ~8 requests a second while drawing
const STROKE = 0.075; // line width as a fraction of the canvas side (MNIST strokes are thick)

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const inputCanvas = document.getElementById("input");
const bars = document.getElementById("bars");
const statusLine = document.getElementById("status");
const predictionBox = document.getElementById("prediction");
const confidenceBox = document.getElementById("confidence");
const layersBox = document.getElementById("layers");

let classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
let drawing = false;
let last = null; // the previous point of the current stroke
let hasInk = false;
let version = 0; // bumped on every change to the drawing
let sentVersion = 0; // the version of the request in flight or last answered
let inFlight = false;
let lastSent = 0;
let timer = null;

// ---- canvas -------------------------------------------------------------------------------

function resizePad() {
  // Draw at the screen's pixel density so strokes stay smooth; keep the drawing.
  const side = Math.round(pad.clientWidth * (window.devicePixelRatio || 1));
  if (side === pad.width || side === 0) return;
  const old = hasInk ? ctx.getImageData(0, 0, pad.width, pad.height) : null;
  const oldSide = pad.width;
  pad.width = pad.height = side;
  clearPad(false);
  if (old) {
    const tmp = document.createElement("canvas");
    tmp.width = tmp.height = oldSide;
    tmp.getContext("2d").putImageData(old, 0, 0);
    ctx.drawImage(tmp, 0, 0, side, side);
  }
}

function clearPad(reset = true) {
  // An opaque black field: the server reads white ink on black, like MNIST itself.
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  if (!reset) return;
  hasInk = false;
  document.body.classList.remove("has-ink");
  version += 1;
  if (!inFlight) document.body.dataset.state = "idle";
  showEmpty();
}

function point(event) {
  const rect = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) / rect.width) * pad.width,
    y: ((event.clientY - rect.top) / rect.height) * pad.height,
  };
}

function strokeTo(p) {
  ctx.strokeStyle = "#fff";
  ctx.fillStyle = "#fff";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.lineWidth = STROKE * pad.width;
  if (last) {
    ctx.beginPath();
    ctx.moveTo(last.x, last.y);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
  } else { // a dot
    ctx.beginPath();
    ctx.arc(p.x, p.y, ctx.lineWidth / 2, 0, 2 * Math.PI);
    ctx.fill();
  }
  last = p;
  hasInk = true;
  document.body.classList.add("has-ink");
  version += 1;
  document.body.dataset.state = "busy"; // until the answer for this version is in
  schedule();
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 && event.pointerType === "mouse") return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = true;
  last = null;
  strokeTo(point(event));
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  // Coalesced events: every sample the pointer produced since the last frame, not just one.
  const samples = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const sample of samples.length ? samples : [event]) strokeTo(point(sample));
});

function endStroke() {
  if (!drawing) return;
  drawing = false;
  last = null;
  schedule(true);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
document.getElementById("clear").addEventListener("click", () => clearPad());
document.addEventListener("keydown", (event) => { if (event.key === "Escape") clearPad(); });
window.addEventListener("resize", resizePad);

// ---- requests -----------------------------------------------------------------------------

function schedule(now = false) {
  // One request in flight at a time, at most one per MIN_INTERVAL_MS; the latest drawing wins.
  if (!hasInk || inFlight || sentVersion === version) return;
  const wait = now ? 0 : Math.max(0, lastSent + MIN_INTERVAL_MS - performance.now());
  clearTimeout(timer);
  timer = setTimeout(send, wait);
}

function send() {
  if (!hasInk || inFlight) return;
  inFlight = true;
  sentVersion = version;
  lastSent = performance.now();
  pad.toBlob(async (blob) => {
    try {
      const response = await fetch("/activations", {
        method: "POST", headers: { "content-type": "image/png" }, body: blob,
      });
      const body = await response.json();
      if (!hasInk) return; // cleared while the request was out
      if (response.ok) render(body);
      else showError(body.error || `HTTP ${response.status}`, response.status);
    } catch (err) {
      showError(`server not reachable (${err.message})`, 0);
    } finally {
      inFlight = false;
      if (hasInk && sentVersion !== version) schedule(); // the drawing changed meanwhile
      else document.body.dataset.state = "idle";
    }
  }, "image/png");
}

// ---- rendering ----------------------------------------------------------------------------

function buildBars() {
  bars.classList.toggle("named", classes.some((name) => name.length > 2));
  bars.replaceChildren(...classes.map((name) => {
    const li = document.createElement("li");
    li.innerHTML = '<span class="label"></span><span class="track"><span class="fill"></span>' +
      '</span><span class="value">–</span>';
    li.querySelector(".label").textContent = name;
    return li;
  }));
}

function render(body) {
  const p = body.prediction;
  statusLine.textContent = "";
  statusLine.classList.remove("error");
  predictionBox.textContent = p.class;
  predictionBox.classList.toggle("long", p.class.length > 2); // e.g. Fashion-MNIST's names
  predictionBox.dataset.label = String(p.label);
  confidenceBox.textContent = percent(p.probability);
  [...bars.children].forEach((li, i) => {
    const prob = p.probabilities[i];
    li.querySelector(".fill").style.width = `${(prob * 100).toFixed(1)}%`;
    li.querySelector(".value").textContent = percent(prob);
    li.classList.toggle("top", i === p.label);
  });
  drawInput(p.input);
  drawLayers(body.layers);
}

function percent(x) {
  return x >= 0.9995 ? "100%" : x < 0.0005 ? "0%" : `${(x * 100).toFixed(1)}%`;
}

function drawInput(rows) {
  const c = inputCanvas.getContext("2d");
  const image = c.createImageData(28, 28);
  rows.flat().forEach((v, i) => {
    image.data.set([v, v, v, 255], i * 4);
  });
  c.putImageData(image, 0, 0);
}

function drawLayers(layers) {
  if (!layers.length) {
    layersBox.innerHTML = '<p class="muted small">This model has no convolution layers ' +
      "(its first layer sees the 784 pixels as one vector), so there are no feature maps.</p>";
    return;
  }
  const figures = layers.map((layer) => {
    const [channels, h, w] = layer.shape;
    const fig = document.createElement("figure");
    fig.className = "layer";
    const img = document.createElement("img");
    img.src = layer.image;
    img.alt = `feature maps of ${layer.name}`;
    // Integer zoom, so that every feature-map pixel is the same size on screen.
    const zoom = Math.max(1, Math.floor(Math.min(5, 560 / (layer.cols * (w + 1)))));
    img.width = layer.cols * (w + 1) * zoom;
    const cap = document.createElement("figcaption");
    const after = layer.name === layer.conv ? "" : ` after conv <b>${layer.conv}</b>`;
    const shown = layer.shown < channels ? ` (first ${layer.shown} shown)` : "";
    cap.innerHTML = `<b>${layer.name}</b> ${layer.kind}${after} · ${channels} maps of ` +
      `${h}×${w}${shown}`;
    fig.append(img, cap);
    return fig;
  });
  layersBox.replaceChildren(...figures);
}

function showEmpty() {
  predictionBox.textContent = "?";
  delete predictionBox.dataset.label;
  confidenceBox.textContent = "–";
  buildBars();
  inputCanvas.getContext("2d").clearRect(0, 0, 28, 28);
  statusLine.textContent = "";
  statusLine.classList.remove("error");
}

function showError(message, status) {
  if (status === 422) { // an empty canvas: not worth a red line
    showEmpty();
    return;
  }
  statusLine.textContent = message;
  statusLine.classList.add("error");
}

async function loadModelInfo() {
  const line = document.getElementById("model-info");
  try {
    const info = await (await fetch("/model")).json();
    classes = info.classes;
    buildBars();
    const accuracy = info.test_accuracy == null ? "" :
      ` · ${(info.test_accuracy * 100).toFixed(2)}% on the ${info.dataset} test set`;
    line.textContent = `${info.name} · ${info.parameters.toLocaleString("en")} parameters` +
      `${accuracy} · ${info.device}`;
  } catch (err) {
    line.textContent = "model information unavailable";
  }
}

buildBars();
resizePad();
clearPad();
loadModelInfo();

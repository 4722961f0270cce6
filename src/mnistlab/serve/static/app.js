// The drawing page: pointer strokes on a canvas, throttled requests while you draw, and the
// answer rendered as probability bars, the 28x28 input and feature maps - or, in whole-number
// mode, the digits read with their boxes drawn over the canvas.
"use strict";

const MIN_INTERVAL_MS = 120; // at most ~8 requests a second while drawing
const STROKE = 0.075; // line width as a fraction of the canvas height (MNIST strokes are thick)

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const boxes = document.getElementById("boxes");
const inputCanvas = document.getElementById("input");
const inputsBox = document.getElementById("inputs");
const bars = document.getElementById("bars");
const digitsList = document.getElementById("digits");
const statusLine = document.getElementById("status");
const predictionBox = document.getElementById("prediction");
const confidenceBox = document.getElementById("confidence");
const confidenceNote = document.getElementById("confidence-note");
const layersBox = document.getElementById("layers");
const modeButton = document.getElementById("mode");

let classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
let numberMode = false;
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
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round(pad.clientWidth * ratio);
  const height = Math.round(pad.clientHeight * ratio);
  if ((width === pad.width && height === pad.height) || width === 0 || height === 0) return;
  const old = hasInk ? ctx.getImageData(0, 0, pad.width, pad.height) : null;
  const [oldWidth, oldHeight] = [pad.width, pad.height];
  pad.width = boxes.width = width;
  pad.height = boxes.height = height;
  clearPad(false);
  if (old) {
    const tmp = document.createElement("canvas");
    tmp.width = oldWidth;
    tmp.height = oldHeight;
    tmp.getContext("2d").putImageData(old, 0, 0);
    ctx.drawImage(tmp, 0, 0, width, height);
  }
}

function clearPad(reset = true) {
  // An opaque black field: the server reads white ink on black, like MNIST itself.
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  boxes.getContext("2d").clearRect(0, 0, boxes.width, boxes.height);
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
  ctx.lineWidth = STROKE * pad.height;
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

modeButton.addEventListener("click", () => {
  numberMode = !numberMode;
  document.body.classList.toggle("number", numberMode);
  modeButton.setAttribute("aria-pressed", String(numberMode));
  modeButton.textContent = numberMode ? "Digit" : "Number";
  modeButton.title = numberMode ? "Back to one digit" : "Write a whole number instead of one digit";
  document.getElementById("draw-title").textContent = numberMode ? "Write a number" :
    "Draw a digit";
  document.getElementById("hint").textContent = numberMode ? "write a number here, e.g. 2026" :
    "draw 0–9 here";
  resizePad();
  clearPad();
});

// ---- requests -----------------------------------------------------------------------------

function schedule(now = false) {
  // One request in flight at a time, at most one per MIN_INTERVAL_MS; the latest drawing wins.
  if (!hasInk || inFlight || sentVersion === version) return;
  const wait = now ? 0 : Math.max(0, lastSent + MIN_INTERVAL_MS - performance.now());
  clearTimeout(timer);
  timer = setTimeout(send, wait);
}

async function send() {
  if (!hasInk || inFlight) return;
  inFlight = true;
  sentVersion = version;
  lastSent = performance.now();
  const asNumber = numberMode;
  // Encoded synchronously, now: canvas.toBlob may wait for idle time (about a second in
  // Chromium after the pen lifts), and the final answer would arrive that much late.
  const body = JSON.stringify({ image: pad.toDataURL("image/png") });
  try {
    const response = await fetch(asNumber ? "/predict?number=true" : "/activations", {
      method: "POST", headers: { "content-type": "application/json" }, body,
    });
    let answer;
    try {
      answer = await response.json();
    } catch (err) { // not JSON: a proxy's error page, say
      answer = { error: `HTTP ${response.status} ${response.statusText}` };
    }
    if (!hasInk || asNumber !== numberMode) return; // cleared or switched meanwhile
    if (response.ok) {
      if (asNumber) renderNumber(answer);
      else render(answer);
      fresh();
    } else {
      showError(answer.error || `HTTP ${response.status}`, response.status);
    }
  } catch (err) {
    showError(`server not reachable (${err.message}): the answer shown is out of date`, 0);
  } finally {
    inFlight = false;
    if (hasInk && sentVersion !== version) schedule(); // the drawing changed meanwhile
    else document.body.dataset.state = "idle";
  }
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

function showVerdict(p) {
  // A digit: the big answer. Not a digit: say so, and the best guess only small.
  const reject = p.is_digit === false;
  predictionBox.classList.remove("number");
  predictionBox.classList.toggle("reject", reject);
  predictionBox.classList.toggle("long", !reject && p.class.length > 2); // Fashion-MNIST names
  predictionBox.textContent = reject ? "not a digit" : p.class;
  predictionBox.dataset.label = String(p.label);
  predictionBox.dataset.answer = predictionBox.textContent;
  confidenceBox.classList.toggle("guess", reject);
  confidenceBox.textContent = reject ? `best guess ${p.class} · ${percent(p.probability)}` :
    percent(p.probability);
  confidenceNote.textContent = reject ? (p.reason || "") :
    "softmax probability of the top class";
}

function render(body) {
  const p = body.prediction;
  showVerdict(p);
  [...bars.children].forEach((li, i) => {
    const prob = p.probabilities[i];
    li.querySelector(".fill").style.width = `${(prob * 100).toFixed(1)}%`;
    li.querySelector(".value").textContent = percent(prob);
    li.classList.toggle("top", i === p.label);
  });
  drawInput(inputCanvas, p.input);
  drawLayers(body.layers);
}

function renderNumber(body) {
  predictionBox.classList.remove("reject", "long");
  predictionBox.classList.add("number");
  predictionBox.textContent = body.text;
  predictionBox.dataset.label = body.text;
  predictionBox.dataset.answer = body.text;
  confidenceBox.classList.remove("guess");
  const doubtful = body.digits.filter((d) => d.is_digit === false).length;
  confidenceBox.textContent = `${body.digits.length} digit${body.digits.length === 1 ? "" : "s"}`;
  confidenceNote.textContent = doubtful ?
    `${doubtful} of them may not be a digit (marked)` : "read left to right";
  digitsList.replaceChildren(...body.digits.map((d) => {
    const li = document.createElement("li");
    li.classList.toggle("reject", d.is_digit === false);
    const b = document.createElement("b");
    b.textContent = d.class;
    li.append(b, d.is_digit === false ? `not a digit? ${percent(d.probability)}` :
      percent(d.probability));
    return li;
  }));
  inputsBox.replaceChildren(...body.digits.map((d) => {
    const c = document.createElement("canvas");
    c.width = c.height = 28;
    drawInput(c, d.input);
    return c;
  }));
  drawBoxes(body.digits);
}

function drawBoxes(digits) {
  // Boxes come in the picture's pixels, which are the canvas's own.
  const g = boxes.getContext("2d");
  g.clearRect(0, 0, boxes.width, boxes.height);
  const line = Math.max(2, boxes.height / 140);
  g.lineWidth = line;
  g.font = `600 ${Math.round(boxes.height / 9)}px system-ui, sans-serif`;
  g.textBaseline = "bottom";
  for (const d of digits) {
    const [x, y, w, h] = d.box;
    const colour = d.is_digit === false ? "#f97066" : "#818cf8";
    g.strokeStyle = g.fillStyle = colour;
    g.strokeRect(x - line, y - line, w + 2 * line, h + 2 * line);
    g.fillText(d.class, x, Math.max(boxes.height / 9, y - 2 * line));
  }
}

function percent(x) {
  return x >= 0.9995 ? "100%" : x < 0.0005 ? "0%" : `${(x * 100).toFixed(1)}%`;
}

function drawInput(canvas, rows) {
  const c = canvas.getContext("2d");
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

function fresh() {
  statusLine.textContent = "";
  statusLine.classList.remove("error");
  document.body.classList.remove("stale");
}

function showEmpty() {
  predictionBox.textContent = "?";
  predictionBox.classList.remove("reject", "long", "number");
  delete predictionBox.dataset.label;
  delete predictionBox.dataset.answer;
  confidenceBox.textContent = "–";
  confidenceBox.classList.remove("guess");
  confidenceNote.textContent = numberMode ? "the digits, read left to right" :
    "softmax probability of the top class";
  buildBars();
  digitsList.replaceChildren();
  inputsBox.replaceChildren();
  inputCanvas.getContext("2d").clearRect(0, 0, 28, 28);
  boxes.getContext("2d").clearRect(0, 0, boxes.width, boxes.height);
  fresh();
}

function showError(message, status) {
  if (status === 422) { // an empty canvas: not worth a red line
    showEmpty();
    return;
  }
  // Whatever is on screen no longer answers the drawing - the answer, the 28x28 input and
  // the feature maps alike: dim it all, and say why.
  document.body.classList.add("stale");
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

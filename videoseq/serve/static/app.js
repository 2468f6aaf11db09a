// The videoseq page: upload a video to POST /v1/predict, or stream the webcam to WS /v1/stream.
// Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#2b73c2", "#e4731b", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const MAX_SIDE = 320;  // webcam frames are scaled down to this long side before JPEG encoding
const HEADER_BYTES = 12;  // uint32 frame number + float64 seconds, little-endian
let model = null;

function errorText(body, status) {
  return body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${status}`;
}

function setStatus(id, text, isError = false) {
  $(id).textContent = text;
  $(id).className = isError ? "status error" : "status";
}

async function loadModel() {
  const response = await fetch("/v1/model");
  model = await response.json();
  const rate = model.frame_rate ? `, trained at ${model.frame_rate} fps` : "";
  $("model").textContent = `${model.name}: ${model.num_classes} classes, ${model.clip_len} frames of ` +
    `${model.input_size} px${rate}, ${model.backbone} + ${model.head} (videoseq ${model.version})`;
  $("topk").max = model.num_classes;
  $("topk").value = Math.min(5, model.num_classes);
}

// ------------------------------------------------------------------ files

function setupFiles() {
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (event) => {
    const file = event.dataTransfer.files[0];
    if (file) upload(file);
  });
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) upload(file);
  });
}

function predictQuery() {
  const query = new URLSearchParams({ topk: $("topk").value });
  const window = parseFloat($("window").value), stride = parseFloat($("stride").value);
  if (window > 0) {
    query.set("window", window);
    if (stride > 0) query.set("stride", stride);
  }
  return query;
}

async function upload(file) {
  setStatus("file-status", `classifying ${file.name}…`);
  const form = new FormData();
  form.append("file", file, file.name);
  const started = performance.now();
  let response, body;
  try {
    response = await fetch(`/v1/predict?${predictQuery()}`, { method: "POST", body: form });
    body = await response.json();
  } catch (err) {
    setStatus("file-status", `error: ${err}`, true);
    return;
  }
  if (!response.ok) {
    setStatus("file-status", `error ${errorText(body, response.status)}`, true);
    return;
  }
  const v = body.video, seconds = (performance.now() - started) / 1000;
  setStatus("file-status", `${body.file}: ${v.frames} frames, ${v.duration_s.toFixed(2)} s at ` +
    `${v.fps.toFixed(1)} fps, ${v.width}x${v.height}; answered in ${seconds.toFixed(2)} s`);
  renderScores($("topk-list"), body.topk || []);
  drawTimeline($("timeline"), body.windows || [], body.segments || [], body.topk || []);
  renderSegments(body.segments || []);
}

function renderScores(list, top) {
  list.replaceChildren(...top.map(({ label, score }) => {
    const item = document.createElement("li");
    const name = document.createElement("span"), bar = document.createElement("span");
    const value = document.createElement("span");
    name.className = "label"; bar.className = "bar"; value.className = "score";
    name.textContent = label;
    bar.style.width = `${(score * 40).toFixed(1)}%`;
    value.textContent = score.toFixed(3);
    item.append(name, bar, value);
    return item;
  }));
}

function renderSegments(segments) {
  $("segments").replaceChildren(...segments.map((s) => {
    const item = document.createElement("li");
    item.textContent = `${s.label}: ${s.start_s.toFixed(2)}–${s.end_s.toFixed(2)} s (peak ${s.peak.toFixed(2)})`;
    return item;
  }));
}

// The classes drawn: every window's top-1, then the video's top-k, at most as many as there are colours.
function shownClasses(windows, top) {
  const labels = [...windows.map((w) => w.topk[0].label), ...top.map((t) => t.label)];
  return [...new Set(labels)].slice(0, COLORS.length);
}

function drawAxes(ctx, box, endTime) {
  ctx.strokeStyle = "#d5dbe1"; ctx.fillStyle = "#4a5560"; ctx.lineWidth = 1; ctx.font = "12px sans-serif";
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    const y = box.y(p);
    ctx.beginPath(); ctx.moveTo(box.left, y); ctx.lineTo(box.right, y); ctx.stroke();
    ctx.fillText(p.toFixed(2), 4, y + 4);
  }
  const step = Math.max(0.5, Math.ceil(endTime / 8 * 2) / 2);
  for (let t = 0; t <= endTime + 1e-9; t += step) {
    ctx.fillText(`${t.toFixed(1)} s`, box.x(t) - 12, box.bottom + 16);
  }
}

function drawTimeline(canvas, windows, segments, top) {
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!windows.length) {
    ctx.fillStyle = "#4a5560"; ctx.font = "14px sans-serif";
    ctx.fillText("set a window (seconds) to see the scores over time", 20, canvas.height / 2);
    return;
  }
  const endTime = Math.max(...windows.map((w) => w.end_s));
  const box = { left: 40, right: canvas.width - 190, top: 30, bottom: canvas.height - 26 };
  box.x = (t) => box.left + (box.right - box.left) * t / endTime;
  box.y = (p) => box.bottom - (box.bottom - box.top) * p;
  drawAxes(ctx, box, endTime);
  const shown = shownClasses(windows, top);
  shown.forEach((label, n) => {
    const c = model.classes.indexOf(label);
    ctx.strokeStyle = ctx.fillStyle = COLORS[n];
    ctx.lineWidth = 2;
    ctx.beginPath();
    windows.forEach((w, i) => {
      const x = box.x((w.start_s + w.end_s) / 2), y = box.y(w.scores[c]);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillRect(box.right + 14, box.top + n * 20, 12, 12);
    ctx.fillStyle = "#1d232a";
    ctx.fillText(label, box.right + 32, box.top + n * 20 + 11);
  });
  for (const s of segments) {  // merged segments as bars above the plot
    ctx.fillStyle = COLORS[Math.max(0, shown.indexOf(s.label))];
    ctx.fillRect(box.x(s.start_s), 8, Math.max(2, box.x(s.end_s) - box.x(s.start_s)), 12);
  }
}

// ------------------------------------------------------------------ webcam

let live = null;

async function startWebcam() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    setStatus("live-status", `no camera: ${err.name}: ${err.message}`, true);
    return;
  }
  const video = $("video");
  video.srcObject = stream;
  await video.play();
  const settings = stream.getVideoTracks()[0].getSettings();
  const query = new URLSearchParams({ topk: Math.min(3, model.num_classes), events: 1 });
  if (settings.frameRate) query.set("fps", settings.frameRate.toFixed(3));
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/stream?${query}`);
  ws.binaryType = "arraybuffer";
  live = { stream, ws, seq: 0, t0: null, busy: false, stopped: false, sentAt: new Map(),
           latencies: [], answers: [], dropped: 0, steps: 0, canvas: document.createElement("canvas") };
  ws.onopen = () => nextFrame(live);
  ws.onmessage = (event) => onMessage(live, JSON.parse(event.data));
  ws.onclose = (event) => onClose(live, event);
  $("webcam").disabled = true;
  $("stop").disabled = false;
  $("overlay").hidden = false;
  setStatus("live-status", `camera ${video.videoWidth}x${video.videoHeight}` +
    (settings.frameRate ? ` at ${settings.frameRate.toFixed(1)} fps` : "") + ", connecting…");
}

// One frame per new camera frame (requestVideoFrameCallback), else one per screen refresh.
function nextFrame(session) {
  if (session.stopped) return;
  const video = $("video");
  if (video.requestVideoFrameCallback) {
    video.requestVideoFrameCallback((now, meta) => { sendFrame(session, meta.captureTime ?? now); nextFrame(session); });
  } else {
    requestAnimationFrame((now) => { sendFrame(session, now); nextFrame(session); });
  }
}

function sendFrame(session, timeMs) {
  if (session.stopped || session.busy || session.ws.readyState !== WebSocket.OPEN) return;
  const video = $("video"), canvas = session.canvas;
  if (!video.videoWidth) return;
  const scale = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  if (session.t0 === null) session.t0 = timeMs;
  const seq = session.seq++, seconds = (timeMs - session.t0) / 1000;
  session.busy = true;  // one JPEG encoding at a time keeps the frames in order
  canvas.toBlob(async (blob) => {
    if (blob && !session.stopped && session.ws.readyState === WebSocket.OPEN) {
      const jpeg = new Uint8Array(await blob.arrayBuffer());
      const message = new Uint8Array(HEADER_BYTES + jpeg.length);
      const view = new DataView(message.buffer);
      view.setUint32(0, seq, true);
      view.setFloat64(4, seconds, true);
      message.set(jpeg, HEADER_BYTES);
      session.sentAt.set(seq, performance.now());
      session.ws.send(message.buffer);
    }
    session.busy = false;
  }, "image/jpeg", 0.85);
}

function recent(list, value, size = 30) {
  list.push(value);
  if (list.length > size) list.shift();
}

function onMessage(session, m) {
  if (m.type === "ready") {
    const pace = m.interval_s ? `one frame every ${m.interval_s.toFixed(3)} s` : "every frame";
    setStatus("live-status", `streaming: the model keeps ${pace}, ${m.clip_len} frames per prediction`);
  } else if (m.type === "result") {
    onResult(session, m);
  } else if (m.type === "event") {
    const item = document.createElement("li");
    item.textContent = `${m.label}: ${m.start_s.toFixed(2)}–${m.end_s.toFixed(2)} s (peak ${m.peak.toFixed(2)})`;
    $("events").prepend(item);
  } else if (m.type === "error") {
    setStatus("live-status", `error ${m.code}: ${m.message}`, true);
  } else if (m.type === "summary") {
    setStatus("live-status", `stopped: ${m.received} frames sent, ${m.processed} processed, ${m.steps} ` +
      `predictions, ${m.dropped} dropped, ${m.events} gestures`);
  }
}

function onResult(session, m) {
  const now = performance.now(), sentAt = session.sentAt.get(m.seq);
  for (const seq of [m.seq, ...m.dropped]) session.sentAt.delete(seq);
  if (sentAt !== undefined) recent(session.latencies, now - sentAt);
  recent(session.answers, now);
  session.dropped = m.dropped_total;
  if (m.topk) {
    session.steps += 1;
    renderScores($("live-labels"), m.topk);
  } else if (!session.steps) {
    $("live-labels").replaceChildren(Object.assign(document.createElement("li"), { textContent: "filling…" }));
  }
  const a = session.answers, span = (a[a.length - 1] - a[0]) / 1000;
  const fps = a.length > 1 && span > 0 ? (a.length - 1) / span : 0;
  const latency = session.latencies.reduce((x, y) => x + y, 0) / Math.max(1, session.latencies.length);
  $("live-stats").textContent = `${fps.toFixed(1)} fps · ${latency.toFixed(0)} ms · ${session.dropped} dropped`;
}

function onClose(session, event) {
  session.stopped = true;
  if (event.code !== 1000 && event.reason) setStatus("live-status", `closed: ${event.reason}`, true);
  stopCamera(session);
}

function stopCamera(session) {
  for (const track of session.stream.getTracks()) track.stop();
  $("webcam").disabled = false;
  $("stop").disabled = true;
}

function stopWebcam() {
  if (!live || live.stopped) return;
  live.stopped = true;
  if (live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({ type: "end" }));
  stopCamera(live);
}

$("webcam").addEventListener("click", startWebcam);
$("stop").addEventListener("click", stopWebcam);
setupFiles();
loadModel().catch((err) => setStatus("file-status", `cannot read /v1/model: ${err}`, true));

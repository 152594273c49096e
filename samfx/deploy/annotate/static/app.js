// samfx annotate: the page. Plain JS, no build step. Every mask shown comes from the server's session
// (samfx.deploy.annotate.session); the page only draws it and sends operations.
"use strict";

const COLORS = [[0, 0, 0], [230, 57, 70], [42, 157, 143], [233, 196, 106], [69, 123, 157], [244, 162, 97],
  [131, 56, 236], [255, 0, 110], [58, 134, 255], [6, 214, 160]];
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const TOKEN = params.get("token") || sessionStorage.getItem("samfx-token") || "";
if (params.get("token")) {
  sessionStorage.setItem("samfx-token", TOKEN);
  history.replaceState(null, "", location.pathname);   // the token leaves the address bar (the cookie stays)
}

const S = {
  info: null, sid: null, st: null, t: 0, cls: 1, tool: "click", frames: [], labels: null,
  prompts: [], clinical: null, playing: null, drag: null, busy: 0, scale: 1,
};

// -- server ---------------------------------------------------------------------------------------------
function setBusy(delta) {
  S.busy += delta;
  document.body.dataset.busy = String(S.busy);
  $("status").textContent = S.busy ? "working…" : statusLine();
}

function showError(message) {
  $("errortext").textContent = message;
  $("error").hidden = false;
  document.body.dataset.error = message;
}

async function api(method, path, body, raw) {
  setBusy(1);
  try {
    const opts = { method, headers: { "X-Samfx-Token": TOKEN } };
    if (body instanceof Blob || body instanceof ArrayBuffer) {
      opts.body = body;
      opts.headers["Content-Type"] = "application/octet-stream";
    } else if (body !== undefined) {
      opts.body = JSON.stringify(body);
      opts.headers["Content-Type"] = "application/json";
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (err) {
      throw new Error("the server cannot be reached (" + err.message + "); is samfx annotate still running?");
    }
    if (!resp.ok) {
      let message = resp.status + " " + resp.statusText;
      try { message = (await resp.json()).error || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return raw ? new Uint8Array(await resp.arrayBuffer()) : await resp.json();
  } finally {
    setBusy(-1);
  }
}

async function guard(fn) {
  try {
    return await fn();
  } catch (err) {
    showError(err.message);
    return null;
  }
}

// -- opening ------------------------------------------------------------------------------------------
async function loadInfo() {
  S.info = await api("GET", "/api/info");
  $("runinfo").textContent = "prompt " + S.info.prompt + (S.info.temporal ? " · temporal module" : "");
  $("root").textContent = S.info.root;
  const classes = $("classes");
  S.info.classes.forEach((c, i) => {
    const b = document.createElement("button");
    b.textContent = (i + 1) + " " + S.info.class_names[i];
    b.dataset.cls = String(c);
    const [r, g, bl] = COLORS[c % COLORS.length];
    b.style.background = "rgb(" + r + "," + g + "," + bl + ")";
    b.style.color = "#fff";
    b.addEventListener("click", () => selectClass(c));
    classes.appendChild(b);
  });
  S.cls = S.info.classes[0];
  selectClass(S.cls);
  selectTool("click");
  const previous = sessionStorage.getItem("samfx-sid");
  if (previous && await reattach(previous)) {
    return;
  }
  if (S.info.files.length) {
    $("path").value = S.info.files[0];
    await openLoop({ path: S.info.files[0], item: 0 });
  } else {
    await listFiles(".");
  }
}

async function listFiles(dir) {
  const out = await api("GET", "/api/files?dir=" + encodeURIComponent(dir));
  const ul = $("filelist");
  ul.textContent = "";
  out.entries.forEach((e) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.textContent = e.name + (e.dir ? "/" : "");
    a.addEventListener("click", () => (e.dir ? guard(() => listFiles(e.path)) : ($("path").value = e.path)));
    li.appendChild(a);
    ul.appendChild(li);
  });
}

async function openLoop(body) {
  if (S.sid) {
    api("DELETE", "/api/sessions/" + S.sid).catch(() => null);
  }
  const out = await api("POST", "/api/sessions", body);
  await showSession(out.session, out.state);
}

async function reattach(sid) {
  // a reload of this tab finds its session again (sessionStorage is per tab); a missing one is forgotten
  try {
    const resp = await fetch("/api/sessions/" + sid, { headers: { "X-Samfx-Token": TOKEN } });
    if (!resp.ok) { throw new Error(String(resp.status)); }
    await showSession(sid, await resp.json());
    return true;
  } catch (err) {
    sessionStorage.removeItem("samfx-sid");
    return false;
  }
}

async function showSession(sid, state) {
  S.sid = sid;
  S.st = state;
  sessionStorage.setItem("samfx-sid", sid);
  S.t = 0;
  S.frames = new Array(S.st.frames);
  S.labels = await api("GET", "/api/sessions/" + S.sid + "/labels", undefined, true);
  $("slider").max = String(S.st.frames - 1);
  $("openbox").hidden = true;
  $("work").hidden = false;
  fitCanvas();
  await showFrame(0);
  await refreshClinical();
  document.body.dataset.ops = String(S.st.ops);
  document.body.dataset.ready = "1";
  pollProgress();
}

function fitCanvas() {
  const w = S.st.width, h = S.st.height;
  S.scale = Math.max(1, Math.min(Math.floor(720 / w) || 1, Math.floor(540 / h) || 1, 12));
  if (w * S.scale > 1000) { S.scale = 1000 / w; }
  $("canvas").width = Math.round(w * S.scale);
  $("canvas").height = Math.round(h * S.scale);
}

async function pollProgress() {
  const sid = S.sid;
  while (sid === S.sid) {
    const st = await api("GET", "/api/sessions/" + sid).catch(() => null);
    if (!st) { return; }
    S.st = st;
    $("status").textContent = statusLine();
    if (st.embedding.done >= st.embedding.total || st.embedding.full || st.embedding.error) { return; }
    await new Promise((r) => setTimeout(r, 400));
  }
}

function statusLine() {
  if (!S.st) { return ""; }
  const e = S.st.embedding;
  let text = S.st.name + " · " + S.st.frames + " frame(s) " + S.st.width + "×" + S.st.height;
  text += " · embeddings " + e.done + "/" + e.total + (e.full ? " (cache full: the rest on demand)" : "");
  if (e.error) { text += " · embedding error: " + e.error; }
  return text;
}

// -- drawing ------------------------------------------------------------------------------------------
async function frameData(t) {
  if (!S.frames[t]) {
    S.frames[t] = await api("GET", "/api/sessions/" + S.sid + "/frame/" + t, undefined, true);
  }
  return S.frames[t];
}

async function showFrame(t) {
  S.t = Math.max(0, Math.min(S.st.frames - 1, t));
  $("slider").value = String(S.t);
  $("frameno").textContent = "frame " + (S.t + 1) + " / " + S.st.frames;
  await frameData(S.t);
  S.prompts = await api("GET", "/api/sessions/" + S.sid + "/prompts/" + S.t);
  draw();
}

function draw(preview) {
  const w = S.st.width, h = S.st.height, n = w * h;
  const gray = S.frames[S.t];
  if (!gray) { return; }
  const lab = S.labels.subarray(S.t * n, (S.t + 1) * n);
  const img = new ImageData(w, h);
  for (let i = 0; i < n; i++) {
    let v = gray[i], r = v, g = v, b = v;
    const c = preview && preview[i] >= 0 ? preview[i] : lab[i];
    if (c > 0) {
      const col = COLORS[c % COLORS.length];
      r = 0.55 * v + 0.45 * col[0]; g = 0.55 * v + 0.45 * col[1]; b = 0.55 * v + 0.45 * col[2];
    }
    img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b; img.data[4 * i + 3] = 255;
  }
  const off = document.createElement("canvas");
  off.width = w; off.height = h;
  off.getContext("2d").putImageData(img, 0, 0);
  const ctx = $("canvas").getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, 0, 0, $("canvas").width, $("canvas").height);
  drawPrompts(ctx);
  drawCurve();
}

function toCanvas(x, y) {
  return [(x + 0.5) * $("canvas").width / S.st.width, (y + 0.5) * $("canvas").height / S.st.height];
}

function drawPrompts(ctx) {
  S.prompts.forEach((p) => {
    const col = COLORS[p.cls % COLORS.length];
    ctx.strokeStyle = "rgb(" + col.join(",") + ")";
    if (p.box) {
      const [x0, y0] = toCanvas(p.box[0], p.box[1]);
      const [x1, y1] = toCanvas(p.box[2], p.box[3]);
      ctx.lineWidth = 2;
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
    p.points.forEach(([x, y, pos]) => {
      const [cx, cy] = toCanvas(x, y);
      ctx.beginPath();
      ctx.arc(cx, cy, 5, 0, 2 * Math.PI);
      ctx.fillStyle = pos ? "#2e7d32" : "#c62828";
      ctx.fill();
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    });
  });
  if (S.drag && S.tool === "box") {
    const [x0, y0] = toCanvas(S.drag.x0, S.drag.y0);
    const [x1, y1] = toCanvas(S.drag.x1, S.drag.y1);
    ctx.strokeStyle = "#fff";
    ctx.setLineDash([4, 3]);
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }
}

function drawCurve() {
  const cv = $("curve"), ctx = cv.getContext("2d");
  ctx.clearRect(0, 0, cv.width, cv.height);
  const c = S.clinical;
  if (!c || S.st.frames < 2) { return; }
  const a = c.areas, max = Math.max(...a, 1e-9), pad = 24;
  const X = (i) => pad + (cv.width - 2 * pad) * i / (a.length - 1);
  const Y = (v) => cv.height - pad - (cv.height - 2 * pad) * v / max;
  ctx.fillStyle = "#555";
  ctx.font = "11px sans-serif";
  ctx.fillText("LV area (" + c.unit + ")", 4, 12);
  [["ED", c.ed, "#1565c0"], ["ES", c.es, "#c62828"]].forEach(([name, i, col]) => {
    if (i === null || i === undefined) { return; }
    ctx.strokeStyle = col;
    ctx.beginPath(); ctx.moveTo(X(i), pad); ctx.lineTo(X(i), cv.height - pad); ctx.stroke();
    ctx.fillStyle = col; ctx.fillText(name, X(i) + 3, pad + 10);
  });
  ctx.strokeStyle = "#999";
  ctx.beginPath(); ctx.moveTo(X(S.t), pad); ctx.lineTo(X(S.t), cv.height - pad); ctx.stroke();
  ctx.strokeStyle = "#222";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  a.forEach((v, i) => (i ? ctx.lineTo(X(i), Y(v)) : ctx.moveTo(X(i), Y(v))));
  ctx.stroke();
  ctx.lineWidth = 1;
}

async function refreshClinical() {
  if (S.st.frames < 2) { $("curve").hidden = true; return; }
  S.clinical = await api("GET", "/api/sessions/" + S.sid + "/clinical");
  const c = S.clinical, el = $("ef");
  el.textContent = "";
  const main = document.createElement("span");
  if (c.ef_estimate !== null && c.ef_estimate !== undefined) {
    main.textContent = "EF " + c.ef_estimate.toFixed(1) + " % (" + c.ef_method + ", ED frame " + (c.ed + 1) +
      ", ES frame " + (c.es + 1) + ")";
  } else {
    main.textContent = "EF withheld: " + (c.withheld || "not computed") + " (" + c.ef_method + ")";
  }
  el.appendChild(main);
  const prov = document.createElement("span");
  prov.className = c.synthetic_only ? "warn" : "";
  prov.textContent = " · model trained on " + (c.trained_on || "unknown data") +
    (c.synthetic_only ? ": synthetic data only, not for clinical use" : "");
  el.appendChild(prov);
  drawCurve();
}

// -- operations ---------------------------------------------------------------------------------------
async function op(body) {
  const out = await api("POST", "/api/sessions/" + S.sid + "/op", body);
  S.st = out.state;
  const frames = out.result.frames, n = S.st.width * S.st.height;
  if (frames.length > 4) {
    S.labels = await api("GET", "/api/sessions/" + S.sid + "/labels", undefined, true);
  } else {
    for (const t of frames) {
      S.labels.set(await api("GET", "/api/sessions/" + S.sid + "/labels?t=" + t, undefined, true), t * n);
    }
  }
  S.prompts = await api("GET", "/api/sessions/" + S.sid + "/prompts/" + S.t);
  await refreshClinical();
  draw();
  document.body.dataset.ops = String(S.st.ops);
  $("status").textContent = statusLine() + (out.result.method ? " · propagated by " + out.result.method : "");
  return out;
}

function imagePoint(ev) {
  const cv = $("canvas"), rect = cv.getBoundingClientRect();
  return [(ev.clientX - rect.left) * S.st.width / rect.width - 0.5,
    (ev.clientY - rect.top) * S.st.height / rect.height - 0.5];
}

function selectClass(c) {
  S.cls = c;
  document.querySelectorAll("#classes button").forEach((b) => b.classList.toggle("on", Number(b.dataset.cls) === c));
}

function selectTool(tool) {
  S.tool = tool;
  document.querySelectorAll("button.tool").forEach((b) => b.classList.toggle("on", b.dataset.tool === tool));
}

function strokePreview() {
  const w = S.st.width, h = S.st.height, r = Number($("radius").value) || 4;
  const pre = new Int16Array(w * h).fill(-1), value = S.tool === "eraser" ? 0 : S.cls;
  S.drag.points.forEach(([x, y]) => {
    for (let yy = Math.max(0, Math.floor(y - r)); yy <= Math.min(h - 1, Math.ceil(y + r)); yy++) {
      for (let xx = Math.max(0, Math.floor(x - r)); xx <= Math.min(w - 1, Math.ceil(x + r)); xx++) {
        if ((xx - x) ** 2 + (yy - y) ** 2 <= r * r) { pre[yy * w + xx] = value; }
      }
    }
  });
  draw(pre);
}

function onDown(ev) {
  if (!S.sid) { return; }
  ev.preventDefault();
  const [x, y] = imagePoint(ev);
  if (S.tool === "click") {
    const positive = ev.button === 0 && !ev.shiftKey;
    guard(() => op({ op: "click", t: S.t, cls: S.cls, x, y, positive }));
    return;
  }
  S.drag = { x0: x, y0: y, x1: x, y1: y, points: [[x, y]] };
  if (S.tool !== "box") { strokePreview(); }
}

function onMove(ev) {
  if (!S.drag) { return; }
  const [x, y] = imagePoint(ev);
  S.drag.x1 = x; S.drag.y1 = y;
  if (S.tool === "box") { draw(); } else { S.drag.points.push([x, y]); strokePreview(); }
}

function onUp() {
  const d = S.drag;
  if (!d) { return; }
  S.drag = null;
  if (S.tool === "box") {
    if (Math.abs(d.x1 - d.x0) < 1 || Math.abs(d.y1 - d.y0) < 1) { draw(); return; }
    guard(() => op({ op: "box", t: S.t, cls: S.cls, x0: d.x0, y0: d.y0, x1: d.x1, y1: d.y1 }));
  } else {
    const radius = Number($("radius").value) || 4;
    guard(() => op({ op: "brush", t: S.t, cls: S.tool === "eraser" ? 0 : S.cls, radius, points: d.points }));
  }
}

function play() {
  if (S.playing) {
    clearInterval(S.playing);
    S.playing = null;
    $("play").textContent = "Play";
    return;
  }
  const fps = S.st.fps || 25;
  $("play").textContent = "Pause";
  S.playing = setInterval(() => guard(() => showFrame((S.t + 1) % S.st.frames)), 1000 / fps);
}

async function save() {
  const body = { folder: $("savefolder").value, store: $("savestore").value || null,
    split: $("savesplit").value || "train", patient: $("savepatient").value || null };
  const out = await api("POST", "/api/sessions/" + S.sid + "/save", body);
  const parts = [];
  if (out.nifti) { parts.push(out.nifti); }
  if (out.json) { parts.push(out.json); }
  if (out.store) { parts.push(out.store.store + " (" + out.store.id + ", split " + out.store.split + ")"); }
  $("saved").textContent = "saved: " + parts.join(" · ");
  document.body.dataset.saved = JSON.stringify(out);
}

function onKey(ev) {
  if (!S.sid || ev.target.tagName === "INPUT") { return; }
  const k = ev.key, ctrl = ev.ctrlKey || ev.metaKey;
  const acts = {
    c: () => selectTool("click"), x: () => selectTool("box"), b: () => selectTool("brush"),
    e: () => selectTool("eraser"), a: () => guard(() => op({ op: "automatic", t: S.t })),
    A: () => guard(() => op({ op: "automatic", t: null })),
    p: () => guard(() => op({ op: "propagate", t: S.t, direction: "forward" })),
    P: () => guard(() => op({ op: "propagate", t: S.t, direction: "backward" })),
    ArrowLeft: () => guard(() => showFrame(S.t - 1)), ArrowRight: () => guard(() => showFrame(S.t + 1)),
    " ": play, Delete: () => guard(() => op({ op: "clear", t: S.t, cls: S.cls })),
  };
  let act = null;
  if (ctrl && (k === "z" || k === "Z")) { act = () => guard(() => op({ op: ev.shiftKey ? "redo" : "undo" })); }
  else if (ctrl && k === "y") { act = () => guard(() => op({ op: "redo" })); }
  else if (ctrl && k === "s") { act = () => guard(save); }
  else if (!ctrl && /^[1-9]$/.test(k) && S.info.classes[Number(k) - 1] !== undefined) {
    act = () => selectClass(S.info.classes[Number(k) - 1]);
  } else if (!ctrl) { act = acts[k] || null; }
  if (act) { ev.preventDefault(); act(); }
}

function wire() {
  const cv = $("canvas");
  cv.addEventListener("mousedown", onDown);
  cv.addEventListener("contextmenu", (ev) => ev.preventDefault());
  window.addEventListener("mousemove", (ev) => (S.drag ? onMove(ev) : null));
  window.addEventListener("mouseup", onUp);
  window.addEventListener("keydown", onKey);
  document.querySelectorAll("button.tool").forEach((b) => b.addEventListener("click", () => selectTool(b.dataset.tool)));
  $("errorclose").addEventListener("click", () => { $("error").hidden = true; });
  $("openbtn").addEventListener("click", () => guard(() => openLoop({ path: $("path").value, item: $("item").value })));
  $("reopenbtn").addEventListener("click", () => guard(() => openLoop({ session: $("sessionpath").value })));
  $("upload").addEventListener("change", () => guard(async () => {
    const file = $("upload").files[0];
    if (!file) { return; }
    const out = await api("POST", "/api/upload?name=" + encodeURIComponent(file.name), file);
    await openLoop({ path: out.path, item: 0 });
  }));
  $("auto").addEventListener("click", () => guard(() => op({ op: "automatic", t: S.t })));
  $("autoall").addEventListener("click", () => guard(() => op({ op: "automatic", t: null })));
  $("propfwd").addEventListener("click", () => guard(() => op({ op: "propagate", t: S.t, direction: "forward" })));
  $("propback").addEventListener("click", () => guard(() => op({ op: "propagate", t: S.t, direction: "backward" })));
  $("clear").addEventListener("click", () => guard(() => op({ op: "clear", t: S.t, cls: S.cls })));
  $("undo").addEventListener("click", () => guard(() => op({ op: "undo" })));
  $("redo").addEventListener("click", () => guard(() => op({ op: "redo" })));
  $("prev").addEventListener("click", () => guard(() => showFrame(S.t - 1)));
  $("next").addEventListener("click", () => guard(() => showFrame(S.t + 1)));
  $("play").addEventListener("click", play);
  $("slider").addEventListener("input", () => guard(() => showFrame(Number($("slider").value))));
  $("save").addEventListener("click", () => guard(save));
}

wire();
guard(loadInfo);

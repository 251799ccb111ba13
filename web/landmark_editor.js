// Landmark Editor (drag points): draws the face crop and its 68 points on the node and stores the hand moves
// as offsets in the node's hidden "edits" widget (JSON, saved with the workflow; read by
// lato_core/predictor/point_edits.py). The crop and the start points arrive in the node's executed output.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_TYPE = "FaceEditLandmarkEditor";
const UI_KEY = "face_edit_editor";
const STORE = "edits";
const GROUPS = {
  jaw: [0, 17], right_brow: [17, 22], left_brow: [22, 27], nose: [27, 36],
  right_eye: [36, 42], left_eye: [42, 48], lips: [48, 68],
};
// The LaTo release's colours, as Draw Face Landmarks uses them.
const COLOURS = { jaw: "#ffffff", right_brow: "#ffb000", left_brow: "#ffb000", nose: "#30d050",
  right_eye: "#ff4040", left_eye: "#ff4040", lips: "#4080ff" };
const LINES = [[0, 17, false], [17, 22, false], [22, 27, false], [27, 31, false], [31, 36, false],
  [36, 42, true], [42, 48, true], [48, 60, true], [60, 68, true]];
// Each point's left/right counterpart (iBUG-68), as lato_core.predictor.face_model.MIRROR.
const MIRROR = [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
  27, 28, 29, 30, 35, 34, 33, 32, 31, 45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
  54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65];
const PICK_RADIUS = 10; // screen pixels around a point that grab it
const MAX_UNDO = 100;

const groupOf = (i) => Object.keys(GROUPS).find((g) => i >= GROUPS[g][0] && i < GROUPS[g][1]);
const groupIndices = (g) => Array.from({ length: GROUPS[g][1] - GROUPS[g][0] }, (_, k) => GROUPS[g][0] + k);
const zeros = () => Array.from({ length: 68 }, () => [0, 0]);
const round3 = (v) => Math.round(v * 1000) / 1000;

class LandmarkEditor {
  constructor(node) {
    this.node = node;
    this.store = node.widgets.find((w) => w.name === STORE);
    this.store.hidden = true; // the JSON stays in the workflow, the canvas shows the picture instead
    if (this.store.options) this.store.options.hidden = true;
    this.faces = [];     // [{crop, points, image_size, visibility, image}] from the last run
    this.current = 0;    // which face is shown
    this.mode = "point"; // or "group"; Shift inverts it while dragging
    this.mirror = false;
    this.history = [];
    this.drag = null;
    this.build();
  }

  build() {
    const root = document.createElement("div");
    root.style.cssText = "display:flex;flex-direction:column;width:100%;height:100%;gap:4px;";
    const bar = document.createElement("div");
    bar.style.cssText = "display:flex;flex-wrap:wrap;gap:4px;align-items:center;font:12px sans-serif;color:#ddd;";
    const button = (label, title, onClick) => {
      const b = document.createElement("button");
      b.textContent = label;
      b.title = title;
      b.style.cssText = "padding:2px 6px;font:12px sans-serif;";
      b.addEventListener("click", (e) => { e.stopPropagation(); onClick(); });
      bar.appendChild(b);
      return b;
    };
    this.modeButton = button("Drag: point", "Drag one point, or a whole eye/brow/nose/lips/jaw (Shift swaps)", () => {
      this.mode = this.mode === "point" ? "group" : "point";
      this.modeButton.textContent = `Drag: ${this.mode}`;
    });
    this.mirrorButton = button("Mirror: off", "Moving a point also moves its left/right counterpart, mirrored", () => {
      this.mirror = !this.mirror;
      this.mirrorButton.textContent = `Mirror: ${this.mirror ? "on" : "off"}`;
    });
    button("Undo", "Undo the last move", () => this.undo());
    button("Reset", "This face back to its start points (undoable)", () => this.reset());
    button("<", "Previous face", () => this.show(this.current - 1));
    button(">", "Next face", () => this.show(this.current + 1));
    this.label = document.createElement("span");
    bar.appendChild(this.label);
    this.canvas = document.createElement("canvas");
    this.canvas.style.cssText = "flex:1;min-height:0;width:100%;background:#111;touch-action:none;cursor:crosshair;";
    this.canvas.addEventListener("pointerdown", (e) => this.onDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.onMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.onUp(e));
    this.canvas.addEventListener("pointercancel", (e) => this.onUp(e));
    new ResizeObserver(() => this.draw()).observe(this.canvas);
    root.append(bar, this.canvas);
    this.widget = this.node.addDOMWidget("landmark_editor", "face_edit_landmarks", root,
      { serialize: false, hideOnZoom: false, getMinHeight: () => 300 });
    this.widget.serialize = false;
    this.draw();
  }

  // ---- the stored offsets: {"version": 1, "faces": {"<face>": [[dx, dy] x 68]}}
  allOffsets() {
    try {
      const data = JSON.parse(this.store.value || "{}");
      return data && typeof data.faces === "object" ? data.faces : {};
    } catch {
      return {};
    }
  }

  offsetsOf(face) {
    const stored = this.allOffsets()[String(face)];
    return Array.isArray(stored) && stored.length === 68 ? stored.map((p) => [p[0], p[1]]) : zeros();
  }

  write(face, offsets) {
    const faces = this.allOffsets();
    if (offsets && offsets.some(([x, y]) => x || y)) faces[String(face)] = offsets.map(([x, y]) => [round3(x), round3(y)]);
    else delete faces[String(face)];
    this.setStore(JSON.stringify({ version: 1, faces }));
  }

  setStore(value) {
    this.store.value = value;
    this.store.callback?.(value);
    this.node.setDirtyCanvas?.(true, true);
    this.draw();
  }

  remember(value = this.store.value) {
    this.history.push(value);
    if (this.history.length > MAX_UNDO) this.history.shift();
  }

  undo() {
    if (this.history.length) this.setStore(this.history.pop());
  }

  reset() {
    this.remember();
    this.write(this.current, null); // the shown face only; other faces keep their moves
  }

  // ---- faces from the run
  setFaces(faces) {
    this.faces = (faces || []).map((f) => ({ ...f, image: null }));
    for (const f of this.faces) {
      const img = new Image();
      const c = f.crop;
      img.onload = () => { f.image = img; this.draw(); };
      img.src = api.apiURL(`/view?filename=${encodeURIComponent(c.filename)}&subfolder=${encodeURIComponent(c.subfolder || "")}`
        + `&type=${encodeURIComponent(c.type || "temp")}&t=${Date.now()}`);
    }
    this.show(Math.min(this.current, Math.max(this.faces.length - 1, 0)));
  }

  show(face) {
    if (face >= 0 && face < this.faces.length) this.current = face;
    this.draw();
  }

  ready() {
    const f = this.faces[this.current];
    return !!(f && f.image);
  }

  pointsOf(face, offsets) {
    const f = this.faces[face];
    return f.points.map(([x, y], i) => [x + offsets[i][0], y + offsets[i][1]]);
  }

  // ---- geometry: crop pixels <-> canvas backing pixels <-> screen (client) pixels
  layout() {
    const f = this.faces[this.current];
    const rect = this.canvas.getBoundingClientRect();
    const cw = this.canvas.width, ch = this.canvas.height;
    const [w, h] = f ? f.image_size : [1, 1];
    const s = Math.min(cw / w, ch / h);
    const ox = (cw - w * s) / 2, oy = (ch - h * s) / 2;
    const k = rect.width / Math.max(cw, 1); // client pixels per backing pixel
    return { s, ox, oy, k, rect, screenPerCrop: s * k };
  }

  toScreen([x, y]) {
    const { s, ox, oy, k, rect } = this.layout();
    // Pixel centres sit on integers: the picture's left edge is x = -0.5.
    return [rect.left + (ox + (x + 0.5) * s) * k, rect.top + (oy + (y + 0.5) * s) * k];
  }

  screenPoint(i) {
    return this.toScreen(this.pointsOf(this.current, this.offsetsOf(this.current))[i]);
  }

  // ---- dragging
  onDown(e) {
    if (e.button !== 0 || !this.faces[this.current]) return;
    const offsets = this.offsetsOf(this.current);
    const points = this.pointsOf(this.current, offsets);
    let hit = -1, best = PICK_RADIUS;
    points.forEach((p, i) => {
      const [sx, sy] = this.toScreen(p);
      const d = Math.hypot(sx - e.clientX, sy - e.clientY);
      if (d <= best) { best = d; hit = i; }
    });
    if (hit < 0) return;
    e.preventDefault();
    e.stopPropagation();
    this.canvas.setPointerCapture(e.pointerId);
    const moved = (this.mode === "group") !== e.shiftKey ? groupIndices(groupOf(hit)) : [hit];
    const own = new Set(moved);
    const partners = this.mirror ? moved.map((i) => MIRROR[i]).filter((j) => !own.has(j)) : [];
    this.drag = { x0: e.clientX, y0: e.clientY, start: offsets, live: offsets, moved, partners,
      axis: eyeAxis(points), before: this.store.value, hit };
    this.draw();
  }

  onMove(e) {
    if (!this.drag) return;
    e.preventDefault();
    e.stopPropagation();
    const d = this.drag;
    const scale = this.layout().screenPerCrop;
    const delta = [(e.clientX - d.x0) / scale, (e.clientY - d.y0) / scale];
    const mirrored = reflect(delta, d.axis);
    const live = d.start.map((o) => [o[0], o[1]]);
    for (const i of d.moved) live[i] = this.clamped(i, d.start[i], delta);
    for (const j of d.partners) live[j] = this.clamped(j, d.start[j], mirrored);
    d.live = live;
    this.draw();
  }

  onUp(e) {
    if (!this.drag) return;
    e.stopPropagation();
    const d = this.drag;
    this.drag = null;
    if (d.live !== d.start) {
      this.remember(d.before);
      this.write(this.current, d.live);
    }
    this.draw();
  }

  clamped(i, start, delta) {
    // A point stops on the crop's edge, as the node clamps it too.
    const f = this.faces[this.current];
    const [w, h] = f.image_size;
    const x = Math.min(Math.max(f.points[i][0] + start[0] + delta[0], -0.5), w - 0.5);
    const y = Math.min(Math.max(f.points[i][1] + start[1] + delta[1], -0.5), h - 0.5);
    return [x - f.points[i][0], y - f.points[i][1]];
  }

  // ---- drawing
  draw() {
    const c = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(c.clientWidth * ratio)), height = Math.max(1, Math.round(c.clientHeight * ratio));
    if (c.width !== width || c.height !== height) { c.width = width; c.height = height; }
    const g = c.getContext("2d");
    g.fillStyle = "#111";
    g.fillRect(0, 0, c.width, c.height);
    const f = this.faces[this.current];
    this.label.textContent = f ? `face ${this.current + 1}/${this.faces.length}` : "";
    if (!f) {
      g.fillStyle = "#aaa";
      g.font = `${12 * ratio}px sans-serif`;
      g.fillText("Run the workflow once to load the face crop.", 8 * ratio, 20 * ratio);
      return;
    }
    const { s, ox, oy } = this.layout();
    if (f.image) g.drawImage(f.image, ox, oy, f.image_size[0] * s, f.image_size[1] * s);
    const offsets = this.drag ? this.drag.live : this.offsetsOf(this.current);
    const at = this.pointsOf(this.current, offsets).map(([x, y]) => [ox + (x + 0.5) * s, oy + (y + 0.5) * s]);
    g.lineWidth = ratio;
    for (const [a, b, closed] of LINES) {
      g.strokeStyle = COLOURS[groupOf(a)];
      g.beginPath();
      for (let i = a; i < b; i++) (i === a ? g.moveTo : g.lineTo).call(g, at[i][0], at[i][1]);
      if (closed) g.closePath();
      g.stroke();
    }
    const active = this.drag ? new Set([...this.drag.moved, ...this.drag.partners]) : new Set();
    at.forEach(([x, y], i) => {
      g.beginPath();
      g.arc(x, y, (active.has(i) ? 4 : 2.5) * ratio, 0, 2 * Math.PI);
      g.fillStyle = g.strokeStyle = COLOURS[groupOf(i)];
      if (f.visibility && f.visibility[i] > 0) g.fill();
      else g.stroke(); // hidden points as rings
    });
  }
}

function eyeAxis(points) {
  // Unit vector along the eye line (subject's right eye centre -> left eye centre): mirroring reflects a move
  // across the face's midline, perpendicular to it, so a tilted face mirrors correctly too.
  const centre = (a, b) => [0, 1].map((k) => points.slice(a, b).reduce((s, p) => s + p[k], 0) / (b - a));
  const r = centre(36, 42), l = centre(42, 48);
  const n = Math.hypot(l[0] - r[0], l[1] - r[1]) || 1;
  return [(l[0] - r[0]) / n, (l[1] - r[1]) / n];
}

function reflect([dx, dy], [ax, ay]) {
  const along = dx * ax + dy * ay;
  return [dx - 2 * along * ax, dy - 2 * along * ay];
}

app.registerExtension({
  name: "FaceEdit.LandmarkEditor",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== NODE_TYPE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.faceEditEditor = new LandmarkEditor(this);
      this.setSize([Math.max(this.size[0], 380), Math.max(this.size[1], 460)]);
      return result;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      onExecuted?.apply(this, arguments);
      if (output && output[UI_KEY]) this.faceEditEditor?.setFaces(output[UI_KEY]);
    };
  },
});

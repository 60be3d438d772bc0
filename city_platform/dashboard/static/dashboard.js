// r197 city dashboard: map, live values (SSE), history charts, device table, streetlight
// actuation through the platform, conformance reports. No token is ever held here: the server
// keeps the user's token behind an HttpOnly session cookie (city_platform/dashboard/sessions.py).
"use strict";

const COLOURS = {
  AirQualityObserved: "#2a9d8f", WeatherObserved: "#457b9d", NoiseLevelObserved: "#e76f51",
  TrafficFlowObserved: "#f4a261", ParkingSpot: "#6a4c93", Streetlight: "#e9c46a",
  FloodMonitoring: "#1d70b8", SinglePhaseAcMeasurement: "#8ab17d", AgriParcelRecord: "#7f5539",
  IndoorEnvironmentObserved: "#d62828",
};
// UN/CEFACT common codes the city's attributes carry (docs/wire-formats.md), shown as symbols.
const UNITS = {
  CEL: "°C", P1: "%", A97: "hPa", MTS: "m/s", DD: "°", MMT: "mm", GQ: "µg/m³", "2N": "dB",
  C62: "", MTR: "m", WTT: "W", KWH: "kWh", VLT: "V", AMP: "A", E50: "", HUR: "h", KMH: "km/h",
  GP: "mg/m³", "59": "ppm", "61": "ppb", CMT: "cm",
};
const ONLINE_SECONDS = 60; // as the gateway's /health devicesRecent and `testbed up`

const state = { entities: new Map(), markers: new Map(), selected: null, attr: null, chart: null,
                devices: new Map(), inventory: {}, gateway: null, events: null, live: 0,
                fitted: false, started: false };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

async function api(path, options = {}) {
  const answer = await fetch(path, { credentials: "same-origin", ...options });
  if (answer.status === 401 && path !== "/login") { showLogin(); }
  let body = null;
  const text = await answer.text();
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  return { status: answer.status, ok: answer.ok, body, answer };
}

// -- login ---------------------------------------------------------------------------------

function showLogin(message) {
  document.getElementById("login").hidden = false;
  if (message) document.getElementById("login-error").textContent = message;
}

document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const field = document.getElementById("token");
  const r = await api("/login", { method: "POST", headers: { "Content-Type": "application/json" },
                                  body: JSON.stringify({ token: field.value }) });
  field.value = ""; // the token goes to the server once and is not kept in the page
  if (!r.ok) { showLogin(`Login refused: ${r.body?.title ?? r.status} ${r.body?.detail ?? ""}`); return; }
  document.getElementById("login").hidden = true;
  document.getElementById("login-error").textContent = "";
  start();
});

document.getElementById("logout").addEventListener("click", async () => {
  await api("/logout", { method: "POST" });
  if (state.events) state.events.close();
  location.reload();
});

// -- tabs ----------------------------------------------------------------------------------

for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => {
    for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b === button);
    for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== `tab-${button.dataset.tab}`;
    if (button.dataset.tab === "map") map.invalidateSize();
    if (button.dataset.tab === "devices") refreshHealth();
    if (button.dataset.tab === "reports") loadReports();
  });
}

// -- the map -------------------------------------------------------------------------------

const map = L.map("map", { zoomControl: true, attributionControl: false, zoomSnap: 0.25 });
map.setView([46.2044, 6.1432], 13);

async function baseLayer() {
  // Offline: the shipped city outline and streets, and a 500 m grid around the devices.
  try {
    const answer = await fetch("/static/city.geojson");
    const geo = await answer.json();
    L.geoJSON(geo, {
      style: (f) => ({ shore: { color: "#6aa6d8", weight: 2, fillColor: "#bcd9f0", fillOpacity: 0.7 },
                       outline: { color: "#777", weight: 2, dashArray: "6 4", fillOpacity: 0.03 },
                       river: { color: "#6aa6d8", weight: 6 },
                       street: { color: "#fff", weight: 4 } }[f.properties.kind] ?? { color: "#999", weight: 1 }),
      onEachFeature: (f, layer) => f.properties.name && layer.bindTooltip(f.properties.name),
    }).addTo(map);
  } catch (err) { console.warn("no base layer", err); }
}

function grid(bounds) {
  const step = 0.005; // degrees, about 550 m of latitude
  const lines = [];
  const s = Math.floor(bounds.getSouth() / step) * step, n = Math.ceil(bounds.getNorth() / step) * step;
  const w = Math.floor(bounds.getWest() / step) * step, e = Math.ceil(bounds.getEast() / step) * step;
  for (let lat = s; lat <= n + 1e-9; lat += step) lines.push([[lat, w], [lat, e]]);
  for (let lon = w; lon <= e + 1e-9; lon += step) lines.push([[s, lon], [n, lon]]);
  L.polyline(lines, { color: "#c5ccd3", weight: 1, interactive: false }).addTo(map);
}

function legend() {
  const box = document.getElementById("legend");
  box.replaceChildren(...Object.entries(COLOURS).map(([t, c]) =>
    el("div", {}, el("span", { class: "swatch", style: `background:${c}` }), t)));
}

function unit(prop) { return prop?.unitCode !== undefined ? (UNITS[prop.unitCode] ?? prop.unitCode) : ""; }
function shortType(t) { return Array.isArray(t) ? t[0] : t; }
function deviceOf(entity) { return (entity.refDevice?.object ?? entity.id).split(":").pop(); }
function attributes(entity) {
  return Object.entries(entity).filter(([k, v]) => v && typeof v === "object" && !Array.isArray(v)
    && k !== "location" && k !== "@context" && (v.type === "Property" || "value" in v) && v.type !== "Relationship");
}
function lastSeen(entity) {
  let t = "";
  for (const [, v] of attributes(entity)) if (v.observedAt && v.observedAt > t) t = v.observedAt;
  return t;
}
function fmt(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(2);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : new Date(iso).toLocaleString();
}

function popupOf(entity) {
  const rows = attributes(entity).map(([k, v]) =>
    el("tr", {}, el("td", {}, k), el("td", { "data-attr": k }, `${fmt(v.value)} ${unit(v)}`.trim())));
  return el("div", { class: "popup" }, el("b", {}, entity.id.split(":").slice(-2).join(" ")),
    el("table", {}, ...rows), el("div", { class: "when" }, `last seen ${ago(lastSeen(entity))}`));
}

function upsert(entity) {
  const type = shortType(entity.type);
  if (type === "Device") { state.devices.set(deviceOf(entity), entity); return; }
  const old = state.entities.get(entity.id) ?? {};
  const merged = { ...old, ...entity };
  state.entities.set(entity.id, merged);
  const coords = merged.location?.value?.coordinates;
  if (!Array.isArray(coords)) return;
  let marker = state.markers.get(entity.id);
  if (!marker) {
    marker = L.circleMarker([coords[1], coords[0]], {
      radius: 9, weight: 2, color: "#333", fillColor: COLOURS[type] ?? "#999", fillOpacity: 0.9,
      className: `device-marker type-${type}`,
    }).addTo(map);
    marker.on("click", () => select(entity.id));
    marker.bindPopup(() => popupOf(state.entities.get(entity.id)));
    state.markers.set(entity.id, marker);
    if (state.started) fitToMarkers();
  } else {
    marker.setLatLng([coords[1], coords[0]]);
    if (marker.isPopupOpen()) marker.setPopupContent(popupOf(merged));
  }
  if (state.selected === entity.id) renderDetail();
}

// -- the selected device: values, chart, actuation -----------------------------------------

function select(id) {
  state.selected = id;
  const entity = state.entities.get(id);
  const first = attributes(entity).find(([, v]) => typeof v.value === "number");
  state.attr = first ? first[0] : null;
  renderDetail();
  drawChart();
}

function renderDetail() {
  const entity = state.entities.get(state.selected);
  const box = document.getElementById("detail");
  if (!entity) return;
  const rows = attributes(entity).map(([k, v]) => el("tr", {
      class: `attr${k === state.attr ? " selected" : ""}`, "data-attr": k,
      onclick: () => { state.attr = k; renderDetail(); drawChart(); } },
    el("td", {}, k), el("td", { class: "value" }, `${fmt(v.value)} ${unit(v)}`.trim()),
    el("td", { class: "when" }, v.observedAt ? new Date(v.observedAt).toLocaleTimeString() : "requested, not reported yet")));
  const parts = [el("h2", {}, entity.id), el("div", { class: "when" },
    `${shortType(entity.type)} · device ${deviceOf(entity)} · last seen ${ago(lastSeen(entity))}`),
    el("table", {}, ...rows)];
  if (shortType(entity.type) === "Streetlight") parts.push(actuationBox(entity));
  const chart = document.getElementById("chart") ?? el("div", { id: "chart" });
  parts.push(el("h3", {}, state.attr ? `history of ${state.attr}` : "no numeric attribute"), chart);
  box.replaceChildren(...parts);
}

function actuationBox(entity) {
  const status = el("div", { id: "actuation-status" }, state.actuation ?? "");
  if (state.actuationError) status.className = "error";
  const level = Math.round(100 * (entity.illuminanceLevel?.value ?? 0));
  const slider = el("input", { id: "dim", type: "range", min: 0, max: 100, step: 10, value: level });
  slider.addEventListener("change", () => actuate(entity.id, { illuminanceLevel: { type: "Property", value: Number(slider.value) / 100, unitCode: "C62" } }));
  return el("div", { class: "actuate" }, el("b", {}, "Streetlight "),
    el("button", { id: "switch-on", onclick: () => actuate(entity.id, { powerState: { type: "Property", value: "on" } }) }, "On"),
    el("button", { id: "switch-off", onclick: () => actuate(entity.id, { powerState: { type: "Property", value: "off" } }) }, "Off"),
    el("label", {}, " dim ", slider, ` ${level} %`), status);
}

async function actuate(id, attrs) {
  // Through the platform, as a city application: PATCH the entity's attributes (CIM 009
  // 5.6.2); the gateway's actuator subscription relays the change to the device.
  const r = await api(`/api/entities/${encodeURIComponent(id)}/attrs`, {
    method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(attrs) });
  state.actuationError = !r.ok;
  state.actuation = r.ok
    ? `sent ${Object.keys(attrs).join(", ")} (${r.status}); waiting for the device to report it`
    : `refused by the platform: ${r.status} ${r.body?.title ?? ""}\n${r.body?.detail ?? r.body?.error_description ?? ""}`;
  renderDetail();
}

async function drawChart() {
  const box = document.getElementById("chart");
  if (!box || !state.selected || !state.attr) return;
  const attr = state.attr, id = state.selected;
  const r = await api(`/api/temporal/${encodeURIComponent(id)}?attr=${encodeURIComponent(attr)}&lastN=100`);
  if (state.selected !== id || state.attr !== attr) return;
  if (!r.ok) { box.replaceChildren(el("p", { class: "error" }, `history: ${r.status} ${r.body?.title ?? ""}`)); return; }
  const values = (r.body?.[attr]?.values ?? []).filter(([v]) => typeof v === "number");
  values.sort((a, b) => Date.parse(a[1]) - Date.parse(b[1]));
  const xs = values.map(([, t]) => Date.parse(t) / 1000), ys = values.map(([v]) => v);
  box.replaceChildren();
  box.dataset.points = String(xs.length);
  if (!xs.length) { box.append(el("p", { class: "hint" }, "no numeric history yet")); return; }
  const entity = state.entities.get(id);
  state.chart = new uPlot({ width: 340, height: 200, series: [{}, {
      label: `${attr} ${unit(entity?.[attr])}`, stroke: COLOURS[shortType(entity?.type)] ?? "#333", width: 2,
      points: { show: true, size: 5 } }],
    axes: [{}, { size: 50 }] }, [xs, ys], box);
}

// -- live values ---------------------------------------------------------------------------

function listen() {
  const live = document.getElementById("live");
  const events = new EventSource("/events");
  state.events = events;
  events.addEventListener("ready", () => { live.textContent = "live"; live.classList.add("on"); });
  events.addEventListener("entities", (ev) => {
    const list = JSON.parse(ev.data);
    for (const entity of list) upsert(entity);
    state.live += list.length;
    live.textContent = `live · ${state.live} updates · ${new Date().toLocaleTimeString()}`;
    live.dataset.updates = String(state.live);
    if (state.selected && list.some((e) => e.id === state.selected)) {
      const st = state.entities.get(state.selected);
      if (state.actuation && !state.actuationError && st?.powerState?.observedAt) state.actuation = `the device reports powerState ${st.powerState.value}`;
      renderDetail();
      drawChart();
    }
    renderDevices();
  });
  events.onerror = () => { live.textContent = "reconnecting..."; live.classList.remove("on"); };
}

// -- devices table and health --------------------------------------------------------------

async function refreshHealth() {
  const r = await api("/api/gateway");
  if (!r.ok) return;
  state.gateway = r.body;
  const g = r.body.gateway, p = r.body.platform;
  const box = (title, ok, lines) => el("div", { class: "box" },
    el("b", {}, title, " "), el("span", { class: ok ? "online" : "offline" }, ok ? "up" : "down"),
    ...lines.map((l) => el("div", {}, l)));
  document.getElementById("health").replaceChildren(
    box("Gateway", !!g, g ? [`devices online ${g.devicesRecent} / seen ${g.devicesSeen}`,
      `MQTT ${g.mqtt ? "connected" : "down"} · CoAP observed ${g.coapObserved}`,
      `platform ${g.platform} · queued ${g.queued}`,
      `received ${g.received} · forwarded ${g.forwarded} · rejected ${g.rejected}`] : [r.body.gatewayError ?? "no answer"]),
    box("Platform", !!p, p ? [`status ${p.status}`, `storage ${p.storage ?? "?"}`,
      `dashboard subscription ${r.body.subscribed ? "active" : "pending"}`] : ["no answer"]));
  renderDevices();
}

function renderDevices() {
  const body = document.querySelector("#devices-table tbody");
  if (!body || document.getElementById("tab-devices").hidden) return;
  const rejected = state.gateway?.rejected ?? {};
  const rows = [];
  const byDevice = new Map();
  for (const e of state.entities.values()) byDevice.set(deviceOf(e), e);
  const ids = new Set([...byDevice.keys(), ...state.devices.keys(), ...Object.keys(state.inventory)]);
  for (const id of [...ids].sort()) {
    const e = byDevice.get(id), d = state.devices.get(id), inv = state.inventory[id] ?? {};
    const seen = e ? lastSeen(e) : d?.dateLastValueReported?.value;
    const online = seen && (Date.now() - Date.parse(seen)) / 1000 <= ONLINE_SECONDS;
    const reading = e ? attributes(e).slice(0, 3).map(([k, v]) => `${k} ${fmt(v.value)} ${unit(v)}`.trim()).join(", ") : "";
    const rej = Object.entries(rejected[id] ?? {}).map(([why, n]) => `${why}: ${n}`).join(", ");
    rows.push(el("tr", { "data-device": id }, el("td", {}, id), el("td", {}, e ? shortType(e.type) : inv.kind ?? ""),
      el("td", {}, inv.protocol ?? (d?.supportedProtocol?.value ?? []).join(", ")), el("td", {}, inv.format ?? ""),
      el("td", { class: online ? "online" : "offline" }, online ? "online" : "offline"),
      el("td", {}, reading, el("div", { class: "when" }, ago(seen))), el("td", {}, rej || "none")));
  }
  body.replaceChildren(...rows);
}

// -- conformance reports -------------------------------------------------------------------

function verdictClass(v) { return `v-${String(v).replace("/", "")}`; }

async function loadReports() {
  const r = await api("/api/reports");
  const list = document.getElementById("reports-list");
  if (!r.ok) { list.replaceChildren(el("p", { class: "error" }, `reports: ${r.status}`)); return; }
  const rows = r.body.reports.map((rep) => el("tr", { "data-report": rep.name, onclick: () => showReport(rep.name) },
    el("td", {}, rep.name), el("td", {}, rep.implementation), el("td", {}, rep.date), el("td", {}, rep.cases),
    el("td", {}, Object.entries(rep.summary).map(([v, n]) => `${v} ${n}`).join(", "))));
  list.replaceChildren(el("h2", {}, `Conformance reports in ${r.body.roots.join(", ")}`), rows.length
    ? el("table", { class: "report" }, el("tr", {}, ...["report", "implementation", "date", "cases", "verdicts"].map((h) => el("th", {}, h))), ...rows)
    : el("p", { class: "hint" }, "no report.json yet: run `testbed conformance`"));
  const m = await api("/api/matrix");
  if (m.ok) {
    const impls = m.body.implementations;
    document.getElementById("matrix").replaceChildren(el("table", {},
      el("tr", {}, el("th", {}, "case"), ...impls.map((i) => el("th", { title: i }, i.split(" (")[0]))),
      ...Object.entries(m.body.cases).map(([c, cells]) => el("tr", {}, el("td", {}, c),
        ...impls.map((i) => el("td", { class: verdictClass(cells[i] ?? "") }, cells[i] ?? "-"))))));
  }
  if (r.body.reports.length && !document.querySelector("#report-view table")) showReport(r.body.reports[0].name);
}

async function showReport(name) {
  for (const tr of document.querySelectorAll("#reports-list tr[data-report]")) tr.classList.toggle("selected", tr.dataset.report === name);
  const r = await api(`/api/report?name=${encodeURIComponent(name)}`);
  const view = document.getElementById("report-view");
  if (!r.ok) { view.replaceChildren(el("p", { class: "error" }, `report ${name}: ${r.status} ${r.body?.title ?? ""}`)); return; }
  const doc = r.body;
  view.replaceChildren(el("h2", {}, `Report: ${doc.implementation} (${name})`),
    el("p", {}, `${doc.date} · ${Object.entries(doc.summary ?? {}).map(([v, n]) => `${v} ${n}`).join(", ")}`),
    el("table", { class: "report" },
      el("tr", {}, ...["case", "objective", "theme", "verdict", "detail"].map((h) => el("th", {}, h))),
      ...doc.results.map((c) => el("tr", {}, el("td", {}, c.id), el("td", {}, c.objective), el("td", {}, c.theme),
        el("td", { class: verdictClass(c.verdict) }, c.verdict), el("td", {}, String(c.detail ?? "").slice(0, 300))))));
}

// -- start ---------------------------------------------------------------------------------

// Fit the map to the devices once: at start, or, when the page opened before any device had
// reported (a city just started), when the first markers arrive by notification; otherwise
// they would sit outside the default view.
function fitToMarkers() {
  if (state.fitted) return;
  const points = [...state.markers.values()].map((m) => m.getLatLng());
  if (!points.length) return;
  state.fitted = true;
  const bounds = L.latLngBounds(points).pad(0.08);
  map.fitBounds(bounds);
  grid(bounds);
}

async function start() {
  const r = await api("/api/entities");
  if (!r.ok) return;
  for (const entity of r.body) upsert(entity);
  fitToMarkers();
  state.started = true;
  document.getElementById("map").dataset.markers = String(state.markers.size);
  const inv = await api("/api/inventory");
  if (inv.ok) state.inventory = inv.body;
  listen();
  refreshHealth();
  setInterval(refreshHealth, 5000); // the gateway's /health and /metrics, not the entities
}

(async () => {
  legend();
  baseLayer();
  const s = await api("/api/session");
  document.getElementById("logout").hidden = !s.body?.secure;
  if (s.body?.secure && !s.body.loggedIn) { showLogin(); return; }
  start();
})();

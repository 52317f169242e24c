// Conduit's dashboard: polls the controller's /api every few seconds and draws tables, RPS
// trends and the edge graph; streams live requests from /api/tap. No framework, no assets
// from elsewhere.
"use strict";

const params = new URLSearchParams(location.search);
const REFRESH_MS = Math.max(500, Number(params.get("refresh") || 2000));
const HISTORY = 30; // RPS points kept per row, for the trend lines.
const MAX_TAP_ROWS = 200;

const $ = (id) => document.getElementById(id);
const history = new Map(); // "kind/ns/name" -> [rps...]
let errors = 0;
let refreshing = false;
let tapAbort = null;

// Every error, ours or the browser's, is shown and counted (the tests read the count).
function reportError(message) {
  errors += 1;
  document.body.dataset.errors = String(errors);
  const pre = $("errors");
  pre.hidden = false;
  pre.textContent = (pre.textContent + "\n" + message).trim();
}
window.addEventListener("error", (e) => reportError(String(e.message)));
window.addEventListener("unhandledrejection", (e) => reportError(String(e.reason)));

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

async function api(path, query) {
  const url = path + "?" + new URLSearchParams(query).toString();
  const rsp = await fetch(url);
  const body = await rsp.json();
  if (!rsp.ok) throw new Error(`${path}: ${body.error || rsp.status}`);
  return body;
}

const ms = (v) => (v === null || v === undefined ? "-" : v < 10 ? v.toFixed(2) + " ms" : v < 100 ? v.toFixed(1) + " ms" : v.toFixed(0) + " ms");
const rps = (row) => (row.requests > 0 ? row.rps.toFixed(1) : "-");
function success(row) {
  if (row.success_rate === null) return el("span", { class: "muted" }, "-");
  const pct = row.success_rate * 100;
  const cls = pct >= 99 ? "good" : pct >= 90 ? "warn" : "bad";
  return el("span", { class: cls }, pct.toFixed(2) + "%");
}

function spark(key, value) {
  const points = history.get(key) || [];
  points.push(value);
  while (points.length > HISTORY) points.shift();
  history.set(key, points);
  const max = Math.max(1, ...points);
  const line = svg("polyline", {
    points: points.map((v, i) => `${(i * 120) / (HISTORY - 1)},${22 - (v / max) * 20}`).join(" "),
  });
  const s = svg("svg", { class: "spark", viewBox: "0 0 120 24", "aria-label": `RPS trend, now ${value.toFixed(1)}` });
  s.append(line);
  return s;
}

// `web.demo.serviceaccount.identity...` reads as `web.demo`; the whole name is the cell's title.
const account = (id) => (id ? id.split(".serviceaccount.")[0] : "-");
const short = (kind) => ({ deployment: "deploy", service: "svc", pod: "po", namespace: "ns" })[kind] || kind;

function statRows(tbody, doc, withTcp, onClick) {
  tbody.replaceChildren();
  for (const row of doc.rows) {
    const name = `${short(row.kind)}/${row.name}`;
    const tr = el("tr", { class: onClick ? "clickable" : "", "data-name": name, "data-rps": row.rps.toFixed(3), "data-requests": row.requests },
      el("td", {}, name),
      el("td", {}, `${row.meshed}/${row.pods}`),
      el("td", {}, success(row)),
      el("td", {}, rps(row)),
      el("td", {}, spark(`${row.kind}/${row.namespace}/${row.name}`, row.rps)),
      el("td", {}, ms(row.latency_ms_p50)),
      el("td", {}, ms(row.latency_ms_p95)),
      el("td", {}, ms(row.latency_ms_p99)));
    if (withTcp) tr.append(el("td", {}, row.tcp_connections));
    if (onClick) tr.addEventListener("click", () => onClick(row));
    tbody.append(tr);
  }
  if (doc.rows.length === 0) tbody.append(el("tr", {}, el("td", { colSpan: 9, class: "muted" }, "nothing meshed here")));
}

function drawEdges(doc) {
  const graph = $("edge-graph");
  graph.replaceChildren();
  const names = [...new Set(doc.rows.flatMap((r) => [r.src.name, r.dst.name]))].sort();
  const pos = new Map(names.map((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, names.length) - Math.PI / 2;
    return [n, [240 + 170 * Math.cos(a) * (names.length > 1 ? 1 : 0), 160 + 120 * Math.sin(a) * (names.length > 1 ? 1 : 0)]];
  }));
  for (const r of doc.rows) {
    const [x1, y1] = pos.get(r.src.name), [x2, y2] = pos.get(r.dst.name);
    graph.append(svg("line", { x1, y1, x2, y2, class: r.secured ? "secured" : "" }));
    const label = svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 4, class: "rate" });
    label.textContent = `${r.rps.toFixed(1)} rps${r.secured ? ", mTLS" : ""}`;
    graph.append(label);
  }
  for (const [n, [x, y]] of pos) {
    graph.append(svg("circle", { cx: x, cy: y, r: 26 }));
    const t = svg("text", { x, y: y + 4 });
    t.textContent = n;
    graph.append(t);
  }
  const tbody = $("edges").tBodies[0];
  tbody.replaceChildren();
  for (const r of doc.rows) {
    tbody.append(el("tr", { "data-src": r.src.name, "data-dst": r.dst.name },
      el("td", {}, `${short(r.src.kind)}/${r.src.name}`),
      el("td", {}, `${short(r.dst.kind)}/${r.dst.name}`),
      el("td", { class: r.secured ? "good" : "bad" }, r.secured ? "yes" : "no"),
      el("td", { title: r.client_id }, account(r.client_id)),
      el("td", { title: r.server_id }, account(r.server_id)),
      el("td", {}, success(r)),
      el("td", {}, rps(r)),
      el("td", {}, ms(r.latency_ms_p99))));
  }
  if (doc.rows.length === 0) tbody.append(el("tr", {}, el("td", { colSpan: 8, class: "muted" }, "no traffic between meshed workloads in this window")));
}

function fillSelect(select, values, keep) {
  const current = select.value;
  select.replaceChildren(...values.map((v) => el("option", { value: v }, v)));
  if (keep && values.includes(current)) select.value = current;
}

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const namespace = $("namespace").value;
    const window = $("window").value;
    const [deploys, services, edges] = await Promise.all([
      api("/api/stat", { kind: "deployment", namespace, window }),
      api("/api/stat", { kind: "service", namespace, window }),
      api("/api/edges", { kind: "deployment", namespace, window }),
    ]);
    statRows($("workloads").tBodies[0], deploys, true, (row) => {
      $("tap-target").value = `deployment/${row.name}`;
    });
    statRows($("services").tBodies[0], services, false, (row) => {
      $("route-service").value = row.name;
      refresh();
    });
    fillSelect($("route-service"), services.rows.map((r) => r.name), true);
    fillSelect($("tap-target"), deploys.rows.map((r) => `deployment/${r.name}`), true);
    const service = $("route-service").value;
    const tbody = $("routes").tBodies[0];
    if (service) {
      const routes = await api("/api/routes", { namespace, service, window });
      tbody.replaceChildren(...routes.rows.map((r) => el("tr", { "data-route": r.route },
        el("td", {}, r.route), el("td", {}, success(r)), el("td", {}, rps(r)),
        el("td", {}, ms(r.latency_ms_p50)), el("td", {}, ms(r.latency_ms_p95)), el("td", {}, ms(r.latency_ms_p99)))));
    } else {
      tbody.replaceChildren();
    }
    drawEdges(edges);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()} · ${deploys.window_seconds.toFixed(0)} s of data`;
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded) + 1);
  } catch (e) {
    reportError(e.message);
  } finally {
    refreshing = false;
  }
}

function tapRow(event) {
  const e = event.event || {};
  const peer = (p) => (p ? p.addr + (p.labels && p.labels.workload ? ` (${p.labels.workload})` : "") : "-");
  const kind = { request_init: "req", response_init: "rsp", response_end: "end" }[e.type] || "?";
  const latency = e.latency_us !== undefined ? `${e.latency_us} µs` : e.total_us !== undefined ? `${e.total_us} µs` : "";
  const status = e.http_status !== undefined ? e.http_status : e.grpc_status !== undefined ? `grpc ${e.grpc_status}` : e.error || "";
  return el("tr", { "data-event": kind },
    el("td", {}, event.proxy), el("td", {}, event.direction), el("td", {}, kind),
    el("td", {}, e.method || ""), el("td", {}, e.authority || ""), el("td", {}, e.path || ""),
    el("td", {}, status), el("td", {}, latency),
    el("td", {}, peer(event.source)), el("td", {}, peer(event.destination)),
    el("td", {}, event.tls ? "yes" : "no"));
}

async function startTap(limit) {
  stopTap();
  const [kind, name] = $("tap-target").value.split("/");
  if (!kind) return;
  const query = { namespace: $("namespace").value, kind, name, limit: String(limit || 1000) };
  if ($("tap-method").value) query.method = $("tap-method").value;
  if ($("tap-path").value) query.path = $("tap-path").value;
  tapAbort = new AbortController();
  $("tap-start").disabled = true;
  $("tap-stop").disabled = false;
  $("tap-status").textContent = "tapping…";
  const tbody = $("tap").tBodies[0];
  let seen = 0;
  try {
    const rsp = await fetch("/api/tap?" + new URLSearchParams(query), { signal: tapAbort.signal });
    if (!rsp.ok) throw new Error(`tap: ${(await rsp.json()).error}`);
    const reader = rsp.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffered.indexOf("\n\n")) >= 0) {
        const message = buffered.slice(0, cut);
        buffered = buffered.slice(cut + 2);
        if (!message.startsWith("data: ")) continue;
        const event = JSON.parse(message.slice(6));
        if (event.error) throw new Error(`tap: ${event.error}`);
        tbody.prepend(tapRow(event));
        while (tbody.rows.length > MAX_TAP_ROWS) tbody.deleteRow(-1);
        seen += 1;
        $("tap-status").textContent = `${seen} events`;
      }
    }
    $("tap-status").textContent = `${seen} events; ended`;
  } catch (e) {
    if (e.name !== "AbortError") reportError(e.message);
  } finally {
    $("tap-start").disabled = false;
    $("tap-stop").disabled = true;
    tapAbort = null;
  }
}

function stopTap() {
  if (tapAbort) tapAbort.abort();
}

async function main() {
  const { namespaces } = await api("/api/namespaces", {});
  fillSelect($("namespace"), namespaces, false);
  const wanted = params.get("namespace") || (namespaces.includes("demo") ? "demo" : namespaces[0]);
  if (wanted) $("namespace").value = wanted;
  $("namespace").addEventListener("change", () => { history.clear(); refresh(); });
  $("window").addEventListener("change", refresh);
  $("route-service").addEventListener("change", refresh);
  $("tap-form").addEventListener("submit", (e) => { e.preventDefault(); startTap(); });
  $("tap-stop").addEventListener("click", stopTap);
  await refresh();
  setInterval(refresh, REFRESH_MS);
  // `?tap=deployment/web&limit=5` starts a tap at once (the tests use it).
  if (params.get("tap")) {
    $("tap-target").value = params.get("tap");
    startTap(Number(params.get("limit") || 100));
  }
}

main().catch((e) => reportError(e.message));

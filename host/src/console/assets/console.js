// The sluice console: renders the JSON of /api/ and polls it once a
// second. No framework and no build step; every value is put in the page
// as text (never as HTML), so nothing a message holds can run here.
"use strict";

const POLL_MS = 1000;
let session = null;
let timer = null;
let view = null;

// ---- helpers ---------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const main = () => document.getElementById("main");
const fmt = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const rate = (n) => (n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString("en-US"));
const when = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–");
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
const enc = encodeURIComponent;
// A plugin error can carry a whole wasm backtrace: its start and its end,
// with the whole of it on hover.
function short(text) {
  if (!text || text.length <= 200) return h("span", {}, text || "");
  return h("span", { title: text }, text.slice(0, 90) + " … " + text.slice(-90));
}

class ApiError extends Error {
  constructor(status, body) {
    super(body.message || "HTTP " + status);
    this.status = status;
    this.code = body.code || "http_" + status;
  }
}

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET" && session) init.headers["x-sluice-csrf"] = session.csrf;
  const res = await fetch("/api" + path, init);
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    if (res.status === 401 && data.code === "signed_out" && path !== "/session") showSignIn();
    throw new ApiError(res.status, data);
  }
  return data;
}

function decode(b64) {
  const bin = atob(b64 || "");
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// Payload as JSON (pretty) if it parses, else text if it is UTF-8, else hex.
function payloadView(b64, mode) {
  const raw = decode(b64);
  let text = null;
  try { text = new TextDecoder("utf-8", { fatal: true }).decode(raw); } catch (_) { text = null; }
  const hex = () => Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join(" ");
  if (mode === "hex" || text === null) return hex();
  if (mode === "text") return text;
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
}

function table(columns, rows, rowAttrs) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.title)))),
    h("tbody", {}, rows.length === 0
      ? h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "none"))
      : rows.map((r) => h("tr", rowAttrs ? rowAttrs(r) : {}, columns.map((c) =>
        h("td", { class: c.num ? "num" : null, "data-field": c.field || null }, c.cell(r)))))));
}

function setStatus(text, bad) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = bad ? "error" : "";
}

function note(el, text, bad) {
  el.textContent = text;
  el.className = bad ? "error" : "ok";
}

// ---- sign-in ---------------------------------------------------------------

function showSignIn(message) {
  session = null;
  stopPolling();
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  const error = h("p", { id: "sign-in-error", class: "error" }, message || "");
  const token = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", {
    id: "sign-in", onsubmit: async (e) => {
      e.preventDefault();
      try {
        session = await api("POST", "/session", { token: token.value });
        token.value = "";
        started();
      } catch (err) {
        error.textContent = err.message;
      }
    },
  }, h("label", {}, "Token", token), h("button", { type: "submit" }, "Sign in"));
  main().replaceChildren(h("div", { class: "signin" }, h("h1", {}, "Sign in to sluice"), form, error));
}

function started() {
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = session.principal;
  document.getElementById("sign-out").hidden = !session.auth;
  route();
}

// ---- routing and polling ---------------------------------------------------

function stopPolling() {
  if (timer) clearTimeout(timer);
  timer = null;
}

async function refresh(v) {
  if (view !== v) return;
  try {
    await v.update();
    setStatus("updated " + new Date().toLocaleTimeString());
  } catch (err) {
    if (view === v) setStatus(err.message, true);
  }
  if (view === v && session) timer = setTimeout(() => refresh(v), POLL_MS);
}

function route() {
  if (!session) return;
  stopPolling();
  let parts;
  try {
    parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  } catch (_) {
    parts = ["overview"];
  }
  const page = parts[0] || "overview";
  const arg = parts.slice(1).join("/");
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  const pages = { overview: Overview, topics: arg ? Topic : Topics, groups: arg ? Group : Groups, "dead-letters": arg ? DeadLetters : DeadLetterTopics, plugins: Plugins };
  const make = pages[page] || Overview;
  view = make(arg);
  main().replaceChildren(view.root);
  refresh(view);
}

// A view: a root element and an update() that fetches and redraws its
// live part. Forms live outside the redrawn part, so typing survives.
function live(root, target, load, draw) {
  return { root, update: async () => { target.replaceChildren(draw(await load())); } };
}

// ---- overview --------------------------------------------------------------

function chart(points) {
  const W = 600, H = 140;
  const max = Math.max(1, ...points.map((p) => Math.max(p.published, p.delivered)));
  const line = (key) => points.map((p, i) =>
    `${(i / Math.max(1, points.length - 1)) * W},${H - (p[key] / max) * (H - 10)}`).join(" ");
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  for (const key of ["published", "delivered"]) {
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("class", key);
    pl.setAttribute("points", line(key));
    svg.append(pl);
  }
  return h("div", { class: "chart" }, svg,
    h("div", { class: "legend" }, h("span", { class: "p" }, "published/s"), h("span", { class: "d" }, "delivered/s"),
      h("span", { class: "muted" }, `last ${points.length} s, peak ${rate(max)}/s`)));
}

function card(label, value, id) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", id }, value));
}

function Overview() {
  const body = h("div");
  const root = h("section", {}, h("h1", {}, "Overview"), body);
  return live(root, body, () => api("GET", "/overview"), (o) => h("div", {},
    h("div", { class: "cards" },
      o.points === null ? null : [
        card("published / s", rate(o.published_per_sec), "published-rate"),
        card("delivered / s", rate(o.delivered_per_sec), "delivered-rate"),
        card("connections", fmt(o.connections), "connections")],
      card("topics", fmt(o.topics), "topic-count"),
      card("messages stored", fmt(o.messages), "message-count"),
      card("bytes stored", bytes(o.bytes)),
      o.groups === null ? null : card("groups", fmt(o.groups), "group-count")),
    o.points === null ? null : chart(o.points),
    o.lagging_groups === null ? null : [h("h2", {}, "Groups lagging most"),
      table([
        { title: "group", cell: (g) => h("a", { href: "#/groups/" + enc(g.name) }, g.name) },
        { title: "lag", num: true, field: "lag", cell: (g) => fmt(g.lag) },
        { title: "pending", num: true, cell: (g) => fmt(g.pending) },
        { title: "members", num: true, cell: (g) => fmt(g.members) },
      ], o.lagging_groups)],
    o.failing_plugins === null ? null : [h("h2", {}, "Failing plugins"),
      table([
        { title: "plugin", cell: (p) => h("a", { href: "#/plugins" }, p.name) },
        { title: "version", cell: (p) => h("code", {}, p.hash) },
        { title: "errors", num: true, field: "errors", cell: (p) => fmt(p.errors) },
        { title: "calls", num: true, cell: (p) => fmt(p.calls) },
        { title: "last error", cell: (p) => [when(p.last_error_at_ms), " ", short(p.last_error)] },
      ], o.failing_plugins, (p) => ({ "data-plugin": p.name }))]));
}

// ---- topics ----------------------------------------------------------------

function retention(r) {
  const parts = [];
  if (r.max_age_ms) parts.push(Math.round(r.max_age_ms / 1000) + " s");
  if (r.max_bytes) parts.push(bytes(r.max_bytes));
  if (r.max_messages) parts.push(fmt(r.max_messages) + " msgs");
  return parts.length ? parts.join(", ") : "forever";
}

function Topics() {
  const filter = h("input", { id: "topic-filter", placeholder: "filter", type: "search" });
  const body = h("div");
  const root = h("section", {}, h("h1", {}, "Topics"), h("div", { class: "toolbar" }, filter), body);
  let last = [];
  const draw = (topics) => {
    last = topics;
    const f = filter.value.trim();
    return table([
      { title: "topic", cell: (t) => h("a", { href: "#/topics/" + enc(t.name) }, t.name) },
      { title: "messages", num: true, field: "messages", cell: (t) => fmt(t.messages) },
      { title: "delayed", num: true, field: "waiting", cell: (t) => fmt(t.waiting) },
      { title: "bytes", num: true, cell: (t) => bytes(t.bytes) },
      { title: "msgs/s", num: true, cell: (t) => rate(t.rate) },
      { title: "offsets", num: true, cell: (t) => `${fmt(t.start_offset)} – ${fmt(t.next_offset)}` },
      { title: "retention", cell: (t) => retention(t.retention) },
      { title: "newest", cell: (t) => when(t.newest_timestamp_ms) },
    ], topics.filter((t) => t.name.includes(f)), (t) => ({ "data-topic": t.name }));
  };
  filter.addEventListener("input", () => body.replaceChildren(draw(last)));
  return live(root, body, () => api("GET", "/topics"), draw);
}

function messagesTable(messages, mode) {
  return table([
    { title: "offset", num: true, field: "offset", cell: (m) => m.offset },
    { title: "time", cell: (m) => when(m.timestamp_ms) },
    { title: "key", cell: (m) => (m.key === null ? "" : payloadView(m.key, "text")) },
    { title: "headers", cell: (m) => m.headers.map(([k, v]) => h("div", {}, h("code", {}, k), ": ", v)) },
    { title: "payload", field: "payload", cell: (m) => h("pre", {}, payloadView(m.payload, mode)) },
  ], messages.slice().reverse(), (m) => ({ "data-offset": m.offset }));
}

function publishForm(topic) {
  const payload = h("textarea", { id: "publish-payload", required: true });
  const key = h("input", { id: "publish-key" });
  const id = h("input", { id: "publish-id", placeholder: "optional" });
  const header = h("input", { id: "publish-header", placeholder: "name=value" });
  const result = h("span", { id: "publish-result" });
  const form = h("form", {
    class: "inline", id: "publish-form", onsubmit: async (e) => {
      e.preventDefault();
      const headers = header.value.includes("=") ? [header.value.split(/=(.*)/s).slice(0, 2)] : [];
      try {
        const out = await api("POST", `/topics/${enc(topic)}/messages`, { payload: payload.value, key: key.value, message_id: id.value, headers });
        note(result, describeOutcome(out));
      } catch (err) { note(result, err.message, true); }
    },
  }, h("label", {}, "payload", payload), h("label", {}, "key", key), h("label", {}, "header", header),
  h("label", {}, "message id", id), h("button", { type: "submit" }, "Publish"), result);
  return form;
}

function describeOutcome(out) {
  if (out.Stored) return "stored at " + out.Stored.map((s) => `${s.topic}@${s.offset}${s.duplicate ? " (duplicate)" : ""}`).join(", ");
  if (out === "Dropped") return "dropped by a plugin";
  if (out.Rejected !== undefined) return "rejected: " + out.Rejected;
  if (out.DeadLettered) return `dead-lettered at ${out.DeadLettered.at.topic}@${out.DeadLettered.at.offset}: ${out.DeadLettered.reason}`;
  return JSON.stringify(out);
}

function Topic(name) {
  const mode = h("select", { id: "payload-mode" }, ["json", "text", "hex"].map((m) => h("option", { value: m }, m)));
  const info = h("div");
  const groups = h("div");
  const msgs = h("div");
  const form = h("div");
  const root = h("section", {}, h("h1", {}, "Topic ", h("code", { id: "topic-name" }, name)), info, form,
    h("h2", {}, "Consumer groups"), groups, h("h2", {}, "Last messages ", mode), msgs);
  let formShown = false;
  return {
    root, update: async () => {
      const t = await api("GET", `/topics/${enc(name)}`);
      info.replaceChildren(h("div", { class: "cards" },
        card("messages", fmt(t.messages), "topic-messages"), card("bytes", bytes(t.bytes)),
        card("msgs/s", rate(t.rate)), card("next offset", fmt(t.next_offset), "topic-next-offset"),
        card("retention", retention(t.retention)), card("segments", fmt(t.segments))));
      if (t.may_publish && !formShown) { form.replaceChildren(h("h2", {}, "Publish a test message"), publishForm(name)); formShown = true; }
      groups.replaceChildren(t.groups === null ? h("p", { class: "muted" }, "needs the groups admin right") : table([
        { title: "group", cell: (g) => h("a", { href: "#/groups/" + enc(g.name) }, g.name) },
        { title: "lag", num: true, field: "lag", cell: (g) => fmt(g.lag) },
        { title: "pending", num: true, cell: (g) => fmt(g.pending) },
        { title: "members", num: true, cell: (g) => fmt(g.members) },
      ], t.groups));
      if (!t.may_read) { msgs.replaceChildren(h("p", { class: "muted" }, "you may not read this topic")); return; }
      const m = await api("GET", `/topics/${enc(name)}/messages?last=20`);
      msgs.replaceChildren(messagesTable(m.messages, mode.value));
    },
  };
}

// ---- groups ----------------------------------------------------------------

function Groups() {
  const body = h("div");
  const root = h("section", {}, h("h1", {}, "Consumer groups"), body);
  return live(root, body, () => api("GET", "/groups"), (groups) => table([
    { title: "group", cell: (g) => h("a", { href: "#/groups/" + enc(g.name) }, g.name) },
    { title: "pattern", cell: (g) => h("code", {}, g.pattern) },
    { title: "members", num: true, cell: (g) => fmt(g.members) },
    { title: "lag", num: true, field: "lag", cell: (g) => fmt(g.lag) },
    { title: "pending", num: true, field: "pending", cell: (g) => fmt(g.pending) },
    { title: "redeliveries", num: true, cell: (g) => fmt(g.redeliveries) },
    { title: "dead-lettered", num: true, cell: (g) => fmt(g.dead_lettered) },
  ], groups, (g) => ({ "data-group": g.name })));
}

function resetForm(name) {
  const to = h("select", { id: "reset-to" }, h("option", { value: "earliest" }, "earliest"),
    h("option", { value: "latest" }, "latest"), h("option", { value: "offset" }, "offset"),
    h("option", { value: "time" }, "time (UTC)"));
  const offset = h("input", { id: "reset-offset", type: "number", min: 0, placeholder: "offset" });
  const time = h("input", { id: "reset-time", type: "datetime-local", step: 1 });
  const confirm = h("input", { id: "reset-confirm", placeholder: "type the group's name" });
  const result = h("span", { id: "reset-result" });
  // The position to send, or an error to show.
  const target = () => {
    if (to.value === "offset") {
      return /^\d+$/.test(offset.value.trim()) ? { offset: Number(offset.value) } : "give the offset to move to";
    }
    if (to.value === "time") {
      const ms = Date.parse(time.value + "Z");
      return Number.isNaN(ms) ? "give the time to move to" : { time_ms: ms };
    }
    return to.value;
  };
  return h("form", {
    class: "inline", id: "reset-form", onsubmit: async (e) => {
      e.preventDefault();
      const position = target();
      if (typeof position === "string" && !["earliest", "latest"].includes(position)) {
        note(result, position, true);
        return;
      }
      try {
        await api("POST", `/groups/${enc(name)}/reset`, { to: position, confirm: confirm.value });
        confirm.value = "";
        note(result, "reset to " + (typeof position === "string" ? position : JSON.stringify(position)));
      } catch (err) { note(result, err.message, true); }
    },
  }, h("label", {}, "move to", to), h("label", {}, "offset", offset), h("label", {}, "time", time),
  h("label", {}, "confirm: the group's name", confirm), h("button", { class: "danger", type: "submit" }, "Reset"), result);
}

function Group(name) {
  const body = h("div");
  const root = h("section", {}, h("h1", {}, "Group ", h("code", {}, name)), body,
    h("h2", {}, "Reset to a position"), h("p", { class: "muted" }, "Pending deliveries are forgotten."), resetForm(name));
  return live(root, body, () => api("GET", `/groups/${enc(name)}`), (g) => {
    const lag = g.topics.reduce((s, t) => s + t.lag, 0);
    const pending = g.topics.reduce((s, t) => s + t.pending, 0);
    return h("div", {},
      h("div", { class: "cards" }, card("lag", fmt(lag), "group-lag"), card("pending", fmt(pending), "group-pending"),
        card("members", fmt(g.members.length), "group-members"), card("redeliveries", fmt(g.redeliveries), "group-redeliveries"),
        card("dead-lettered", fmt(g.dead_lettered), "group-dead-lettered")),
      h("p", {}, "consumes ", h("code", {}, g.pattern)),
      h("h2", {}, "Topics"), table([
        { title: "topic", cell: (t) => h("a", { href: "#/topics/" + enc(t.topic) }, t.topic) },
        { title: "ack floor", num: true, cell: (t) => fmt(t.ack_floor) },
        { title: "cursor", num: true, cell: (t) => fmt(t.cursor) },
        { title: "end", num: true, cell: (t) => fmt(t.end_offset) },
        { title: "lag", num: true, field: "lag", cell: (t) => fmt(t.lag) },
        { title: "pending", num: true, cell: (t) => fmt(t.pending) },
      ], g.topics),
      h("h2", {}, "Members"), table([
        { title: "id", num: true, cell: (m) => m.id },
        { title: "client", cell: (m) => m.client },
        { title: "in flight", num: true, cell: (m) => `${m.in_flight} / ${m.max_in_flight}` },
        { title: "delivered", num: true, cell: (m) => fmt(m.delivered) },
      ], g.members));
  });
}

// ---- dead letters ----------------------------------------------------------

function DeadLetterTopics() {
  const body = h("div");
  const root = h("section", {}, h("h1", {}, "Dead letters"), body);
  return live(root, body, () => api("GET", "/dead-letters"), (topics) => table([
    { title: "dead-letter topic", cell: (t) => h("a", { href: "#/dead-letters/" + enc(t.name) }, t.name) },
    { title: "messages", num: true, field: "messages", cell: (t) => fmt(t.messages) },
  ], topics, (t) => ({ "data-topic": t.name })));
}

function DeadLetters(topic) {
  const selected = new Set();
  const showHandled = h("input", { id: "show-handled", type: "checkbox" });
  const result = h("div", { id: "dead-letter-result" });
  const body = h("div");
  const act = (what) => async () => {
    if (selected.size === 0) { note(result, "select dead letters first", true); return; }
    try {
      const done = await api("POST", `/dead-letters/${enc(topic)}/${what}`, { offsets: [...selected] });
      result.replaceChildren(...done.map((d) => h("div", { class: d.error ? "error" : "ok", "data-offset": d.offset },
        `${topic}@${d.offset}: `, d.error ? d.error.message : (d.outcome ? "redriven, " + describeOutcome(d.outcome) : "discarded"))));
      selected.clear();
    } catch (err) { note(result, err.message, true); }
  };
  const root = h("section", {}, h("h1", {}, "Dead letters in ", h("code", {}, topic)),
    h("div", { class: "toolbar" },
      h("button", { id: "redrive", type: "button", onclick: act("redrive") }, "Redrive selected"),
      h("button", { id: "discard", class: "secondary", type: "button", onclick: act("discard") }, "Discard selected"),
      h("label", {}, "show redriven and discarded", showHandled)),
    result, body);
  return live(root, body, () => api("GET", `/dead-letters/${enc(topic)}?last=500`), (letters) => table([
    { title: "", cell: (l) => l.handled ? "" : h("input", { type: "checkbox", class: "pick", checked: selected.has(l.offset), onchange: (e) => { if (e.target.checked) selected.add(l.offset); else selected.delete(l.offset); } }) },
    { title: "offset", num: true, field: "offset", cell: (l) => l.offset },
    { title: "from", cell: (l) => l.original_topic ? [h("a", { href: "#/topics/" + enc(l.original_topic) }, l.original_topic), l.original_offset === null ? "" : "@" + l.original_offset] : "–" },
    { title: "reason", field: "reason", cell: (l) => l.reason || "–" },
    { title: "group / stage", cell: (l) => [l.group || "", l.stage ? "stage " + l.stage : ""].filter(Boolean).join(", ") || "–" },
    { title: "attempts", num: true, cell: (l) => l.attempts === null ? "–" : l.attempts },
    { title: "time", cell: (l) => when(l.timestamp_ms) },
    { title: "payload", cell: (l) => h("pre", {}, payloadView(l.payload, "json")) },
    { title: "status", field: "status", cell: (l) => l.handled ? h("span", { class: "badge" }, l.handled.action + (l.handled.to_offset !== null && l.handled.to_offset !== undefined ? ` to ${l.handled.to_topic}@${l.handled.to_offset}` : "") + " by " + l.handled.by) : "" },
  ], letters.slice().reverse().filter((l) => showHandled.checked || !l.handled), (l) => ({ "data-offset": l.offset })));
}

// ---- plugins ---------------------------------------------------------------

function Plugins() {
  const body = h("div");
  const root = h("section", {}, h("h1", {}, "Plugins and pipelines"), body);
  return live(root, body, () => api("GET", "/plugins"), (p) => h("div", {},
    p.config_refused ? h("p", { class: "error" }, `config change refused ${when(p.config_refused[0])}: ${p.config_refused[1]}`) : null,
    h("h2", {}, "Pipelines"),
    p.pipelines.length === 0 ? h("p", { class: "muted" }, "none configured") : p.pipelines.map((pl) =>
      h("div", { class: "pipeline", "data-pipeline": pl.pattern }, h("code", {}, pl.pattern),
        pl.stages.map((s) => [h("span", { class: "arrow" }, "→"), h("span", { class: "stage" }, s.plugin, " ", h("code", { class: "muted" }, s.hash))]),
        h("span", { class: "arrow" }, "→"), h("span", { class: "muted" }, "store (on error: " + pl.on_error + ")"))),
    h("h2", {}, "Plugins"),
    table([
      { title: "plugin", cell: (x) => x.name },
      { title: "version", cell: (x) => [h("code", {}, x.hash), h("div", { class: "muted" }, `loaded ${when(x.loaded_at_ms)} (${x.loaded_from}, ${x.load_ms} ms)`)] },
      { title: "calls", num: true, field: "calls", cell: (x) => fmt(x.calls) },
      { title: "messages", num: true, cell: (x) => fmt(x.messages) },
      { title: "errors", num: true, field: "errors", cell: (x) => h("span", { class: x.errors ? "error" : "" }, fmt(x.errors)) },
      { title: "p50 / p99 per batch", num: true, cell: (x) => `${x.p50_us} / ${x.p99_us} µs` },
      { title: "outcomes", cell: (x) => Object.entries(x.outcomes || {}).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${fmt(n)}`).join(", ") || "–" },
      { title: "last error", field: "last-error", cell: (x) => x.last_error ? [when(x.last_error_at_ms), " ", short(x.last_error)] : "–" },
    ], p.plugins, (x) => ({ "data-plugin": x.name })),
    h("h2", {}, "Rollouts"),
    p.rollouts.length === 0 ? h("p", { class: "muted" }, "none since start (sluice plugin shadow | canary)") : table([
      { title: "plugin", cell: (r) => r.name },
      { title: "mode", field: "mode", cell: (r) => r.mode },
      { title: "state", field: "state", cell: (r) => h("span", { class: r.state === "RolledBack" && r.reason ? "error" : "" }, { Running: "running", Promoted: "promoted", RolledBack: "rolled back" }[r.state] || r.state, r.reason ? [": ", short(r.reason)] : null) },
      { title: "current → candidate", cell: (r) => [h("code", {}, r.current), " → ", h("code", {}, r.candidate)] },
      { title: "started", cell: (r) => when(r.started_at_ms) },
      { title: "compared", num: true, field: "compared", cell: (r) => r.diff ? `${fmt(r.diff.compared)} (${fmt(r.diff.agreed)} agreed, ${fmt(r.diff.skipped)} skipped)` : "–" },
      { title: "differences", field: "differences", cell: (r) => r.diff ? Object.entries(r.diff.differences).map(([k, n]) => `${k} ${fmt(n)}`).join(", ") || "none" : "–" },
      { title: "canary window (messages / failed / rejected / p99)", field: "canary", cell: (r) => r.canary ? ["current", "candidate"].map((v) => h("div", {}, `${v}: ${fmt(r.canary[v].messages)} / ${fmt(r.canary[v].failed)} / ${fmt(r.canary[v].rejected)} / ${r.canary[v].p99_us} µs`)) : "–" },
    ], p.rollouts, (r) => ({ "data-rollout": r.name })),
    p.rollouts.some((r) => r.diff && r.diff.samples.length) ? [h("h3", {}, "Differing messages (latest samples)"), table([
      { title: "plugin", cell: (x) => x.plugin },
      { title: "when", cell: (x) => when(x.at_ms) },
      { title: "topic", cell: (x) => x.topic },
      { title: "kind", field: "kind", cell: (x) => x.kind },
      { title: "payload", cell: (x) => h("code", {}, short(x.payload)) },
      { title: "current", cell: (x) => x.current },
      { title: "candidate", cell: (x) => x.candidate },
    ], p.rollouts.flatMap((r) => (r.diff ? r.diff.samples : []).map((x) => ({ plugin: r.name, ...x }))).reverse())] : null,
    h("h2", {}, "Versions loaded and refused"),
    table([
      { title: "plugin", cell: (e) => e.plugin },
      { title: "version", cell: (e) => h("code", {}, e.hash) },
      { title: "when", cell: (e) => when(e.at_ms) },
      { title: "what", cell: (e) => e.refused ? h("span", { class: "error" }, "refused: ", short(e.refused)) : `loaded (${e.loaded_from}${e.reload_ms !== null ? ", live " + e.reload_ms + " ms after the file changed" : ""})` },
    ], p.plugins.flatMap((x) => x.history.map((e) => ({ plugin: x.name, ...e }))).reverse())));
}

// ---- start -----------------------------------------------------------------

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("sign-out").addEventListener("click", async () => {
    try { await api("DELETE", "/session"); } catch (_) { /* signed out either way */ }
    showSignIn();
  });
  try {
    session = await api("GET", "/session");
    started();
  } catch (err) {
    if (err.code === "signed_out") showSignIn();
    else main().replaceChildren(h("p", { class: "error", id: "fatal" }, err.message));
  }
});

// The dashboard's only script: refreshes the page's figures and tables from its JSON every
// 2 s, draws the throughput chart, and sends the DLQ actions. Data goes into the page only
// through textContent and attributes, never innerHTML, so a job's command stays text.
"use strict";

const REFRESH_MS = 2000;
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

function lookup(data, path) {
  return path.split(".").reduce((v, k) => (v == null ? v : v[k]), data);
}

function format(value, how) {
  if (value == null) return "-";
  if (how === "percent") return (value * 100).toFixed(1) + "%";
  if (how === "seconds") return value + "s";
  return String(value);
}

function fillFields(data) {
  for (const el of document.querySelectorAll("[data-field]")) {
    const value = lookup(data, el.dataset.field);
    if (value !== undefined) el.textContent = format(value, el.dataset.format);
  }
}

function fillTable(table, rows) {
  if (!table || !rows) return;
  const heads = [...table.querySelectorAll("thead th")];
  const body = document.createElement("tbody");
  for (const row of rows) {
    const tr = body.insertRow();
    for (const th of heads) {
      const td = tr.insertCell();
      if (th.dataset.action === "retry") {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Retry";
        button.dataset.retry = row.id;
        td.append(button);
        continue;
      }
      const value = row[th.dataset.key];
      const text = value == null ? "" : String(value);
      if (th.dataset.link && text) {
        const a = document.createElement("a");
        a.href = th.dataset.link + encodeURIComponent(text);
        a.textContent = text;
        td.append(a);
      } else {
        td.textContent = text;
      }
    }
  }
  if (!rows.length) {
    const td = body.insertRow().insertCell();
    td.colSpan = heads.length;
    td.textContent = "none";
    td.parentElement.className = "empty";
  }
  table.tBodies[0].replaceWith(body);
}

function drawChart(svg, series) {
  if (!svg || !series) return;
  const ns = "http://www.w3.org/2000/svg";
  const width = 600, height = 120, pad = 16;
  const max = Math.max(1, ...series.map((p) => p.runs));
  const step = (width - pad) / series.length;
  svg.replaceChildren();
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 2);
  label.setAttribute("y", 10);
  label.setAttribute("class", "axis");
  label.textContent = "max " + max + "/min";
  svg.append(label);
  series.forEach((p, i) => {
    for (const [count, cls] of [[p.runs, "bar"], [p.failed, "bar failed"]]) {
      if (!count) continue;
      const h = ((height - pad) * count) / max;
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", pad + i * step);
      rect.setAttribute("y", height - h);
      rect.setAttribute("width", Math.max(1, step - 2));
      rect.setAttribute("height", h);
      rect.setAttribute("class", cls);
      const title = document.createElementNS(ns, "title");
      title.textContent = new Date(p.t * 1000).toISOString().slice(11, 16) + " UTC: " +
        p.runs + " runs, " + p.failed + " failed";
      rect.append(title);
      svg.append(rect);
    }
  });
}

const views = {
  overview(data) {
    fillFields(data);
    fillTable(document.getElementById("queues"), data.queue_rows);
    fillTable(document.getElementById("workers"), data.workers);
    drawChart(document.getElementById("chart"), data.series);
  },
  jobs(data) { fillTable(document.getElementById("rows"), data.rows); },
  dlq(data) { fillTable(document.getElementById("rows"), data.rows); },
  workers(data) { fillTable(document.getElementById("rows"), data.rows); },
  job(data) {
    fillFields(data);
    fillTable(document.getElementById("attempts"), data.attempts);
    const out = document.getElementById("output");
    if (out && data.output != null) out.textContent = data.output;
  },
};

async function refresh() {
  const view = document.body.dataset.view;
  if (!views[view]) return;
  let url = document.body.dataset.api;
  if (view === "jobs") url += location.search;
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    views[view](await response.json());
    document.getElementById("refreshed").textContent =
      "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    document.getElementById("refreshed").textContent = "refresh failed: " + err.message;
  }
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body || {}),
  });
  const answer = await response.json().catch(() => ({}));
  const notice = document.getElementById("notice");
  if (!response.ok) {
    notice.textContent = "refused: " + (answer.error || response.status);
    notice.className = "error";
  } else {
    notice.textContent = answer.retried != null ? answer.retried + " job(s) retried"
      : answer.purged + " job(s) purged";
    if (answer.held && answer.held.length) {
      notice.textContent += "; " + answer.held.length +
        " stay dead: a live job holds their unique key (" + answer.held.join(", ") + ")";
    }
    notice.className = "ok";
  }
  await refresh();
}

document.addEventListener("click", (event) => {
  const target = event.target;
  if (target.dataset && target.dataset.retry) {
    post("/api/dlq/retry", { ids: [target.dataset.retry] });
  } else if (target.id === "retry-all") {
    post("/api/dlq/retry", { all: true });
  } else if (target.id === "purge-all") {
    if (confirm("Delete every dead job and its history?")) post("/api/dlq/purge");
  }
});

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.view === "overview") refresh();  // draws the chart at once
  setInterval(refresh, REFRESH_MS);
});

"use strict";
// What every page shares: fetch with the CSRF token, building elements from text (never HTML: agents write much of
// what is shown), and the live feed — /events resumed after the last applied sequence, each id applied once.

const hive = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  class ApiError extends Error {
    constructor(code, message) { super(message); this.code = code; }
  }

  async function api(method, path, body) {
    const res = await fetch("/api" + path, {
      method,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      throw new ApiError("unauthenticated", "The session is over; log in again.");
    }
    const type = res.headers.get("content-type") || "";
    const data = type.includes("json") ? await res.json() : await res.text();
    if (!res.ok) throw new ApiError(data.code || "internal", data.message || String(data));
    return data;
  }

  // el("div", {class: "row"}, "text", child): attributes and text nodes only.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // One line at the top saying how the last action went; it goes when clicked, or after a while when it was good news.
  let noticeTimer = null;
  function notice(text, kind) {
    const box = document.getElementById("notice");
    box.textContent = text;
    box.dataset.kind = kind || "info";
    box.hidden = false;
    box.onclick = () => { box.hidden = true; };
    clearTimeout(noticeTimer);
    if (kind === "ok") noticeTimer = setTimeout(() => { box.hidden = true; }, 4000);
  }

  // The live feed. `applied` is every sequence handled, so a test (and a curious operator) can see nothing came twice.
  class Live {
    constructor(asOf, handlers) {
      this.last = asOf;
      this.handlers = handlers;
      this.applied = [];
      this.duplicates = 0;
      this.opens = 0;
      this.ping = Number(document.body.dataset.pingSeconds || 15);
      this.conn = document.getElementById("conn");
    }
    state(s) {
      if (this.conn) { this.conn.dataset.state = s; this.conn.textContent = s; }
    }
    url() {
      const agent = this.handlers.agent ? "&agent=" + encodeURIComponent(this.handlers.agent) : "";
      return "/events?after=" + this.last + agent;
    }
    open() {
      this.opens += 1;
      const es = (this.es = new EventSource(this.url()));
      es.addEventListener("hello", () => { this.state("live"); this.kick(); if (this.handlers.hello) this.handlers.hello(); });
      es.addEventListener("ping", () => this.kick());
      es.addEventListener("hive", (m) => {
        this.kick();
        const seq = Number(m.lastEventId);
        if (seq <= this.last) { this.duplicates += 1; return; }
        this.last = seq;
        this.applied.push(seq);
        if (this.conn) this.conn.dataset.applied = String(this.applied.length);
        this.handlers.event(JSON.parse(m.data).event, seq);
      });
      es.addEventListener("queued", (m) => { this.kick(); if (this.handlers.queued) this.handlers.queued(JSON.parse(m.data)); });
      es.addEventListener("stats", (m) => { this.kick(); if (this.handlers.stats) this.handlers.stats(JSON.parse(m.data)); });
      es.addEventListener("message", (m) => { this.kick(); if (this.handlers.message) this.handlers.message(JSON.parse(m.data)); });
      es.addEventListener("resync", async () => {
        es.close();
        this.state("reconnecting");
        this.last = await this.handlers.resync();
        this.open();
      });
      es.onerror = () => {
        this.state("reconnecting");
        if (es.readyState === EventSource.CLOSED) this.again();
      };
    }
    kick() {
      clearTimeout(this.dog);
      this.dog = setTimeout(() => { this.state("reconnecting"); this.es.close(); this.again(); }, 3 * this.ping * 1000);
    }
    again() {
      clearTimeout(this.retry);
      this.retry = setTimeout(() => this.open(), 1000);
    }
  }

  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  function staleness(iso) {
    if (!iso) return "never";
    const s = (Date.now() - Date.parse(iso)) / 1000;
    return s < 600 ? "fresh" : s < 3600 ? "aging" : "stale";
  }

  return { api, el, notice, Live, ApiError, ago, staleness, csrf };
})();

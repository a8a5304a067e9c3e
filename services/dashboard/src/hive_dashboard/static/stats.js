"use strict";
// The stats charts (uPlot, from npm): an agent's series on its page, the hive's on /hive. Every series is bucketed by
// the server (/api/stats); a `stats` event on the live feed says new rows were committed, and the charts read again.

const stats = (() => {
  const { api, el } = hive;
  const WINDOWS = { "1 h": 3600, "6 h": 6 * 3600, "24 h": 86400, "7 d": 7 * 86400 };
  const COLORS = ["#1f5fbf", "#b3261e", "#1f7a3d", "#9a6700"];

  // A chart: its title, and its lines, each a key and what to take of a bucket (`n`, `sum`, `avg`, `p95`, …);
  // `per` scales a value with the bucket's width (turns per minute).
  const perMinute = (v, step) => v / (step / 60);
  const AGENT = [
    { id: "turns", title: "Turns per minute", lines: [{ key: "turns", take: "n", label: "turns/min", per: perMinute }] },
    { id: "duration", title: "Turn duration (s)", lines: [
      { key: "turn.duration_ms", take: "p50", label: "p50", scale: 1e-3 },
      { key: "turn.duration_ms", take: "p95", label: "p95", scale: 1e-3 }] },
    { id: "tool-calls", title: "Tool calls per turn", lines: [{ key: "turn.tool_calls", take: "avg", label: "calls" }] },
    { id: "cost", title: "Cost per turn (USD)", lines: [{ key: "turn.cost_usd", take: "avg", label: "USD" }] },
    { id: "tokens", title: "Tokens per turn", lines: [
      { key: "turn.input_tokens", take: "avg", label: "in" }, { key: "turn.output_tokens", take: "avg", label: "out" }] },
    { id: "inbox", title: "Inbox depth at a turn's start", lines: [
      { key: "inbox.depth", take: "last", label: "current" }, { key: "inbox.depth", take: "max", label: "max" }] },
    { id: "notes", title: "Notes size (bytes)", lines: [{ key: "notes.bytes", take: "last", label: "bytes" }] },
    { id: "since", title: "Time since the last turn (min)", lines: [{ key: "since_last_turn", take: "last", label: "min", scale: 1 / 60 }] },
  ];
  const AGENT_TOTALS = [
    { family: "turn.exit", title: "Exit classes" },
    { family: "tool", title: "Tool calls" },
    { family: "turn.received", title: "Messages read, by sender" },
    { family: "turn.sent", title: "Messages sent, by recipient" },
  ];
  const HIVE = [
    { id: "turns", title: "Turns per minute", lines: [{ key: "turns", take: "n", label: "turns/min", per: perMinute }] },
    { id: "cost", title: "Cost (USD per bucket)", lines: [{ key: "turn.cost_usd", take: "sum", label: "USD" }] },
    { id: "tokens", title: "Tokens (per bucket)", lines: [
      { key: "turn.input_tokens", take: "sum", label: "in" }, { key: "turn.output_tokens", take: "sum", label: "out" }] },
    { id: "approvals", title: "Approval queue", lines: [{ key: "approvals.pending", take: "last", label: "pending" }] },
  ];
  const HIVE_TOTALS = [{ family: "turn.exit", title: "Exit classes" }];

  function params(obj) {
    return new URLSearchParams(Object.entries(obj).filter(([, v]) => v !== undefined && v !== null)).toString();
  }

  // One chart's data: the buckets of each line's series, lined up on their start times (the same window, so the
  // same buckets; a line without a sample in a bucket has a gap there).
  async function load(def, agent, since) {
    const keys = [...new Set(def.lines.map((l) => l.key))];
    const replies = await Promise.all(keys.map((key) => api("GET", `/stats?${params({ key, agent, since })}`)));
    const byKey = Object.fromEntries(keys.map((k, i) => [k, replies[i]]));
    const times = [...new Set(replies.flatMap((r) => r.points.map((p) => Date.parse(p.t) / 1000)))].sort((a, b) => a - b);
    const lines = def.lines.map((line) => {
      const reply = byKey[line.key];
      const at = new Map(reply.points.map((p) => [Date.parse(p.t) / 1000, p]));
      return times.map((t) => {
        const p = at.get(t);
        if (!p) return null;
        const v = p[line.take] * (line.scale || 1);
        return line.per ? line.per(v, reply.step_seconds) : v;
      });
    });
    return [times, ...lines];
  }

  class Chart {
    constructor(box, def) {
      this.def = def;
      this.box = box;
      this.plot = null;
      this.empty = el("p", { class: "empty" }, "No samples in this window.");
      box.replaceChildren(el("h3", {}, def.title), this.empty, (this.area = el("div", { class: "plot" })));
    }
    // The x axis is the window asked for, whatever the points (one point alone would span years otherwise).
    show(data, range) {
      this.range = range;
      this.box.dataset.points = String(data[0].length);
      this.empty.hidden = data[0].length > 0;
      if (!this.plot) {
        const width = Math.max(260, this.area.clientWidth || 320);
        const series = [{}, ...this.def.lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length], width: 2, points: { show: true } }))];
        const scales = { x: { time: true, range: () => this.range } };
        this.plot = new uPlot({ width, height: 160, series, scales, legend: { show: true } }, data, this.area);
      } else this.plot.setData(data);
    }
  }

  function totalsBox(box, def, reply) {
    const entries = Object.entries(reply.totals).sort((a, b) => b[1] - a[1]);
    box.dataset.points = String(entries.length);
    box.replaceChildren(el("h3", {}, def.title), entries.length
      ? el("table", { class: "totals" }, ...entries.map(([name, v]) => el("tr", {}, el("td", {}, name.replace(/^mcp__hyperhive__/, "")), el("td", { class: "num" }, String(Math.round(v * 1000) / 1000)))))
      : el("p", { class: "empty" }, "Nothing yet."));
  }

  // A section of charts, totals and (for the hive) the top agents, read again at each `stats` event that is about
  // `agent` (or the hive), at most once at a time.
  function section(root, { agent, charts, totals, top }) {
    let windowSeconds = WINDOWS["24 h"];
    const picker = el("select", { id: "stats-window", "aria-label": "Window" }, ...Object.keys(WINDOWS).map((w) => el("option", { value: WINDOWS[w], selected: w === "24 h" }, w)));
    const status = el("span", { class: "hint", id: "stats-status" });
    const grid = el("div", { class: "charts" });
    root.replaceChildren(el("div", { class: "row" }, picker, status), grid);
    const boxes = charts.map((def) => { const b = el("div", { class: "chart", "data-chart": def.id }); grid.append(b); return new Chart(b, def); });
    const totalBoxes = totals.map((def) => { const b = el("div", { class: "chart", "data-totals": def.family }); grid.append(b); return [b, def]; });
    const topBox = top ? el("div", { class: "chart", "data-top": "cost" }) : null;
    if (topBox) grid.append(topBox);
    let busy = null, again = false;

    async function refresh() {
      if (busy) { again = true; return busy; }
      const now = Date.now();
      const since = new Date(now - windowSeconds * 1000).toISOString();
      const range = [now / 1000 - windowSeconds, now / 1000];
      busy = (async () => {
        try {
          await Promise.all([
            ...boxes.map(async (c) => c.show(await load(c.def, agent, since), range)),
            ...totalBoxes.map(async ([b, def]) => totalsBox(b, def, await api("GET", `/stats/totals?${params({ family: def.family, agent, since })}`))),
            topBox && (async () => {
              const reply = await api("GET", `/stats/top?${params({ since, limit: 10 })}`);
              totalsBox(topBox, { title: "Top agents by cost (USD)" }, { totals: Object.fromEntries(reply.agents.map((a) => [a.agent, a.total])) });
            })(),
          ]);
          status.textContent = `as of ${new Date().toLocaleTimeString()}`;
        } catch (e) { status.textContent = `${e.code}: ${e.message}`; }
      })();
      await busy;
      busy = null;
      if (again) { again = false; return refresh(); }
    }
    picker.addEventListener("change", () => { windowSeconds = Number(picker.value); refresh(); });
    refresh();
    return {
      refresh,
      changed: (agents) => { if (agents.includes(agent || "*")) refresh(); },
    };
  }

  return {
    agent: (root, name) => section(root, { agent: name, charts: AGENT, totals: AGENT_TOTALS, top: false }),
    hive: (root) => section(root, { agent: undefined, charts: HIVE, totals: HIVE_TOTALS, top: true }),
  };
})();

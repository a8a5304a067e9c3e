"use strict";
// The home page: agents, approvals, questions and the operator's inbox, rendered from the embedded snapshot and kept
// live by the feed. Every handler sets state (never counts), so an event applied on top of a snapshot that already
// shows it changes nothing.

const home = (() => {
  const { api, el, notice, ago, staleness } = hive;
  const state = { agents: new Map(), approvals: new Map(), questions: new Map(), inbox: new Map(), problems: [] };
  const TRANSIENT_ENDS = new Set(["agent_state", "agent_started", "container_crash", "agent_destroyed"]);
  let selected = 0;

  function load(snapshot) {
    state.agents = new Map(snapshot.agents.map((r) => [r.name, { ...r, transient: null }]));
    state.approvals = new Map(snapshot.approvals.filter((a) => a.status === "pending").map((a) => [a.id, a]));
    state.questions = new Map(snapshot.questions.filter((q) => q.status === "pending").map((q) => [q.id, q]));
    state.inbox = new Map();
    for (const entry of (snapshot.inbox && snapshot.inbox.entries) || []) state.inbox.set(entry.message.id, entry.message);
    state.problems = snapshot.problems || [];
    return snapshot.as_of;
  }

  // ── notifications: only while the tab is hidden, unless muted (kept across visits) ──
  const muteButton = document.getElementById("mute");
  const muted = () => localStorage.getItem("hive-muted") === "1";
  function showMute() {
    if (!muteButton) return;
    muteButton.textContent = muted() ? "notifications off" : "notifications on";
    muteButton.setAttribute("aria-pressed", String(muted()));
  }
  if (muteButton) {
    muteButton.addEventListener("click", async () => {
      localStorage.setItem("hive-muted", muted() ? "0" : "1");
      if (!muted() && "Notification" in window && Notification.permission === "default") await Notification.requestPermission();
      showMute();
    });
  }
  function notify(title, body) {
    if (!document.hidden || muted() || !("Notification" in window) || Notification.permission !== "granted") return;
    new Notification(title, { body: String(body).slice(0, 200), tag: "hyperhive" });
  }

  // ── rendering ──
  function badge(text, kind) { return el("span", { class: "badge", "data-state": kind || text }, text); }

  function agentState(row) {
    const s = row.status.state;
    if (s !== "running" || !row.harness) return s;
    return row.harness.state;
  }

  async function confirmThen(text, work) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    dialog.showModal();
    await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
    if (dialog.returnValue === "ok") await work();
  }

  async function run(work, done) {
    try { const out = await work(); if (done) notice(done, "ok"); return out; }
    catch (e) { notice(`${e.code || "error"}: ${e.message}`, "error"); return null; }
  }

  function lifecycle(name, verb) {
    const go = () => run(() => api("POST", `/agents/${encodeURIComponent(name)}/${verb}`), `${verb}: ${name}`);
    if (["stop", "restart", "destroy", "purge"].includes(verb)) return () => confirmThen(`${verb} ${name}?`, go);
    return go;
  }

  function agentRow(row) {
    const s = agentState(row);
    const h = row.harness;
    const buttons = row.status.state === "destroyed"
      ? [el("button", { onclick: lifecycle(row.name, "revive") }, "revive"),
         el("button", { class: "danger", onclick: lifecycle(row.name, "purge") }, "purge")]
      : [
          h && ["thinking", "compacting", "waiting"].includes(h.state)
            ? el("button", { onclick: () => run(() => api("POST", `/harness/${row.name}/cancel`), "turn cancelled") }, "cancel turn")
            : null,
          row.status.state === "running" ? null : el("button", { onclick: lifecycle(row.name, "start") }, "start"),
          row.status.state === "running" ? el("button", { onclick: lifecycle(row.name, "stop") }, "stop") : null,
          el("button", { onclick: lifecycle(row.name, "restart") }, "restart"),
          el("button", { class: "danger", onclick: lifecycle(row.name, "destroy") }, "destroy"),
        ];
    return el("div", { class: "row agent", "data-agent": row.name },
      el("a", { class: "name", href: `/agents/${encodeURIComponent(row.name)}` }, row.name),
      badge(s),
      row.transient ? el("span", { class: "spinner", "data-transient": row.transient }, row.transient + "…") : null,
      h ? el("span", { class: "chip model", title: h.model_overridden ? "set with /model" : "from agent.nix" }, h.model + (h.model_overridden ? " *" : "")) : null,
      el("span", { class: "chip turn", "data-age": staleness(h && h.last_turn_at), "data-last-turn": (h && h.last_turn_at) || "" }, "last turn " + ago(h && h.last_turn_at)),
      el("span", { class: "chip depth", title: "unread messages" }, "inbox " + row.depth),
      h && h.note ? el("span", { class: "note" }, h.note) : null,
      el("span", { class: "actions" }, buttons));
  }

  function draftRow(row) {
    const waiting = [...state.approvals.values()].filter((a) => a.agent === row.name);
    return el("div", { class: "row agent draft", "data-agent": row.name },
      el("span", { class: "name" }, row.name), badge("draft"),
      row.transient ? el("span", { class: "spinner", "data-transient": row.transient }, row.transient + "…") : null,
      el("span", { class: "note" }, waiting.length ? `waiting for approval #${waiting.map((a) => a.id).join(", #")}` : "the manager is writing its config"));
  }

  function diffView(text) {
    return el("pre", { class: "diff" }, text.split("\n").map((line) => {
      const kind = line.startsWith("+++") || line.startsWith("---") ? "file"
        : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : "ctx";
      return el("span", { class: "line " + kind }, line + "\n");
    }));
  }

  function countdown(deadline) {
    if (!deadline) return null;
    return el("span", { class: "chip ttl", "data-deadline": deadline }, "");
  }

  function approvalCard(a, index) {
    const note = el("input", { class: "note-input", placeholder: "note (optional)", maxlength: 4000, "aria-label": "note" });
    const decide = (verb) => run(() => api("POST", `/approvals/${a.id}/${verb}`, { note: note.value || null }), `#${a.id} ${verb === "approve" ? "approved" : "denied"}`);
    const input = a.input || {};
    const what = a.type === "tool_permission"
      ? el("div", { class: "command" },
          el("div", {}, el("b", {}, a.tool || "tool"), input.cwd || input.working_dir ? ` in ${input.cwd || input.working_dir}` : ""),
          el("pre", { class: "cmd" }, input.command !== undefined ? String(input.command) : JSON.stringify(input, null, 2)))
      : a.diff ? diffView(a.diff)
      : el("p", { class: "hint" }, a.type === "spawn" ? "A new agent from the template." : a.frozen_sha ? `commit ${a.frozen_sha}` : "No diff.");
    return el("article", { class: "approval" + (index === selected ? " selected" : ""), "data-approval": a.id },
      el("header", {}, el("b", {}, `#${a.id} ${a.type}`), " ", el("span", { class: "chip" }, a.agent),
        a.requested_by !== a.agent ? el("span", { class: "chip" }, "by " + a.requested_by) : null, countdown(a.deadline)),
      a.description ? el("p", { class: "description" }, a.description) : null,
      what,
      el("div", { class: "decide" }, note,
        el("button", { class: "primary approve", onclick: () => decide("approve") }, "Approve"),
        el("button", { class: "danger deny", onclick: () => decide("deny") }, "Deny")));
  }

  function questionCard(q) {
    const type = q.multi ? "checkbox" : "radio";
    const options = q.options.map((o, i) => el("label", { class: "option" },
      el("input", { type, name: `q${q.id}`, value: o, id: `q${q.id}-${i}` }), " ", o));
    const text = el("textarea", { rows: 2, placeholder: q.options.length ? "or write an answer" : "your answer", "aria-label": "answer" });
    const answer = () => {
      const choices = [...document.querySelectorAll(`input[name="q${q.id}"]:checked`)].map((i) => i.value);
      const body = text.value.trim() ? { choices: [], text: text.value.trim() } : { choices, text: null };
      return run(() => api("POST", `/questions/${q.id}/answer`, body), `#${q.id} answered`);
    };
    return el("article", { class: "question", "data-question": q.id },
      el("header", {}, el("b", {}, `#${q.id}`), " ", el("span", { class: "chip" }, q.asker), countdown(q.deadline)),
      el("p", { class: "text" }, q.question),
      el("div", { class: "options" }, options), text,
      el("div", { class: "decide" },
        el("button", { class: "primary answer", onclick: answer }, "Answer"),
        el("button", { class: "cancel", onclick: () => run(() => api("POST", `/questions/${q.id}/cancel`), `#${q.id} cancelled`) }, "Cancel")));
  }

  function messageRow(m) {
    return el("div", { class: "row message", "data-message": m.id },
      el("span", { class: "chip" }, m.from), el("time", { datetime: m.sent_at }, ago(m.sent_at)),
      el("p", { class: "body" }, m.body));
  }

  function fill(id, nodes) {
    const box = document.getElementById(id);
    if (!box) return;
    box.replaceChildren(...nodes);
    const empty = document.getElementById(id + "-empty");
    if (empty) empty.hidden = nodes.length > 0;
  }

  // A pending approval or question does not change until it goes, so its card is kept as it is (with what the
  // operator has typed or picked in it) and only new ones are made.
  function keep(id, items, key, make) {
    const box = document.getElementById(id);
    if (!box) return [];
    const old = new Map([...box.children].map((c) => [c.dataset[key], c]));
    return items.map((item, i) => old.get(String(item.id)) || make(item, i));
  }

  function render() {
    const rows = [...state.agents.values()].sort((a, b) => a.name.localeCompare(b.name));
    fill("agents", rows.filter((r) => !["destroyed", "draft"].includes(r.status.state)).map(agentRow));
    const drafts = rows.filter((r) => r.status.state === "draft");
    fill("drafts", drafts.map(draftRow));
    const draftsSection = document.getElementById("drafts-section");
    if (draftsSection) draftsSection.hidden = drafts.length === 0;
    const dead = rows.filter((r) => r.status.state === "destroyed");
    fill("tombstones", dead.map(agentRow));
    const tomb = document.getElementById("tombstones-title");
    if (tomb) tomb.hidden = dead.length === 0;
    const names = document.getElementById("agent-names");
    if (names) names.replaceChildren(el("option", { value: "*" }), ...rows.map((r) => el("option", { value: r.name })));
    const approvals = [...state.approvals.values()].sort((a, b) => a.id - b.id);
    selected = Math.min(selected, Math.max(0, approvals.length - 1));
    const cards = keep("approvals", approvals, "approval", approvalCard);
    cards.forEach((c, i) => c.classList.toggle("selected", i === selected));
    fill("approvals", cards);
    const count = document.getElementById("approvals-count");
    if (count) count.textContent = String(approvals.length);
    fill("questions", keep("questions", [...state.questions.values()].sort((a, b) => a.id - b.id), "question", questionCard));
    const qcount = document.getElementById("questions-count");
    if (qcount) qcount.textContent = String(state.questions.size);
    fill("inbox", [...state.inbox.values()].sort((a, b) => (b.sent_at || "").localeCompare(a.sent_at || "")).map(messageRow));
    const problems = document.getElementById("problems");
    if (problems) { problems.textContent = state.problems.join(" "); problems.hidden = state.problems.length === 0; }
    tick();
  }

  function tick() {
    for (const chip of document.querySelectorAll("[data-last-turn]")) {
      const at = chip.dataset.lastTurn || null;
      chip.textContent = "last turn " + ago(at);
      chip.dataset.age = staleness(at);
    }
    for (const chip of document.querySelectorAll("[data-deadline]")) {
      const left = Math.round((Date.parse(chip.dataset.deadline) - Date.now()) / 1000);
      chip.textContent = left > 0 ? `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} left` : "due";
    }
  }

  // ── events ──
  function row(name) {
    if (!state.agents.has(name)) state.agents.set(name, { name, status: { name, state: "stopped" }, harness: null, depth: 0, transient: null });
    return state.agents.get(name);
  }

  // What an event changed: one agent's row (its name), or a whole section.
  function apply(ev) {
    const d = ev.data || {};
    const agent = (fn) => { const r = row(d.agent); fn(r); if (TRANSIENT_ENDS.has(ev.type)) r.transient = null; return d.agent; };
    switch (ev.type) {
      case "approval_added":
        if (d.status !== "pending") return null;
        state.approvals.set(d.id, d);
        notify(`Approval #${d.id}: ${d.type}`, d.description || d.agent);
        return "approvals";
      case "approval_resolved": case "approval_applied":
        return state.approvals.delete(d.id) ? "approvals" : null;
      case "question_added":
        state.questions.set(d.id, d);
        notify(`${d.asker} asks`, d.question);
        return "questions";
      case "question_answered":
        return state.questions.delete(d.id) ? "questions" : null;
      case "agent_state": return agent((r) => { r.status = { ...r.status, state: d.state }; });
      case "agent_started": return agent((r) => { r.status = { ...r.status, state: "running" }; });
      case "container_crash": return agent((r) => { r.status = { ...r.status, state: "crashed" }; });
      case "agent_destroyed": return agent((r) => { r.status = { ...r.status, state: "destroyed" }; });
      case "agent_transient": return agent((r) => { r.transient = d.transient; });
      case "turn_state": return d.agent ? agent((r) => { r.harness = d; }) : null;
      case "model_changed":
        if (!ev.agent) return null;
        row(ev.agent).harness = { ...(row(ev.agent).harness || {}), model: d.model, model_overridden: d.override !== null };
        return ev.agent;
      case "message_delivered": refreshDepths(); return null;
      default: return null;
    }
  }

  // Draw one agent's row again in place; a row that is new, or moved between agents and tombstones, redraws all.
  function renderAgent(name) {
    const r = state.agents.get(name);
    const where = r && r.status.state === "destroyed" ? "tombstones" : r && r.status.state === "draft" ? "drafts" : "agents";
    const old = document.querySelector(`#${where} > [data-agent="${CSS.escape(name)}"]`);
    if (!r || !old) { render(); return; }
    old.replaceWith(where === "drafts" ? draftRow(r) : agentRow(r));
  }

  function message(m) {
    if (!m || !m.id || state.inbox.has(m.id)) return;
    state.inbox.set(m.id, m);
    notify(`Message from ${m.from}`, m.body);
    render();
  }

  async function refreshInbox() {
    try {
      const reply = await api("GET", "/inbox/operator?limit=50");
      for (const entry of reply.entries) state.inbox.set(entry.message.id, entry.message);
      render();
    } catch (e) { notice(`inbox: ${e.message}`, "error"); }
  }

  // Depths are read again when an inbox changes (a message queued or delivered), at most every 250 ms.
  let depthsDue = null;
  function refreshDepths() {
    if (depthsDue) return;
    depthsDue = setTimeout(async () => {
      depthsDue = null;
      try {
        const reply = await api("GET", "/depths");
        for (const row of state.agents.values()) row.depth = reply.depths[row.name] || 0;
        render();
      } catch (e) { notice(`depths: ${e.message}`, "error"); }
    }, 250);
  }

  function keys(e) {
    if (["INPUT", "TEXTAREA"].includes(e.target.tagName) || e.ctrlKey || e.metaKey || e.altKey) return;
    const cards = [...document.querySelectorAll("#approvals .approval")];
    if (!cards.length) return;
    if (e.key === "j" || e.key === "k") {
      selected = Math.max(0, Math.min(cards.length - 1, selected + (e.key === "j" ? 1 : -1)));
      cards.forEach((c, i) => c.classList.toggle("selected", i === selected));
      cards[selected].scrollIntoView({ block: "nearest" });
    } else if (e.key === "a") cards[selected].querySelector(".approve").click();
    else if (e.key === "d") cards[selected].querySelector(".deny").click();
  }

  function start(extra) {
    const snap = JSON.parse(document.getElementById("snapshot").textContent);
    const asOf = load(snap);
    showMute();
    render();
    const send = document.getElementById("send");
    if (send) {
      send.addEventListener("submit", async (e) => {
        e.preventDefault();
        const to = document.getElementById("send-to").value.trim();
        const body = document.getElementById("send-body");
        const sent = await run(() => api("POST", "/send", { to, body: body.value }), `sent to ${to}`);
        if (sent) body.value = "";
      });
    }
    const password = document.getElementById("password-form");
    if (password) {
      password.addEventListener("submit", async (e) => {
        e.preventDefault();
        const body = { current: document.getElementById("password-current").value, new: document.getElementById("password-new").value };
        if (await run(() => api("POST", "/password", body)) !== null) location.href = "/login";
      });
    }
    document.addEventListener("keydown", keys);
    setInterval(tick, 1000);
    const live = new hive.Live(asOf, {
      agent: extra && extra.agent,
      event: (ev, seq) => {
        const changed = apply(ev);
        if (changed === "approvals" || changed === "questions") render();
        else if (changed) renderAgent(changed);
        if (extra && extra.event) extra.event(ev, seq);
      },
      message,
      stats: (s) => { if (extra && extra.stats) extra.stats(s); },
      queued: (q) => { refreshDepths(); if (extra && extra.queued) extra.queued(q); },
      hello: () => { refreshInbox(); refreshDepths(); if (extra && extra.hello) extra.hello(); },
      resync: async () => { const s = await api("GET", "/snapshot"); const at = load(s); render(); return at; },
    });
    window.hiveLive = live;
    live.open();
    return live;
  }

  return { start, state, render, agentRow, run, row };
})();

if (document.getElementById("approvals")) home.start();

"use strict";
// An agent's page: its row, its inbox, a send box that also takes slash commands, the live turn, its journal and its
// applied agent.nix (each read when its section is opened).

(() => {
  const { api, el, notice } = hive;
  const name = document.getElementById("agent").dataset.agent;
  const path = encodeURIComponent(name);
  const HELP = "/model <name> · /model default · /cancel · /compact · /pause · /resume · /help — anything else is sent as a message.";

  function showRow() {
    const row = home.state.agents.get(name);
    document.getElementById("agent-row").replaceChildren(row ? home.agentRow(row) : el("p", { class: "hint" }, "Not known to the spawner."));
  }

  async function inbox() {
    try {
      const reply = await api("GET", `/inbox/${path}?limit=50`);
      document.getElementById("agent-inbox").replaceChildren(...reply.entries.map((e) =>
        el("div", { class: "row message", "data-state": e.state }, el("span", { class: "chip" }, e.message.from),
          el("span", { class: "badge", "data-state": e.state }, e.state), el("p", { class: "body" }, e.message.body))));
    } catch (e) { notice(`inbox: ${e.message}`, "error"); }
  }

  async function command(text) {
    const reply = document.getElementById("agent-reply");
    const [word, ...rest] = text.trim().split(/\s+/);
    const harness = (verb, body) => api("POST", `/harness/${path}/${verb}`, body);
    const said = (r) => { reply.textContent = r.done; };
    try {
      switch (word) {
        case "/help": reply.textContent = HELP; return;
        case "/model":
          if (!rest.length) { reply.textContent = "Say which model: /model <name>, or /model default."; return; }
          said(await harness("model", { model: rest[0] === "default" ? null : rest.join(" ") })); return;
        case "/cancel": said(await harness("cancel")); return;
        case "/compact": said(await harness("compact")); return;
        case "/pause": said(await harness("pause", { paused: true })); return;
        case "/resume": said(await harness("pause", { paused: false })); return;
        default:
          if (word.startsWith("/")) { reply.textContent = `Unknown command ${word}. ${HELP}`; return; }
          await api("POST", "/send", { to: name, body: text });
          reply.textContent = "Sent.";
      }
    } catch (e) { reply.textContent = `${e.code}: ${e.message}`; }
  }

  // The live turn: stream-json events, rendered readably (tool results folded).
  function turnEvent(data) {
    const box = document.getElementById("turn");
    if (data.type === "system" && data.subtype === "init") box.replaceChildren();
    const content = (data.message && data.message.content) || [];
    if (data.type === "user" && typeof data.message?.content === "string") box.append(el("div", { class: "prompt" }, data.message.content));
    for (const part of Array.isArray(content) ? content : []) {
      if (part.type === "text") box.append(el("div", { class: data.type === "user" ? "prompt" : "assistant" }, part.text));
      else if (part.type === "tool_use") box.append(el("div", { class: "tool" }, el("b", {}, part.name), el("pre", {}, JSON.stringify(part.input, null, 2))));
      else if (part.type === "tool_result") {
        const text = Array.isArray(part.content) ? part.content.map((c) => c.text || "").join("\n") : String(part.content ?? "");
        box.append(el("details", { class: "result" }, el("summary", {}, "result"), el("pre", {}, text)));
      }
    }
    if (data.type === "result") box.append(el("div", { class: "hint" }, `cost $${(data.total_cost_usd || 0).toFixed(4)} · ${data.duration_ms || 0} ms`));
  }

  document.getElementById("agent-send").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = document.getElementById("agent-body");
    await command(body.value);
    body.value = "";
    inbox();
  });
  document.getElementById("journal-section").addEventListener("toggle", async (e) => {
    if (!e.target.open) return;
    try { document.getElementById("journal").textContent = (await api("GET", `/journal/${path}?lines=300`)).lines.join("\n"); }
    catch (err) { document.getElementById("journal").textContent = `${err.code}: ${err.message}`; }
  });
  document.getElementById("config-section").addEventListener("toggle", async (e) => {
    if (!e.target.open) return;
    try { document.getElementById("config").textContent = await api("GET", `/agent-config/${path}`); }
    catch (err) { document.getElementById("config").textContent = `${err.code}: ${err.message}`; }
  });

  // The terminal: a shell in the agent's container, opened when its section is, closed when it is. It opens
  // watching; "take control" waits for the agent's turn to end and holds its turns until it is given back.
  let shell = null;
  const controlButton = document.getElementById("terminal-control");
  const box = document.getElementById("terminal");
  function showControl(state, error) {
    box.dataset.control = state;
    controlButton.textContent = state === "yes" ? "give back control" : state === "waiting" ? "waiting for the turn to end…" : "take control";
    controlButton.disabled = state === "waiting" || !shell || shell.readyState !== WebSocket.OPEN;
    document.getElementById("terminal-hint").textContent = error || (state === "yes"
      ? "You have control: the agent's turns wait until you give it back or close the terminal."
      : "Watching: take control to type (the agent's turns wait meanwhile).");
  }
  controlButton.addEventListener("click", () => {
    if (!shell || shell.readyState !== WebSocket.OPEN) return;
    const wanted = box.dataset.control !== "yes";
    showControl(wanted ? "waiting" : box.dataset.control);
    shell.send(JSON.stringify({ control: wanted }));
  });
  document.getElementById("terminal-section").addEventListener("toggle", (e) => {
    if (!e.target.open) { if (shell) shell.close(); return; }
    const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 13 });
    const fit = new FitAddon.FitAddon(); // the terminal fills its box, and follows the window's size
    term.loadAddon(fit);
    box.replaceChildren();
    term.open(box);
    fit.fit();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = (shell = new WebSocket(`${scheme}//${location.host}/ws/terminal/${path}?cols=${term.cols}&rows=${term.rows}&csrf=${encodeURIComponent(hive.csrf)}`));
    ws.binaryType = "arraybuffer";
    box.dataset.state = "opening";
    ws.onopen = () => { box.dataset.state = "open"; showControl("no"); term.focus(); };
    ws.onmessage = (m) => {
      if (typeof m.data === "string") { const said = JSON.parse(m.data); showControl(said.control ? "yes" : "no", said.error); return; }
      term.write(new Uint8Array(m.data));
    };
    ws.onclose = (c) => { box.dataset.state = "closed"; showControl("no"); term.write(`\r\n[closed${c.reason ? ": " + c.reason : ""}]\r\n`); };
    const encoder = new TextEncoder();
    term.onData((d) => { if (ws.readyState === WebSocket.OPEN && box.dataset.control === "yes") ws.send(encoder.encode(d)); });
    term.onResize(({ cols, rows }) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ cols, rows })); });
    const refit = () => { if (box.dataset.state !== "closed") fit.fit(); };
    window.addEventListener("resize", refit);
    ws.addEventListener("close", () => window.removeEventListener("resize", refit));
  });

  const charts = stats.agent(document.getElementById("stats"), name);
  home.start({
    agent: name,
    stats: (s) => charts.changed(s.agents),
    queued: (q) => { if (q.owner === name) inbox(); },
    event: (ev) => {
      if (ev.agent === name && ev.type === "message_delivered") inbox();
      if (ev.agent === name && ev.type === "turn") turnEvent(ev.data || {});
      if (ev.agent === name || (ev.data && ev.data.agent === name)) showRow();
    },
  });
  showRow();
  inbox();
  // What the harness says now (the snapshot has its last turn_state only for agents the spawner lists).
  api("GET", `/harness/${path}`).then((h) => { home.row(name).harness = h; showRow(); }, () => {});
})();

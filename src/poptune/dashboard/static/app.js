// poptune dashboard: one page, hash routes, polling the JSON API once a second.
// A study of any size stays quick: the trials table is a page of rows sorted and filtered by
// the server, the learning curves are the best and newest trials (downsampled), the parallel
// coordinates the best trials; the population lanes a window of generations (columnar
// arrays); only the PBT lineage and schedules views load every trial.
// Every user-provided string (study and parameter names, choice values, context keys) reaches
// the DOM through textContent, and Plotly through esc(): nothing is parsed as HTML.
"use strict";
(() => {
  const POLL_MS = 1000;
  const TABS = [
    ["trials", "Trials"], ["curves", "Learning curves"], ["parallel", "Parallel coordinates"],
    ["population", "Population"], ["lineage", "PBT lineage"], ["schedules", "Schedules"],
  ];
  const STATUSES = ["QUEUED", "RUNNING", "COMPLETED", "FAILED", "STOPPED"];
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf"];
  // learning curves of a PBT population: one colour per member, distinct up to 20 members
  const MEMBER_COLOURS = [...PALETTE, "#393b79", "#e7969c", "#637939", "#7b4173", "#3182bd",
    "#e6550d", "#31a354", "#756bb1", "#843c39", "#636363"];
  const RAMP = ["#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39",
    "#fde725"];
  const PLOT_CONFIG = { displaylogo: false, responsive: true };
  const PAGE_SIZES = [50, 100, 500];
  const PARALLEL_MAX = 1000; // parallel coordinates: the best trials drawn
  const LANE_WINDOWS = [25, 50, 100, 200, 500]; // population view: generations per window

  const view = document.getElementById("view");
  const crumbs = document.getElementById("crumbs");
  const live = document.getElementById("live");
  const errorBox = document.getElementById("error");

  const state = {
    info: null, route: null, studies: null,
    study: null, // {name, meta, trials: Map(id -> trial), version, lineage}
    sort: { key: "id", desc: false }, filter: { status: "", generation: "" },
    page: { offset: 0, size: 100 },
    selected: null, param: null, busy: false, again: false, dirty: true,
    lanes: freshLanes(),
  };
  // the population view's window (start null: follow the newest generations) and options
  function freshLanes() {
    return { start: null, count: 100, value: "last", scale: "study", arrows: true, focus: null };
  }

  // -- helpers ---------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  // Plotly renders a small subset of HTML in its strings: escape user text for it.
  function esc(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function fmt(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number") {
      if (Number.isInteger(value)) return String(value);
      return Number(value.toPrecision(6)).toString();
    }
    return String(value);
  }
  function api(path, options) {
    return fetch(path, options).then(async (response) => {
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        const err = new Error(body.error || `HTTP ${response.status}`);
        err.status = response.status;
        throw err;
      }
      return body;
    });
  }
  function studyApi(name) { return "api/studies/" + encodeURIComponent(name); }
  function studyHash(name, tab) { return "#/study/" + encodeURIComponent(name) + "/" + tab; }
  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }
  function better(a, b, lower) { return lower ? a < b : a > b; }
  function parseRoute() {
    const parts = location.hash.replace(/^#\/?/, "").split("/");
    if (parts[0] === "study" && parts[1]) {
      const tab = TABS.some(([t]) => t === parts[2]) ? parts[2] : "trials";
      return { page: "study", name: decodeURIComponent(parts[1]), tab };
    }
    return { page: "studies" };
  }

  // -- polling ---------------------------------------------------------------------------------
  async function tick() {
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    state.again = false;
    try {
      if (!state.info) state.info = await api("api/info");
      const route = state.route;
      if (route.page === "studies") {
        state.studies = await api("api/studies");
        renderStudies();
      } else {
        await pollStudy(route.name);
        if (state.dirty) renderStudyTab();
      }
      live.classList.remove("stale");
      live.textContent = "live";
      showError("");
    } catch (err) {
      live.classList.add("stale");
      live.textContent = "disconnected";
      showError(err.message);
    } finally {
      state.busy = false;
      if (state.again) tick();
    }
  }

  // What the current tab needs, as [key, path]: polled every second, redrawn when it changed.
  function tabQuery(study) {
    const tab = state.route.tab;
    const base = studyApi(study.name);
    if (tab === "trials") {
      const q = new URLSearchParams({ offset: state.page.offset, limit: state.page.size,
        sort: state.sort.key, order: state.sort.desc ? "desc" : "asc", observations: "0" });
      if (state.filter.status) q.set("status", state.filter.status);
      if (state.filter.generation) q.set("generation", state.filter.generation);
      return `${base}/trials?${q}`;
    }
    if (tab === "curves") return `${base}/curves`;
    if (tab === "population") {
      const q = new URLSearchParams({ count: state.lanes.count, value: state.lanes.value });
      if (state.lanes.start !== null) q.set("start", state.lanes.start);
      return `${base}/population?${q}`;
    }
    if (tab === "parallel") {
      const order = study.meta.direction === "minimize" ? "asc" : "desc";
      return `${base}/trials?sort=best&order=${order}&limit=${PARALLEL_MAX}&observations=0`;
    }
    return null; // lineage, schedules: every trial, synced incrementally
  }

  async function pollStudy(name) {
    let study = state.study;
    if (!study || study.name !== name) {
      let meta;
      try {
        // waiting for it: ask the study list (a 404 a second would fill the console)
        if (state.waiting === name && !(await api("api/studies")).some((s) => s.name === name)) return;
        meta = await api(studyApi(name));
      } catch (err) {
        if (err.status !== 404) throw err;
        state.waiting = name;
        renderWaiting(name); // not created yet: say so, and look again on the next polls
        return;
      }
      state.waiting = null;
      study = state.study = { name, meta, trials: new Map(), version: 0, lineage: null,
        answer: null, query: null, seen: -1, fresh: true };
      renderStudyFrame();
      state.dirty = true;
    }
    const query = tabQuery(study);
    let version;
    if (query !== null) {
      // the population answer is large: ask for it only when the study changed
      const since = state.route.tab === "population" && query === study.query && study.seen >= 0;
      const answer = await api(since ? `${query}&since=${study.seen}` : query);
      version = answer.version;
      if (!answer.unchanged && (version !== study.seen || query !== study.query)) {
        study.answer = { ...answer, tab: state.route.tab };
        study.query = query;
        if (version !== study.seen && !study.fresh) study.meta = await api(studyApi(name));
        study.fresh = false;
        study.seen = version;
        state.dirty = true;
      }
    } else {
      const answer = await api(`${studyApi(name)}/trials?since=${study.version}`);
      version = answer.version;
      if (answer.version !== study.version || study.version === 0) {
        for (const trial of answer.trials) study.trials.set(trial.id, trial);
        study.version = answer.version;
        study.meta = await api(studyApi(name));
        if (study.meta.pbt && state.route.tab === "lineage") {
          study.lineage = await api(`${studyApi(name)}/lineage`);
        } else {
          study.lineage = null;
        }
        state.dirty = true;
      }
    }
    document.body.dataset.version = String(version);
  }

  function renderWaiting(name) {
    crumbs.replaceChildren(el("a", { href: "#/" }, "studies"), " / ", name);
    const shown = document.getElementById("waiting");
    if (!shown || shown.dataset.study !== name) {
      view.replaceChildren(el("h1", {}, name), el("p", { id: "waiting", class: "muted", "data-study": name },
        `Waiting for study ${name}: it does not exist in this storage yet. `,
        "This page shows it as soon as it is created."));
    }
    document.body.dataset.view = "waiting";
  }

  // -- the study list ----------------------------------------------------------------------------
  function renderStudies() {
    crumbs.replaceChildren("studies");
    const rows = (state.studies || []).map((s) => {
      if (s.error) {  // a study the server could not read (a corrupt row): its name and why
        return el("tr", { "data-study": s.name, class: "error" },
          el("td", {}, s.name), el("td", { colspan: "9", class: "muted" }, s.error));
      }
      const running = s.counts.RUNNING + s.counts.QUEUED;
      return el("tr", { class: "clickable", "data-study": s.name,
        onclick: () => { location.hash = studyHash(s.name, "trials"); } },
      el("td", {}, el("a", { href: studyHash(s.name, "trials") }, s.name)),
      el("td", {}, s.algorithm), el("td", {}, s.direction),
      el("td", { class: "num" }, s.trials), el("td", { class: "num" }, running),
      el("td", { class: "num" }, s.counts.COMPLETED), el("td", { class: "num" }, s.counts.FAILED),
      el("td", { class: "num" }, s.counts.STOPPED), el("td", { class: "num" }, fmt(s.best)),
      el("td", { class: "num" }, fmt(s.best_trial)));
    });
    const head = ["study", "algorithm", "direction", "trials", "running", "completed", "failed",
      "stopped", "best", "best trial"];
    view.replaceChildren(
      el("h1", {}, "Studies"),
      el("p", { class: "muted" }, state.info ? `storage: ${state.info.storage}` : ""),
      rows.length ? el("table", { id: "studies" }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
        el("tbody", {}, rows)) : el("p", { class: "muted" }, "No studies in this storage yet."));
    document.body.dataset.view = "studies";
  }

  // -- one study -------------------------------------------------------------------------------
  function renderStudyFrame() {
    const study = state.study;
    const tab = state.route.tab;
    crumbs.replaceChildren(el("a", { href: "#/" }, "studies"), " / ", study.name);
    const tabs = el("div", { class: "tabs" }, TABS.map(([key, label]) =>
      el("a", { href: studyHash(study.name, key), class: key === tab ? "active" : "",
        "data-tab": key }, label)));
    view.replaceChildren(el("h1", {}, study.name), el("div", { class: "summary", id: "summary" }),
      tabs, el("div", { id: "tab" }), el("div", { id: "detail" }));
    document.body.dataset.view = tab;
  }

  function renderSummary() {
    const meta = state.study.meta;
    const counts = meta.counts;
    const item = (label, value) => el("div", {}, el("b", {}, fmt(value)), label);
    document.getElementById("summary").replaceChildren(
      item("algorithm", meta.algorithm), item("direction", meta.direction),
      item("trials", meta.trials), item("running", counts.RUNNING + counts.QUEUED),
      item("completed", counts.COMPLETED), item("failed", counts.FAILED),
      item("stopped", counts.STOPPED), item(`best (trial ${fmt(meta.best_trial)})`, meta.best));
  }

  // Plotly (3 MB of script) loads when a plot is first shown, not before the table.
  let plotlyLoading = null;
  // Its URL names its version (cached for good, served gzip-compressed): /api/info has it.
  function loadPlotly() {
    if (!plotlyLoading) {
      const info = state.info ? Promise.resolve(state.info) : api("api/info").then((i) => (state.info = i));
      plotlyLoading = info.then((i) => new Promise((resolve, reject) => {
        const script = el("script", { src: i.plotly || "static/plotly.min.js" });
        script.addEventListener("load", resolve);
        script.addEventListener("error", () => {
          plotlyLoading = null;
          reject(new Error("cannot load Plotly.js"));
        });
        document.head.append(script);
      }));
      plotlyLoading.catch(() => { plotlyLoading = null; });
    }
    return plotlyLoading;
  }

  function renderStudyTab() {
    state.dirty = false;
    renderSummary();
    const tab = state.route.tab;
    if (tab !== "trials" && !window.Plotly) {
      loadPlotly().then(() => { if (state.study) renderStudyTab(); }, (err) => showError(err.message));
      return;
    }
    const renderers = { trials: renderTrials, curves: renderCurves, parallel: renderParallel,
      population: renderPopulation, lineage: renderLineage, schedules: renderSchedules };
    renderers[tab]();
    if (state.selected !== null) renderDetail(state.selected, "refresh"); // live: the study changed
  }

  function parameterNames() { return state.study.meta.parameters.map((p) => p.name); }
  function trialList() { return Array.from(state.study.trials.values()).sort((a, b) => a.id - b.id); }

  // trials table: one page of rows, sorted, filtered and paged by the server
  function refetch() { state.study.query = null; tick(); }

  function renderTrials() {
    const study = state.study;
    const answer = study.answer;
    if (!answer || answer.tab !== "trials") { state.dirty = true; return; }
    const container = document.getElementById("tab");
    const names = parameterNames();
    const pbt = study.meta.pbt;
    let filters = document.getElementById("filters");
    if (!filters) {
      const statusSelect = el("select", { id: "filter-status",
        onchange: (e) => { state.filter.status = e.target.value; state.page.offset = 0; refetch(); } },
      el("option", { value: "" }, "all"), STATUSES.map((s) => el("option", { value: s }, s)));
      const genSelect = el("select", { id: "filter-generation",
        onchange: (e) => { state.filter.generation = e.target.value; state.page.offset = 0; refetch(); } });
      const sizeSelect = el("select", { id: "page-size",
        onchange: (e) => { state.page.size = Number(e.target.value); state.page.offset = 0; refetch(); } },
      PAGE_SIZES.map((n) => el("option", { value: String(n) }, n)));
      filters = el("div", { class: "filters", id: "filters" },
        el("label", {}, "status ", statusSelect),
        pbt ? el("label", {}, "generation ", genSelect) : null,
        el("label", {}, "rows per page ", sizeSelect));
      container.replaceChildren(filters, el("div", { id: "pager-holder" }), el("div", { id: "table-holder" }));
    }
    const genSelect = document.getElementById("filter-generation");
    if (genSelect) {
      const current = state.filter.generation;
      genSelect.replaceChildren(el("option", { value: "" }, "all"),
        (answer.generations || []).map((g) => el("option", { value: String(g) }, g)));
      genSelect.value = current;
    }
    document.getElementById("filter-status").value = state.filter.status;
    document.getElementById("page-size").value = String(state.page.size);
    const columns = [["id", "id"], ["status", "status"]];
    if (pbt) columns.push(["generation", "generation"], ["member", "member"], ["parent", "parent"]);
    for (const name of names) columns.push([name, name, true]);
    columns.push(["iterations", "iterations"], ["last", "last"], ["best", "best"]);
    const { key, desc } = state.sort;
    const allowStop = state.info && state.info.allow_stop;
    const header = el("tr", {}, columns.map(([k, label]) => el("th", {
      class: (k === key ? `sorted ${desc ? "desc" : "asc"}` : "") + (k === "parent" ? "" : " sortable"),
      "data-key": k,
      onclick: k === "parent" ? null : () => {
        state.sort = { key: k, desc: k === key ? !desc : false };
        state.page.offset = 0;
        refetch();
      },
    }, label)), allowStop ? el("th", {}, "") : null);
    const body = answer.trials.map((t) => el("tr", {
      class: "clickable" + (state.selected === t.id ? " selected" : ""), "data-trial": t.id,
      onclick: () => renderDetail(t.id, true, true),
    }, columns.map(([k, , isParam]) => {
      const v = isParam ? t.parameters[k] : t[k];
      if (k === "status") return el("td", { class: `status status-${v}` }, v + (t.stop_requested && !["COMPLETED", "FAILED", "STOPPED"].includes(v) ? " (stop requested)" : ""));
      return el("td", { class: typeof v === "number" ? "num" : "" }, fmt(v));
    }), allowStop ? el("td", {}, stopButton(t)) : null));
    const total = answer.total;
    const first = total ? answer.offset + 1 : 0;
    const last = answer.offset + answer.trials.length;
    const go = (offset) => { state.page.offset = Math.max(0, offset); refetch(); };
    const size = state.page.size;
    const lastPage = Math.max(0, Math.floor((total - 1) / size) * size);
    document.getElementById("pager-holder").replaceChildren(el("div", { class: "pager", id: "pager" },
      el("button", { id: "page-first", disabled: answer.offset === 0, onclick: () => go(0) }, "«"),
      el("button", { id: "page-prev", disabled: answer.offset === 0, onclick: () => go(answer.offset - size) }, "‹ previous"),
      el("span", { class: "muted", id: "page-info" }, `trials ${first}–${last} of ${total}` +
        (total !== study.meta.trials ? ` (filtered from ${study.meta.trials})` : "")),
      el("button", { id: "page-next", disabled: last >= total, onclick: () => go(answer.offset + size) }, "next ›"),
      el("button", { id: "page-last", disabled: last >= total, onclick: () => go(lastPage) }, "»")));
    if (answer.offset > 0 && answer.offset >= total) { go(lastPage); return; } // the page emptied
    document.getElementById("table-holder").replaceChildren(
      el("table", { id: "trials" }, el("thead", {}, header), el("tbody", {}, body)));
  }

  function stopButton(trial) {
    const running = trial.status === "RUNNING" || trial.status === "QUEUED";
    if (!running) return "";
    return el("button", {
      class: "stop", "data-stop": trial.id, disabled: trial.stop_requested,
      onclick: (event) => { event.stopPropagation(); requestStop(trial.id, event.target); },
    }, trial.stop_requested ? "stop requested" : "Stop");
  }

  async function requestStop(id, button) {
    button.disabled = true;
    try {
      await api(`${studyApi(state.study.name)}/trials/${id}/stop`,
        { method: "POST", headers: { "X-Poptune": "stop" } });
      button.textContent = "stop requested";
    } catch (err) {
      button.disabled = false;
      showError(err.message);
    }
  }

  // learning curves: objective per iteration. A PBT study: one line per population member
  // (legend: the members), each trial's segment starting at its parent's last point, so a
  // member's line runs on through its generations and an exploit shows as a jump from the
  // donor's curve. Otherwise one line per trial (the best and the newest).
  function renderCurves() {
    const answer = state.study.answer;
    if (!answer || answer.tab !== "curves") { state.dirty = true; return; }
    const trials = answer.trials;
    ensurePlot("curves-plot");
    const pbt = state.study.meta.pbt;
    const traces = pbt ? memberCurves(trials) : trials.map((t) => ({
      type: "scatter", mode: t.observations.length > 1 ? "lines+markers" : "markers",
      name: `trial ${t.id}`, x: t.observations.map((o) => o[0]), y: t.observations.map((o) => o[1]),
      customdata: t.observations.map(() => t.id), marker: { size: 4 }, line: { width: 1.5 },
      hovertemplate: `trial ${t.id}<br>iteration %{x}<br>objective %{y}<extra></extra>`,
    }));
    const many = traces.length > 30;
    const title = !trials.length ? "no observations yet"
      : trials.length < answer.total ? (pbt ? `the best trial's lineage and the newest trials (${trials.length} of ${answer.total})`
        : `the ${trials.length} best and newest of ${answer.total} trials`) : "";
    Plotly.react("curves-plot", traces, {
      margin: { t: 30, r: 20 }, showlegend: pbt || !many, hovermode: "closest", // members: always named
      legend: { title: { text: pbt ? "member" : "trial" }, font: { size: 11 } },
      xaxis: { title: { text: "iteration" } }, yaxis: { title: { text: "objective" } },
      title: { text: title, font: { size: 13 } },
    }, PLOT_CONFIG).then(() => bindClick("curves-plot"));
  }

  // one trace per member: its trials in order, each segment from its parent's last point
  function memberCurves(trials) {
    const members = new Map();
    for (const t of trials) {
      const key = t.member === null || t.member === undefined ? `trial ${t.id}` : t.member;
      if (!members.has(key)) members.set(key, []);
      members.get(key).push(t);
    }
    const keys = Array.from(members.keys()).sort((a, b) =>
      (typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b))));
    return keys.map((key, i) => {
      const x = [], y = [], ids = [];
      let lastId = null;
      for (const t of members.get(key).sort((a, b) => (a.generation ?? 0) - (b.generation ?? 0) || a.id - b.id)) {
        if (x.length && !(t.start && t.parent === lastId)) { x.push(null); y.push(null); ids.push(null); }
        if (t.start && !(x.length && t.parent === lastId)) { x.push(t.start[0]); y.push(t.start[1]); ids.push(t.parent); }
        for (const [it, value] of t.observations) { x.push(it); y.push(value); ids.push(t.id); }
        lastId = t.id;
      }
      const name = typeof key === "number" ? `member ${key}` : key;
      return { type: "scatter", mode: "lines+markers", name, meta: "member", x, y, customdata: ids,
        marker: { size: 3 }, line: { width: 1.8, color: MEMBER_COLOURS[i % MEMBER_COLOURS.length] },
        connectgaps: false,
        hovertemplate: `${esc(name)} · trial %{customdata}<br>iteration %{x}<br>objective %{y}<extra></extra>` };
    });
  }

  // Ticks of a log axis: one label per decade when the values span two or more (Plotly's
  // own put 2 and 5 between the decades, crammed into each other), else a few 1-2-5 ticks.
  // linear: no change (an empty object) when `log` is false.
  function logTicks(values, log) {
    if (!log) return {};
    const positive = values.filter((v) => typeof v === "number" && v > 0);
    if (!positive.length) return { type: "log" };
    const decades = Math.log10(Math.max(...positive)) - Math.log10(Math.min(...positive));
    if (decades >= 1.5) return { type: "log", dtick: 1, tickformat: ".0e", minor: { dtick: "D1", showgrid: false } };
    return { type: "log", dtick: "D2", tickformat: "~g" };
  }

  // parallel coordinates, drawn with SVG lines (no WebGL needed)
  function renderParallel() {
    const meta = state.study.meta;
    const lower = meta.direction === "minimize";
    const answer = state.study.answer;
    if (!answer || answer.tab !== "parallel") { state.dirty = true; return; }
    const trials = answer.trials.filter((t) => t.best !== null);
    ensurePlot("parallel-plot");
    const axes = meta.parameters.map((p) => axisFor(p, trials));
    const objectives = trials.map((t) => t.best);
    const lo = Math.min(...objectives), hi = Math.max(...objectives);
    axes.push({ name: "objective", norm: (t) => (hi > lo ? (t.best - lo) / (hi - lo) : 0.5),
      ticks: [[0, fmt(lo)], [1, fmt(hi)]] });
    const bins = RAMP.map(() => ({ x: [], y: [], ids: [] }));
    for (const t of trials) {
      let q = hi > lo ? (t.best - lo) / (hi - lo) : 1;
      if (lower) q = 1 - q; // bright = good
      const bin = bins[Math.min(RAMP.length - 1, Math.floor(q * RAMP.length))];
      axes.forEach((axis, i) => { bin.x.push(i); bin.y.push(axis.norm(t)); bin.ids.push(t.id); });
      bin.x.push(null); bin.y.push(null); bin.ids.push(null);
    }
    const traces = bins.map((b, i) => ({
      type: "scatter", mode: "lines", x: b.x, y: b.y, customdata: b.ids, meta: "lines",
      line: { color: RAMP[i], width: 1.5 }, opacity: 0.75, showlegend: false,
      hovertemplate: "trial %{customdata}<extra></extra>", connectgaps: false,
    }));
    // the colour scale: an invisible trace carrying the ramp's colour bar, in objective units
    if (trials.length) {
      const stops = RAMP.map((c, i) => [i / (RAMP.length - 1), c]);
      traces.push({ type: "scatter", mode: "markers", x: [null], y: [null], meta: "colour-scale",
        hoverinfo: "skip", showlegend: false,
        marker: { color: [lo, hi], cmin: lo, cmax: hi === lo ? lo + 1 : hi, colorscale: stops,
          reversescale: lower, showscale: true, size: 0.1,
          colorbar: { title: { text: `objective (best)<br>${lower ? "lower" : "higher"} is better`, side: "right" },
            thickness: 14, len: 0.9, x: 1.0, xanchor: "left" } } });
    }
    const shapes = axes.map((_, i) => ({ type: "line", x0: i, x1: i, y0: 0, y1: 1,
      line: { color: "#333", width: 1 } }));
    const annotations = [];
    axes.forEach((axis, i) => {
      annotations.push({ x: i, y: 1.08, text: `<b>${esc(axis.name)}</b>`, showarrow: false });
      for (const [pos, label] of axis.ticks) {
        annotations.push({ x: i, y: pos, text: esc(label), showarrow: false, xanchor: "left",
          xshift: 4, font: { size: 10, color: "#555" } });
      }
    });
    const title = !trials.length ? "no observations yet"
      : answer.total > answer.trials.length ? `the ${answer.trials.length} best of ${answer.total} trials` : "";
    Plotly.react("parallel-plot", traces, {
      margin: { t: 50, r: 130, l: 30 }, shapes, annotations, hovermode: "closest",
      xaxis: { visible: false, range: [-0.2, axes.length - 0.6] },
      yaxis: { visible: false, range: [-0.05, 1.12] },
      title: { text: title },
    }, PLOT_CONFIG).then(() => bindClick("parallel-plot"));
  }

  function axisFor(p, trials) {
    const name = p.name;
    if (p.type === "choice" || p.type === "ordinal") {
      const values = p.range.map((v) => JSON.stringify(v));
      const k = Math.max(1, values.length - 1);
      return { name, norm: (t) => values.indexOf(JSON.stringify(t.parameters[name])) / k,
        ticks: p.range.map((v, i) => [i / k, typeof v === "string" ? v : JSON.stringify(v)]) };
    }
    const log = p.scale === "log";
    const f = (v) => (log ? Math.log10(v) : v);
    const [a, b] = [f(p.range[0]), f(p.range[1])];
    const ticks = [[0, fmt(p.range[0])], [1, fmt(p.range[1])]];
    if (log && b - a >= 1.5) { // a label per decade between the ends (not crammed: >= 2 decades apart)
      for (let k = Math.ceil(a + 0.25); k <= Math.floor(b - 0.25); k++) ticks.push([(k - a) / (b - a), fmt(10 ** k)]);
    }
    return { name, norm: (t) => (b > a ? (f(t.parameters[name]) - a) / (b - a) : 0.5), ticks };
  }

  // Population lanes: one lane per member (y), one column per generation (x), colour = the
  // objective (bright = better in either direction), exploit arrows from the donor's cell to
  // the receiver's. The server sends a window of generations as columnar arrays.
  function renderPopulation() {
    const study = state.study;
    const container = document.getElementById("tab");
    if (!study.meta.pbt) {
      container.replaceChildren(el("p", { class: "muted", id: "population-none" },
        "Not a PBT study: its trials have no population members or generations."));
      return;
    }
    const answer = study.answer;
    if (!answer || answer.tab !== "population") { state.dirty = true; return; }
    if (!document.getElementById("population-plot")) {
      const value = el("select", { id: "population-value",
        onchange: (e) => { state.lanes.value = e.target.value; refetch(); } },
      el("option", { value: "last" }, "last observation"), el("option", { value: "best" }, "best observation"));
      const scale = el("select", { id: "population-scale",
        onchange: (e) => { state.lanes.scale = e.target.value; renderPopulation(); } },
      el("option", { value: "study" }, "linear"), el("option", { value: "log" }, "logarithmic"),
      el("option", { value: "generation" }, "rank within each generation"));
      const count = el("select", { id: "population-count",
        onchange: (e) => { state.lanes.count = Number(e.target.value); refetch(); } },
      LANE_WINDOWS.map((n) => el("option", { value: String(n) }, n)));
      const arrows = el("input", { type: "checkbox", id: "population-arrows", checked: state.lanes.arrows,
        onchange: (e) => { state.lanes.arrows = e.target.checked; renderPopulation(); } });
      container.replaceChildren(el("div", { class: "filters", id: "population-controls" },
        el("label", {}, "colour: ", value), el("label", {}, "scale: ", scale),
        el("label", {}, "generations shown ", count), el("label", {}, arrows, " exploit arrows"),
        el("div", { class: "pager", id: "population-pager" })),
      el("p", { class: "muted" }, "One lane per population member. Hover a cell for its " +
        "hyperparameters; click it to open the trial and trace the lineage of its weights."),
      el("div", { id: "population-plot", class: "plot" }));
    }
    document.getElementById("population-value").value = state.lanes.value;
    document.getElementById("population-scale").value = state.lanes.scale;
    document.getElementById("population-count").value = String(state.lanes.count);
    populationPager(answer.window);
    const lower = answer.direction === "minimize";
    const lanes = answer.lanes, w = answer.window, c = answer.cells, ex = answer.exploits;
    const xs = [];
    if (w.start !== null) for (let g = w.start; g <= w.end; g++) xs.push(g);
    const ys = lanes.map((_, i) => i);
    const z = ys.map(() => xs.map(() => null));
    const ids = ys.map(() => xs.map(() => null));
    const text = ys.map(() => xs.map(() => ""));
    const where = new Map(); // trial id -> [generation, lane] of its cell
    const donorOf = new Map();
    for (let i = 0; i < ex.target.length; i++) donorOf.set(ex.target[i], [ex.source[i], ex.from_lane[i]]);
    const running = { x: [], y: [] };
    for (let i = 0; i < c.trial.length; i++) {
      const lane = c.lane[i], col = c.generation[i] - w.start, tid = c.trial[i];
      z[lane][col] = c.objective[i];
      ids[lane][col] = tid;
      where.set(tid, [c.generation[i], lane]);
      const lines = [`trial ${tid} · ${esc(lanes[lane])} · generation ${c.generation[i]}`,
        `${answer.value} objective ${fmt(c.objective[i])} · ${c.status[i]}`];
      answer.parameters.forEach((n, k) => lines.push(`${esc(short(n))} = ${esc(short(fmt(c.values[i][k])))}`));
      const donor = donorOf.get(tid);
      if (donor) lines.push(`copied the weights of ${esc(lanes[donor[1]])} (trial ${donor[0]})`);
      if (c.attempts[i] > 1) lines.push(`${c.attempts[i]} attempts`);
      text[lane][col] = lines.join("<br>");
      if (c.status[i] === "RUNNING" || c.status[i] === "QUEUED") { running.x.push(c.generation[i]); running.y.push(lane); }
    }
    const colour = colourScale(z, answer, lower);
    const heat = { type: "heatmap", meta: "lanes", x: xs, y: ys, z, customdata: ids, text,
      hovertemplate: "%{text}<extra></extra>", hoverongaps: false, xgap: 1, ygap: 1,
      colorscale: "Viridis", reversescale: colour.reverse, zmin: colour.zmin, zmax: colour.zmax,
      colorbar: { title: { text: colour.title, side: "right" }, thickness: 14,
        tickvals: colour.tickvals, ticktext: colour.ticktext } };
    const arrow = { type: "scatter", mode: "lines+markers", meta: "exploit-arrows", name: "exploit (copied weights)",
      x: [], y: [], customdata: [], marker: { symbol: "arrow", angleref: "previous", size: [], color: "rgba(200,40,40,0.8)" },
      line: { color: "rgba(200,40,40,0.4)", width: 0.8 }, hoverinfo: "skip", visible: state.lanes.arrows };
    for (let i = 0; i < ex.source.length; i++) {
      arrow.x.push(ex.from_generation[i], ex.to_generation[i], null);
      arrow.y.push(ex.from_lane[i], ex.to_lane[i], null);
      const pair = [ex.source[i], ex.target[i]];
      arrow.customdata.push(pair, pair, null);
      arrow.marker.size.push(0, 6, 0);
    }
    const live = { type: "scatter", mode: "markers", meta: "running", name: "running", x: running.x, y: running.y,
      marker: { symbol: "square-open", size: 9, color: "#2f6fdf", line: { width: 2 } }, hoverinfo: "skip" };
    const focus = { type: "scatter", mode: "lines+markers", meta: "focus", name: "lineage of the selected trial",
      x: [], y: [], customdata: [], line: { color: "#1d2330", width: 3 }, marker: { size: 6, color: "#fff",
        line: { color: "#1d2330", width: 2 } }, hoverinfo: "skip" };
    const byTrial = new Map(c.trial.map((t, i) => [t, i]));
    for (let t = state.lanes.focus; t !== null && t !== undefined && where.has(t);) {
      const [g, lane] = where.get(t);
      focus.x.unshift(g); focus.y.unshift(lane); focus.customdata.unshift(t);
      t = c.parent[byTrial.get(t)];
    }
    const step = Math.max(1, Math.ceil(lanes.length / 32));
    const ticks = ys.filter((i) => i % step === 0);
    const height = Math.max(420, Math.min(1400, lanes.length * 11 + 150));
    const title = w.start === null ? "no trials yet"
      : `${lanes.length} members × generations ${w.start}–${w.end}` +
        `${w.first < w.start || w.last > w.end ? ` (of ${w.first}–${w.last})` : ""} · ${ex.source.length} exploits`;
    Plotly.react("population-plot", [heat, arrow, live, focus], {
      margin: { t: 40, r: 10, l: 90, b: 50 }, height, hovermode: "closest", title: { text: title, font: { size: 13 } },
      xaxis: { title: { text: "generation" }, showgrid: false, zeroline: false,
        range: w.start === null ? undefined : [w.start - 0.5, w.end + 0.5] },
      yaxis: { title: { text: "population member" }, tickvals: ticks, ticktext: ticks.map((i) => esc(lanes[i])),
        range: [lanes.length - 0.5, -0.5], showgrid: false, zeroline: false, tickfont: { size: 10 } },
      plot_bgcolor: "#e6e9ef", showlegend: true,
      legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", xanchor: "left", font: { size: 11 } },
    }, PLOT_CONFIG).then(() => {
      const gd = document.getElementById("population-plot");
      gd.dataset.version = String(answer.version);
      if (gd.dataset.bound) return;
      gd.dataset.bound = "1";
      gd.on("plotly_click", (event) => {
        const point = event.points && event.points[0];
        if (!point) return;
        let tid = point.customdata;
        if (Array.isArray(tid)) tid = tid[1];
        if (typeof tid !== "number") return;
        state.lanes.focus = tid;
        renderPopulation();
        renderDetail(tid, true, true);
      });
    });
  }

  // the colour of the cells (z changed in place): linear, logarithmic (positive objectives
  // only, else linear) or the rank within each generation; bright is better in every case
  function colourScale(z, answer, lower) {
    const what = `${answer.value} objective<br>${lower ? "lower" : "higher"} is better`;
    const scale = state.lanes.scale;
    if (scale === "generation") {
      rankColumns(z, lower);
      return { reverse: false, zmin: 0, zmax: 1, title: `rank in its generation<br>(${answer.value} objective)`,
        tickvals: [0, 0.5, 1], ticktext: ["worst", "median", "best"] };
    }
    const range = answer.range;
    if (scale === "log" && range && range[0] > 0) {
      for (const row of z) for (let i = 0; i < row.length; i++) if (row[i] !== null) row[i] = Math.log10(row[i]);
      const lo = Math.log10(range[0]), hi = Math.log10(range[1]);
      const tickvals = [];
      for (let k = Math.ceil(lo); k <= Math.floor(hi); k++) tickvals.push(k);
      if (tickvals.length < 2) tickvals.splice(0, tickvals.length, lo, hi);
      return { reverse: lower, zmin: lo, zmax: hi, title: `${what}<br>(log scale)`, tickvals,
        ticktext: tickvals.map((k) => fmt(Number((10 ** k).toPrecision(3)))) };
    }
    const note = scale === "log" ? "<br>(log needs objectives > 0)" : "";
    return { reverse: lower, zmin: range ? range[0] : undefined, zmax: range ? range[1] : undefined,
      title: what + note };
  }

  // each column's objectives as their rank there: 1 for the best, 0 for the worst
  function rankColumns(z, lower) {
    const columns = z.length ? z[0].length : 0;
    for (let col = 0; col < columns; col++) {
      const rows = z.map((_, i) => i).filter((i) => z[i][col] !== null);
      rows.sort((a, b) => (lower ? z[b][col] - z[a][col] : z[a][col] - z[b][col])); // worst first
      const n = rows.length;
      const rank = new Map(rows.map((row, k) => [row, n > 1 ? k / (n - 1) : 1]));
      for (const [row, q] of rank) z[row][col] = q;
    }
  }

  function short(text) { const s = String(text); return s.length > 48 ? s.slice(0, 47) + "…" : s; }

  function populationPager(w) {
    const lanes = state.lanes;
    const go = (start) => { lanes.start = start; refetch(); };
    const older = w.start !== null && w.first < w.start;
    const newer = w.start !== null && w.end < w.last;
    document.getElementById("population-pager").replaceChildren(
      el("button", { id: "lanes-first", disabled: !older, onclick: () => go(w.first) }, "«"),
      el("button", { id: "lanes-earlier", disabled: !older, onclick: () => go(Math.max(w.first, w.start - w.count)) }, "‹ earlier"),
      el("span", { class: "muted", id: "lanes-info" }, w.start === null ? "" :
        `generations ${w.start}–${w.end} of ${w.first}–${w.last}` + (lanes.start === null ? " (following the newest)" : "")),
      el("button", { id: "lanes-later", disabled: !newer, onclick: () => go(w.start + w.count) }, "later ›"),
      el("button", { id: "lanes-newest", disabled: lanes.start === null, onclick: () => go(null) }, "newest »"));
  }

  // PBT lineage: one node per trial, edges parent -> child, exploit edges dashed
  function renderLineage() {
    const study = state.study;
    const container = document.getElementById("tab");
    if (!study.meta.pbt) {
      container.replaceChildren(el("p", { class: "muted", id: "lineage-none" },
        "Not a PBT study: its trials have no generations or parents."));
      return;
    }
    if (!study.lineage) { state.dirty = true; return; } // fetched on the next poll
    ensurePlot("lineage-plot", "Click a trial to see its schedule.");
    const { nodes, edges } = study.lineage;
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const known = nodes.filter((n) => n.objective !== null).map((n) => n.objective);
    const floor = known.length ? Math.min(...known) : 0;
    const y = (n) => {
      for (let cur = n; cur; cur = byId.get(parentOf(cur))) if (cur.objective !== null) return cur.objective;
      return floor;
    };
    function parentOf(n) { const t = study.trials.get(n.id); return t ? t.parent : null; }
    const founders = Array.from(new Set(nodes.map((n) => n.founder))).sort((a, b) => a - b);
    const edgeTrace = (exploit) => {
      const tr = { type: "scatter", mode: "lines", x: [], y: [], customdata: [], hoverinfo: "skip",
        name: exploit ? "exploit (copied weights)" : "continued", meta: exploit ? "exploit-edges" : "edges",
        line: exploit ? { color: "#c8372d", width: 1.5, dash: "dash" } : { color: "#9aa3b2", width: 1.2 } };
      for (const e of edges.filter((e) => e.exploit === exploit)) {
        const s = byId.get(e.source), t = byId.get(e.target);
        if (!s || !t) continue;
        tr.x.push(s.generation, t.generation, null); tr.y.push(y(s), y(t), null);
        tr.customdata.push([e.source, e.target], [e.source, e.target], null);
      }
      return tr;
    };
    const nodeTraces = founders.map((f, i) => {
      const mine = nodes.filter((n) => n.founder === f);
      return { type: "scatter", mode: "markers", name: `founder ${f}`, meta: "nodes",
        x: mine.map((n) => n.generation), y: mine.map(y), customdata: mine.map((n) => n.id),
        marker: { size: 9, color: PALETTE[i % PALETTE.length],
          symbol: mine.map((n) => (n.objective === null ? "circle-open" : "circle")),
          line: { color: "#fff", width: 1 } },
        text: mine.map((n) => `trial ${n.id} · member ${fmt(n.member)} · ${n.status}<br>objective ${fmt(n.objective)}`),
        hovertemplate: "%{text}<extra></extra>" };
    });
    Plotly.react("lineage-plot", [edgeTrace(false), edgeTrace(true), ...nodeTraces], {
      margin: { t: 30, r: 20 }, hovermode: "closest",
      xaxis: { title: { text: "generation" }, dtick: 1 }, yaxis: { title: { text: "objective" } },
      legend: { orientation: "h", y: -0.2 },
    }, PLOT_CONFIG).then(() => bindClick("lineage-plot"));
  }

  // hyperparameter schedules: the value of one parameter along every family line
  function renderSchedules() {
    const study = state.study;
    const container = document.getElementById("tab");
    if (!study.meta.pbt) {
      container.replaceChildren(el("p", { class: "muted", id: "schedules-none" },
        "Not a PBT study: each trial keeps its hyperparameters for its whole run."));
      return;
    }
    const names = parameterNames();
    if (!names.includes(state.param)) state.param = names[0];
    let select = document.getElementById("schedule-param");
    if (!select) {
      select = el("select", { id: "schedule-param",
        onchange: (e) => { state.param = e.target.value; renderSchedules(); } },
      names.map((n) => el("option", { value: n }, n)));
      container.replaceChildren(el("div", { class: "filters" }, el("label", {}, "parameter ", select)),
        el("div", { id: "schedule-plot", class: "plot" }));
    }
    select.value = state.param;
    const trials = trialList();
    const parents = new Set(trials.map((t) => t.parent).filter((p) => p !== null));
    const leaves = trials.filter((t) => !parents.has(t.id));
    const best = study.meta.best_trial;
    const founderIds = [];
    const traces = leaves.map((leaf) => {
      const path = [];
      for (let t = leaf; t; t = study.trials.get(t.parent)) { path.unshift(t); if (t.parent === null) break; }
      const founder = path[0].id;
      if (!founderIds.includes(founder)) founderIds.push(founder);
      const isBest = false;
      return { type: "scatter", mode: "lines+markers", name: `trial ${leaf.id}`, meta: "schedule",
        x: path.map((t) => t.generation), y: path.map((t) => t.parameters[state.param]),
        customdata: path.map((t) => t.id), showlegend: false,
        line: { shape: "hv", width: isBest ? 3.5 : 1.2,
          color: PALETTE[founderIds.indexOf(founder) % PALETTE.length] },
        opacity: isBest ? 1 : 0.6,
        hovertemplate: `trial %{customdata}<br>generation %{x}<br>${esc(state.param)} = %{y}<extra></extra>` };
    });
    const bestTrial = study.trials.get(best);
    if (bestTrial) {
      const path = [];
      for (let t = bestTrial; t; t = study.trials.get(t.parent)) { path.unshift(t); if (t.parent === null) break; }
      traces.push({ type: "scatter", mode: "lines+markers", name: `best trial ${best}`, meta: "best-schedule",
        x: path.map((t) => t.generation), y: path.map((t) => t.parameters[state.param]),
        customdata: path.map((t) => t.id), showlegend: false,
        line: { shape: "hv", width: 3.5, color: "#1d2330" },
        hovertemplate: `best trial ${best}: trial %{customdata}<br>generation %{x}<br>${esc(state.param)} = %{y}<extra></extra>` });
    }
    const param = study.meta.parameters.find((p) => p.name === state.param);
    Plotly.react("schedule-plot", traces, {
      margin: { t: 30, r: 20 }, hovermode: "closest",
      title: { text: best !== null ? `black line: the schedule that produced the best trial (${best})` : "" },
      xaxis: { title: { text: "generation" }, dtick: 1 },
      yaxis: { title: { text: esc(state.param) }, type: "-",
        ...logTicks(traces.flatMap((t) => t.y), param && param.scale === "log") },
    }, PLOT_CONFIG).then(() => bindClick("schedule-plot"));
  }

  function ensurePlot(id, hint) {
    const container = document.getElementById("tab");
    if (!document.getElementById(id)) {
      container.replaceChildren(hint ? el("p", { class: "muted" }, hint) : "",
        el("div", { id, class: "plot" }));
    }
  }

  function bindClick(id) {
    const div = document.getElementById(id);
    if (!div || div.dataset.bound) return;
    div.dataset.bound = "1";
    div.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      const data = point && point.customdata;
      const tid = Array.isArray(data) ? data[1] : data;
      if (typeof tid === "number") renderDetail(tid, true, true);
    });
  }

  // one trial: parameters, schedule, stop. fetchNow: true (a click: fetch and show it),
  // "refresh" (the study changed: fetch, redraw if the trial changed, keep the scroll
  // position), false (show it if another is shown). scroll: bring it into view (a click in
  // a long table put it thousands of pixels down); it stays within the window (style.css).
  async function renderDetail(id, fetchNow, scroll) {
    state.selected = id;
    const holder = document.getElementById("detail");
    if (!holder) return;
    document.querySelectorAll("tr.selected").forEach((r) => r.classList.remove("selected"));
    const row = document.querySelector(`tr[data-trial="${id}"]`);
    if (row) row.classList.add("selected");
    if (!fetchNow && holder.dataset.trial === String(id)) return;
    let trial;
    try {
      trial = await api(`${studyApi(state.study.name)}/trials/${id}`);
    } catch (err) { showError(err.message); return; }
    if (state.selected !== id) return; // another trial was clicked meanwhile
    const text = JSON.stringify(trial);
    const shown = document.getElementById("trial-detail");
    if (fetchNow === "refresh" && shown && holder.dataset.trial === String(id) && holder.dataset.json === text) return;
    const keep = shown && holder.dataset.trial === String(id) ? shown.scrollTop : 0;
    holder.dataset.trial = String(id);
    holder.dataset.json = text;
    const names = parameterNames();
    const schedule = trial.schedule.map((s, i) => el("tr", {},
      el("td", { class: "num" }, i + 1), el("td", { class: "num" }, s.trial),
      el("td", { class: "num" }, fmt(s.generation)),
      el("td", {}, s.iterations ? `${s.iterations[0]}–${s.iterations[1]}` : ""),
      names.map((n) => el("td", { class: "num" }, fmt(s.parameters[n]))),
      el("td", {}, s.load_from ? `trial ${s.load_from}` : "fresh"), el("td", {}, s.explore)));
    const allowStop = state.info && state.info.allow_stop;
    const close = el("button", { class: "close", id: "detail-close", title: "close",
      onclick: () => { state.selected = null; holder.replaceChildren(); delete holder.dataset.trial;
        document.querySelectorAll("tr.selected").forEach((r) => r.classList.remove("selected")); } }, "×");
    const box = el("div", { class: "detail", id: "trial-detail", "data-trial": id, "data-status": trial.status },
      close,
      el("h2", {}, `Trial ${id} `, el("span", { class: `status status-${trial.status}`, id: "detail-status" }, trial.status),
        " ", allowStop ? stopButton(trial) : ""),
      el("p", {}, `last objective ${fmt(trial.last)} · best ${fmt(trial.best)} · ${trial.iterations} observations`),
      trial.meta.error ? el("pre", {}, String(trial.meta.error)) : "",
      contextTable(trial),
      el("h2", {}, "Schedule (the segments that trained this model)"),
      el("table", { id: "schedule-table" }, el("thead", {}, el("tr", {},
        ["segment", "trial", "generation", "iterations", ...names, "weights from", "explore"]
          .map((h) => el("th", {}, h)))), el("tbody", {}, schedule)));
    holder.replaceChildren(box);
    box.scrollTop = keep;
    if (scroll) box.scrollIntoView({ block: "nearest" });
  }

  // the context (extra metrics) of the trial's last observation, if any
  function contextTable(trial) {
    const iterations = Object.keys(trial.context || {}).map(Number).sort((a, b) => a - b);
    if (!iterations.length) return "";
    const last = iterations[iterations.length - 1];
    const entries = Object.entries(trial.context[String(last)] || {});
    if (!entries.length) return "";
    return el("div", {}, el("h2", {}, `Context at iteration ${last}`),
      el("table", { id: "context-table" }, el("tbody", {}, entries.map(([k, v]) =>
        el("tr", {}, el("th", {}, k), el("td", { class: typeof v === "number" ? "num" : "" }, fmt(v)))))));
  }

  // -- routing -----------------------------------------------------------------------------------
  function route() {
    const next = parseRoute();
    const previous = state.route;
    state.route = next;
    if (next.page === "study" && next.tab !== "trials") loadPlotly().catch(() => {}); // meanwhile: the data
    if (next.page === "study") {
      const sameStudy = previous && previous.page === "study" && previous.name === next.name && state.study;
      if (sameStudy) {
        renderStudyFrame();
        state.study.lineage = null;
        state.study.version = 0; // refetch so the new tab has what it needs
        state.study.answer = null;
        state.study.query = null;
        state.dirty = true;
      } else {
        state.study = null;
        state.selected = null;
        state.filter = { status: "", generation: "" };
        state.sort = { key: "id", desc: false };
        state.page = { offset: 0, size: 100 };
        state.lanes = freshLanes();
      }
    }
    tick();
  }

  window.addEventListener("hashchange", route);
  route();
  setInterval(tick, POLL_MS);
})();

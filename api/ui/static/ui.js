// recsys dashboard: each page fetches its one JSON endpoint and draws it. Plain DOM calls (text
// goes in through textContent, never as HTML) and uPlot (vendored, MIT) for the charts.
//
// Moving between pages stays in this document (history.pushState, like any dashboard of a
// single-page design): every page is the same shell, so loading a new document would only make
// the browser parse, lay out and paint everything again. Measured in headless Chromium, a page
// loaded as a new document cost 0.16 CPU-seconds; the browser often runs on the machine it
// watches, and those bursts made the API's answers late (docs/UI.md, "The load test with the
// dashboard open"). For the same reason the overview's refresh changes only what changed.
"use strict";

(() => {
  // path -> {title, page, endpoint}: the server's one list of pages (api/ui/html.py)
  const PAGES = JSON.parse(document.body.dataset.pages || "{}");
  let page = document.body.dataset.page;
  let endpoint = document.body.dataset.endpoint;
  const content = document.getElementById("content");
  const statusLine = document.getElementById("status");

  // ------------------------------------------------------------------ DOM and formatting

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "on") {
        for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
      } else if (key === "class") {
        node.className = value;
      } else if (key === "dataset") {
        Object.assign(node.dataset, value);
      } else {
        node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const fmt = {
    num(x, digits = 0) {
      if (x === null || x === undefined || Number.isNaN(x)) return "–";
      return Number(x).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
    },
    pct(x, digits = 1) {
      return x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)}%`;
    },
    bytes(n) {
      if (n === null || n === undefined) return "–";
      const units = ["B", "KB", "MB", "GB", "TB"];
      let i = 0;
      while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
      return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
    },
    duration(s) {
      if (s === null || s === undefined) return "–";
      if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
      if (s < 5400) return `${(s / 60).toFixed(0)} min`;
      if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
      return `${(s / 86400).toFixed(1)} days`;
    },
    time(ts) {
      if (ts === null || ts === undefined) return "–";
      return new Date(ts * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
    },
  };

  const stat = (value, label) => el("div", { class: "stat" }, el("div", { class: "value" }, value), el("div", { class: "label" }, label));
  const card = (title, ...children) => el("section", { class: "card" }, el("h2", {}, title), ...children);
  const wideCard = (title, ...children) => el("section", { class: "card wide" }, el("h2", {}, title), ...children);
  const flagTag = (flag) => (flag ? el("span", { class: `tag flag-${flag}` }, flag) : el("span", { class: "muted" }, "no live data"));
  // arm: the A/B arm whose build the item page should show (none: the champion's)
  const itemLink = (id, title, arm) => el("a", { href: `/ui/items?item=${encodeURIComponent(id)}${arm ? `&arm=${encodeURIComponent(arm)}` : ""}` }, title ? `${title} (${id})` : String(id));
  const userLink = (id) => el("a", { href: `/ui/users?user=${encodeURIComponent(id)}` }, String(id));

  // columns: [{label, value(row) -> node|text, num}]
  function table(columns, rows, rowAttrs) {
    return el(
      "table",
      {},
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null }, c.label)))),
      el(
        "tbody",
        {},
        rows.map((row, i) => el("tr", rowAttrs ? rowAttrs(row, i) : {}, columns.map((c) => el("td", { class: c.num ? "num" : null }, c.value(row, i))))),
      ),
    );
  }

  // Make `current` look like `next` in place, touching only what differs: a refresh then changes
  // a few text nodes instead of a whole page's layout and paint. Elements marked data-keep (a
  // chart that a library draws) keep their children. For pages without event handlers: `next`'s
  // handlers are not carried over to the nodes it updates.
  function morph(current, next) {
    if (current.nodeType !== next.nodeType || current.nodeName !== next.nodeName) {
      current.replaceWith(next);
      return;
    }
    if (current.nodeType === Node.TEXT_NODE) {
      if (current.data !== next.data) current.data = next.data;
      return;
    }
    if (current.nodeType !== Node.ELEMENT_NODE) return;
    for (const { name } of [...current.attributes]) if (!next.hasAttribute(name)) current.removeAttribute(name);
    for (const { name, value } of next.attributes) if (current.getAttribute(name) !== value) current.setAttribute(name, value);
    if (current.dataset.keep !== undefined) return;
    const old = [...current.childNodes];
    const fresh = [...next.childNodes];
    fresh.forEach((child, i) => (i < old.length ? morph(old[i], child) : current.append(child)));
    for (const child of old.slice(fresh.length)) child.remove();
  }

  // ------------------------------------------------------------------ data

  // Which drawing is current: an answer that comes back after the reader moved to another page
  // is dropped (it would draw the old page over the new one).
  let navToken = 0;
  class Stale extends Error {}

  async function getJSON(url) {
    const token = navToken;
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (token !== navToken) throw new Stale(url);
    if (response.status === 401) {
      window.location.assign(`/ui/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
      throw new Error("signed out");
    }
    const body = await response.json().catch(() => ({}));
    if (token !== navToken) throw new Stale(url);
    if (!response.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || response.statusText);
      throw new Error(`${response.status}: ${detail}`);
    }
    return body;
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  async function postJSON(url, payload) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(payload),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`${response.status}: ${body.detail || response.statusText}`);
    return body;
  }

  function setStatus(text, isError) {
    statusLine.textContent = text;
    statusLine.className = isError ? "status error" : "status";
  }

  // ------------------------------------------------------------------ charts (uPlot)

  const COLORS = ["#2f6fdf", "#d9822b", "#1d8a4a", "#8e44ad", "#c8372d", "#16a2b8"];

  function chartWidth(container) {
    return Math.max(280, Math.min(container.clientWidth || 600, 1200) - 8);
  }

  // A line chart over time: x in unix seconds, one or more series.
  function lineChart(container, { x, series, height = 220, yLabel, spanGaps = true }) {
    const opts = {
      width: chartWidth(container),
      height,
      scales: { x: { time: true } },
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 1.6, spanGaps, scale: s.scale || "y" }))],
      axes: [{}, { label: yLabel, scale: "y" }],
    };
    if (series.some((s) => s.scale === "y2")) {
      opts.axes.push({ side: 1, scale: "y2", label: series.find((s) => s.scale === "y2").label, grid: { show: false } });
    }
    return new uPlot(opts, [x, ...series.map((s) => s.values)], container);
  }

  // Horizontal bars: one row per name (first on top), one or more series of values.
  function barChart(container, { names, series, xLabel, thresholds = [] }) {
    const idx = names.map((_, i) => i);
    const barsOf = uPlot.paths.bars;
    const height = Math.max(120, 22 * names.length + 60);
    const n = series.length;
    const opts = {
      width: chartWidth(container),
      height,
      legend: { show: n > 1 || thresholds.length > 0 },
      cursor: { show: true, points: { show: false } },
      scales: { x: { time: false, ori: 1, dir: -1, range: [-0.6, names.length - 0.4] }, y: { ori: 0, range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.05 : 1] } },
      axes: [
        { side: 3, splits: () => idx, values: (u, splits) => splits.map((i) => names[i] ?? ""), size: 170, gap: 4, grid: { show: false }, ticks: { show: false } },
        { side: 2, label: xLabel },
      ],
      series: [
        { label: "" },
        ...series.map((s, i) => ({
          label: s.label,
          fill: `${COLORS[i % COLORS.length]}cc`,
          stroke: COLORS[i % COLORS.length],
          width: 0,
          // one series: centred bars; two: side by side around the row (align -1 and 1)
          paths: barsOf({ size: [n > 1 ? 0.4 : 0.7, 40], align: n > 1 ? (i === 0 ? -1 : 1) : 0 }),
          points: { show: false },
        })),
        ...thresholds.map((t) => ({ label: t.label, stroke: t.color, width: 1.5, dash: [6, 4], points: { show: false } })),
      ],
    };
    const data = [idx, ...series.map((s) => s.values), ...thresholds.map((t) => idx.map(() => t.value))];
    const chart = new uPlot(opts, data, container);
    // the numbers behind the bars, for screen readers and for reading exact values
    container.append(
      el(
        "details",
        { class: "small chart-data" },
        el("summary", {}, "as a table"),
        table(
          [{ label: "", value: (i) => names[i] }, ...series.map((s) => ({ label: s.label, value: (i) => fmt.num(s.values[i], 4), num: true }))],
          idx,
        ),
      ),
    );
    return chart;
  }

  // ------------------------------------------------------------------ pages

  const pages = {};
  const liveSeries = { t: [], rps: [], p99: [] };
  let liveChart = null; // the overview's uPlot, updated in place by each refresh
  let refreshTimer = null;

  pages.overview = async function overview() {
    const d = await getJSON(endpoint);
    const t = d.traffic;
    liveSeries.t.push(d.generated_at);
    liveSeries.rps.push(t.since_start ? null : t.requests_per_s);
    liveSeries.p99.push(t.since_start ? null : t.p99_ms);
    if (liveSeries.t.length > 180) for (const k of Object.keys(liveSeries)) liveSeries[k].shift();

    const served = d.served.length
      ? table(
          [
            { label: "arm", value: (b) => b.arm },
            { label: "share of users", value: (b) => (d.experiment ? fmt.pct(b.share) : "all"), num: true },
            { label: "build", value: (b) => el("code", {}, b.build_version) },
            { label: "age", value: (b) => fmt.duration(b.age_s), num: true },
            { label: "users", value: (b) => fmt.num(b.data.users), num: true },
            { label: "items", value: (b) => fmt.num(b.data.items), num: true },
            { label: "events", value: (b) => fmt.num(b.data.events), num: true },
            { label: "data until", value: (b) => fmt.time(b.data.last_ts) },
            { label: "ranker NDCG@10 (valid)", value: (b) => fmt.num(b.ranker_valid_ndcg_at_10, 4), num: true },
            { label: "trees", value: (b) => b.ranker_trees, num: true },
            { label: "Redis per user", value: (b) => fmt.bytes(b.candidates.bytes_per_user), num: true },
          ],
          d.served,
          (b) => ({ class: "arm-row", dataset: { arm: b.arm, version: b.build_version } }),
        )
      : el("p", { class: "error" }, d.problem || "no build loaded");

    const onlineCard = d.online
      ? wideCard(
          "Online metrics by arm (since the servers started)",
          table(
            [
              { label: "arm", value: (o) => o.arm },
              { label: "answers", value: (o) => fmt.num(o.answers), num: true },
              { label: "ranked", value: (o) => fmt.pct(o.ranked_share), num: true },
              { label: "items shown", value: (o) => fmt.num(o.items_shown), num: true },
              { label: "CTR", value: (o) => fmt.pct(o.ctr, 2), num: true },
              { label: "completion", value: (o) => fmt.pct(o.completion), num: true },
              { label: "skip rate", value: (o) => fmt.pct(o.skip_rate, 2), num: true },
              { label: "dislike rate", value: (o) => fmt.pct(o.dislike_rate, 2), num: true },
              { label: "popularity", value: (o) => fmt.num(o.pop_pct, 3), num: true },
              { label: "coverage", value: (o) => fmt.pct(o.coverage), num: true },
            ],
            d.online,
            (o) => ({ class: "online-row", dataset: { arm: o.arm } }),
          ),
          el("p", { class: "small muted" }, "From the API's live counters (recsys_online_*), summed over workers: CTR is clicks and watches that name their answer's request_id over items shown; completion the mean of the watches that report one; popularity the mean percentile of the items shown; coverage the share of the catalogue shown. Events are counted as posted, not attributed: recsys online-report and recsys ab report give the attributed figures with intervals."),
        )
      : null;

    const shares = Object.entries(t.outcome_shares);
    const trafficCard = card(
      t.since_start ? "Live traffic (since the server started)" : `Live traffic (last ${fmt.num(t.window_s)} s)`,
      el(
        "div",
        { class: "stats" },
        stat(fmt.num(t.requests_per_s, 1), "recommendations / s"),
        stat(t.p50_ms === null ? "–" : `${fmt.num(t.p50_ms, 1)} ms`, "p50"),
        stat(t.p99_ms === null ? "–" : `${fmt.num(t.p99_ms, 1)} ms`, "p99"),
        stat(fmt.num(t.events_per_s, 1), "events / s"),
        stat(fmt.num(t.requests), "answers in window"),
      ),
      table(
        [
          { label: "outcome", value: ([o]) => o },
          { label: "share of answers", value: ([, s]) => fmt.pct(s, 2), num: true },
        ],
        shares,
      ),
      el("div", { class: "chart", id: "live-chart", dataset: { keep: "" } }),
      el("p", { class: "small muted" }, `Refreshes every ${d.refresh_s} s; the chart covers this page's refreshes. Fallbacks: cold-start is the unknown users' answer by design; ranker-timeout and redis-unavailable are degraded answers.`),
    );

    const r = d.redis;
    const redisCard = card(
      "Redis",
      el("p", {}, r.ok ? el("span", { class: "tag ok" }, "healthy") : el("span", { class: "tag bad" }, "problem"), " ", r.problem || ""),
      el(
        "div",
        { class: "stats" },
        stat(fmt.bytes(r.used_bytes), "used memory"),
        stat(r.max_bytes ? fmt.bytes(r.max_bytes) : "none", "ceiling"),
        stat(fmt.num(r.keys), "keys"),
        stat(fmt.num(r.expiring_keys), "event lists (expiring)"),
        stat(fmt.num(r.evicted_keys), "evicted"),
      ),
    );

    let reportCard;
    if (d.report) {
      const rows = Object.entries(d.report.rows);
      reportCard = card(
        "Offline evaluation",
        el("p", { class: "small muted" }, `${d.report.protocol}, ${fmt.num(d.report.users)} users, build ${d.report.build_version}; candidate recall ${fmt.pct(d.report.candidate_recall)}. ${d.report.path}`),
        table(
          [
            { label: "model", value: ([m]) => (m === "two_stage" ? el("strong", {}, "two-stage (as served)") : m) },
            ...["ndcg@10", "hr@10", "ndcg@50", "hr@50"].map((k) => ({ label: k.toUpperCase().replace("@", "@"), value: ([, row]) => fmt.num(row[k], 4), num: true })),
          ],
          rows,
        ),
        d.report.drift_flags ? el("p", { class: "small" }, `Drift in the report: ${d.report.drift_flags.stable} stable, ${d.report.drift_flags.moderate} moderate, ${d.report.drift_flags.major} major features.`) : null,
      );
    } else {
      reportCard = card("Offline evaluation", el("p", { class: "muted" }, d.report_problem || "No evaluation report configured (recsys serve --eval-report DIR)."));
    }

    const examples = d.example_users.length
      ? card("Inspect a user", el("p", {}, "Users of the build's audience sample: ", d.example_users.map((u, i) => [i ? ", " : "", userLink(u)])))
      : null;

    const grid = el("div", { class: "grid", dataset: { view: "overview" } }, wideCard(d.experiment ? "Served builds: A/B arms" : "Served build", el("p", { class: "small muted" }, `Current build pointer (the champion's): ${d.current_build || "none"}.${d.problem && d.served.length ? ` Problem: ${d.problem}` : ""}`), served), onlineCard, trafficCard, redisCard, reportCard, examples);
    const drawn = content.firstElementChild;
    if (drawn && drawn.dataset.view === "overview") morph(drawn, grid);
    else content.replaceChildren(grid);
    const chartBox = document.getElementById("live-chart");
    if (liveSeries.t.length < 2) {
      chartBox.replaceChildren(el("p", { class: "small muted" }, "The chart starts with the next refresh."));
    } else if (liveChart && chartBox.contains(liveChart.root)) {
      liveChart.setData([liveSeries.t, liveSeries.rps, liveSeries.p99]);
    } else {
      chartBox.replaceChildren();
      liveChart = lineChart(chartBox, {
        x: liveSeries.t,
        series: [
          { label: "req/s", values: liveSeries.rps },
          { label: "p99 ms", values: liveSeries.p99, scale: "y2" },
        ],
        height: 180,
        yLabel: "req/s",
      });
    }
    setStatus(`Updated ${new Date(d.generated_at * 1000).toLocaleTimeString()}`);
    refreshTimer = window.setTimeout(() => run(), d.refresh_s * 1000);
  };

  // notice: what the last promotion did, kept across the redraw that follows it
  pages.builds = async function builds(notice) {
    const d = await getJSON(endpoint);
    const promoteStatus = el("p", { id: "promote-status", class: notice ? `small ${notice.ok ? "ok" : "error"}` : "small" }, notice ? notice.text : null);
    const promoteButton = (b) =>
      el(
        "button",
        {
          type: "button",
          class: "promote",
          disabled: !d.can_promote,
          title: d.can_promote ? `Make this build of ${b.line} the champion's` : "needs an API key",
          on: {
            click: async (event) => {
              event.stopPropagation();
              const button = event.currentTarget;
              if (!window.confirm(`Promote ${b.line} (build ${b.build_version}) to champion? Every worker swaps it in on its next poll.`)) return;
              button.disabled = true;
              let done;
              try {
                done = await postJSON("/ui/api/promote", { line: b.line });
              } catch (error) {
                promoteStatus.textContent = `Promotion failed: ${error.message}`;
                promoteStatus.className = "small error";
                button.disabled = false;
                return;
              }
              // the page drawn again shows the new champion, and keeps this notice
              await builds({ ok: true, text: `Promoted ${done.line}: the champion is now ${done.champion} (was ${done.previous || "none"}).` }).catch((error) => setStatus(error.message, true));
            },
          },
        },
        "Promote",
      );
    let selected = d.builds.find((b) => b.current) || d.builds[0];
    const detail = el("div", {});
    const drawDetail = () => {
      if (!selected) return;
      const importance = Object.entries(selected.ranker.feature_importance);
      const timings = Object.entries(selected.timings_s);
      const impBox = el("div", { class: "chart" });
      const timeBox = el("div", { class: "chart" });
      detail.replaceChildren(
        el(
          "div",
          { class: "grid" },
          card(`Feature importance: ${selected.build_version}`, el("p", { class: "small muted" }, "Share of the ranker's total gain per feature."), impBox),
          card(`Time per stage: ${selected.build_version}`, el("p", { class: "small muted" }, `${fmt.duration(selected.build_s)} in all; peak RSS ${fmt.num(selected.peak_rss_mb)} MB.`), timeBox),
        ),
      );
      barChart(impBox, { names: importance.map(([n]) => n), series: [{ label: "gain share", values: importance.map(([, v]) => v) }], xLabel: "share of gain" });
      barChart(timeBox, { names: timings.map(([n]) => n), series: [{ label: "seconds", values: timings.map(([, v]) => v) }], xLabel: "seconds" });
    };
    const rows = table(
      [
        { label: "build", value: (b) => el("code", {}, b.build_version) },
        { label: "line", value: (b) => b.line },
        { label: "state", value: (b) => [b.current ? el("span", { class: "tag ok" }, "current") : null, b.served ? el("span", { class: "tag" }, "served") : null, b.on_disk ? null : el("span", { class: "tag muted" }, "removed")] },
        { label: "", value: (b) => (b.promotable ? promoteButton(b) : null) },
        { label: "created", value: (b) => b.created_at },
        { label: "users", value: (b) => fmt.num(b.data.users), num: true },
        { label: "items", value: (b) => fmt.num(b.data.items), num: true },
        { label: "events", value: (b) => fmt.num(b.data.events), num: true },
        { label: "build time", value: (b) => fmt.duration(b.build_s), num: true },
        { label: "artifacts", value: (b) => fmt.bytes(b.artifact_bytes), num: true },
        { label: "Redis", value: (b) => fmt.bytes(b.redis_bytes), num: true },
        { label: "NDCG@10 (valid)", value: (b) => fmt.num(b.ranker.valid_ndcg_at_10, 4), num: true },
        { label: "trees", value: (b) => b.ranker.best_iteration, num: true },
      ],
      d.builds,
      (b) => ({
        class: `clickable${b === selected ? " selected" : ""}`,
        dataset: { version: b.build_version },
        on: {
          click: (event) => {
            selected = b;
            for (const tr of event.currentTarget.parentNode.children) tr.classList.toggle("selected", tr === event.currentTarget);
            drawDetail();
          },
        },
      }),
    );
    const lines = Object.entries(d.lines).map(([n, v]) => `${n}: ${v}`).join("; ");
    content.replaceChildren(
      wideCard(
        "Builds",
        el("p", { class: "small muted" }, `Key prefix ${d.key_prefix}; newest first. Click a build for its ranker and timings. Build lines: ${lines || "none"}.`),
        d.can_promote ? null : el("p", { class: "small muted" }, "Promote needs an API key (RECSYS_SERVE__API_KEY); without one, use recsys ab promote."),
        promoteStatus,
        d.builds.length ? rows : el("p", {}, "No build yet."),
      ),
      detail,
    );
    drawDetail();
    setStatus(`${d.builds.length} builds`);
  };

  // The item and drift pages describe the champion's build, or an A/B arm's (?arm=NAME).
  function armQuery(params) {
    const arm = params.get("arm");
    return arm ? `?arm=${encodeURIComponent(arm)}` : "";
  }

  function contextForm(params, fields) {
    const form = el(
      "form",
      { class: "inline", method: "get" },
      fields.map((f) => el("label", {}, f.label, el("input", { name: f.name, value: params.get(f.name) || f.value || "", placeholder: f.placeholder || "", size: f.size || 12, required: f.required || null }))),
      el("button", { type: "submit" }, "Show"),
    );
    return form;
  }

  pages.users = async function users() {
    const params = new URLSearchParams(window.location.search);
    const userId = params.get("user");
    const form = contextForm(params, [
      { name: "user", label: "user id", required: true, size: 16 },
      { name: "device", label: "device", placeholder: "any" },
      { name: "ts", label: "time (unix s)", placeholder: "now" },
      { name: "k", label: "k", value: "20", size: 4 },
      { name: "alt_device", label: "compare: device", placeholder: "auto" },
      { name: "alt_ts", label: "compare: time", placeholder: "auto" },
    ]);
    if (!userId) {
      content.replaceChildren(form, el("p", { class: "muted" }, "Enter a user id (the overview lists a few)."));
      setStatus("");
      return;
    }
    const query = new URLSearchParams();
    for (const key of ["k", "device", "ts", "alt_device", "alt_ts"]) if (params.get(key)) query.set(key, params.get(key));
    const d = await getJSON(`${endpoint}${encodeURIComponent(userId)}?${query}`);
    const a = d.answer;
    const contextText = (c) => `device ${c.device || "any"}, time ${c.ts === null ? "now" : fmt.time(c.ts)}`;
    const answerTable = table(
      [
        { label: "#", value: (_, i) => i + 1, num: true },
        { label: "item", value: (it) => itemLink(it.item_id, it.title, a.arm) },
        { label: "score", value: (it) => fmt.num(it.score, 4), num: true },
        { label: "explanation", value: (it) => explanation(it.explanation) },
      ],
      a.items,
      (it) => ({ class: "answer-item", dataset: { itemId: String(it.item_id) } }),
    );
    const changes = table(
      [
        { label: "item", value: (c) => itemLink(c.item_id, c.title, a.arm) },
        { label: "rank (A)", value: (c) => (c.rank_a === null ? "–" : c.rank_a + 1), num: true },
        { label: "rank (B)", value: (c) => (c.rank_b === null ? "–" : c.rank_b + 1), num: true },
        {
          label: "change",
          value: (c) => {
            if (c.rank_a === null) return el("span", { class: "moved-up" }, "new");
            if (c.rank_b === null) return el("span", { class: "moved-down" }, "gone");
            const delta = c.rank_a - c.rank_b;
            return delta === 0 ? "=" : el("span", { class: delta > 0 ? "moved-up" : "moved-down" }, `${delta > 0 ? "▲" : "▼"} ${Math.abs(delta)}`);
          },
        },
      ],
      d.changes,
    );
    const history = d.history.length
      ? table(
          [
            { label: "when", value: (h) => fmt.time(h.ts) },
            { label: "item", value: (h) => itemLink(h.item_id, h.title, a.arm) },
            { label: "device", value: (h) => h.device },
            { label: "completion", value: (h) => (h.completion === null ? "–" : fmt.pct(h.completion, 0)), num: true },
            { label: "", value: (h) => (h.live ? el("span", { class: "tag" }, "live event") : "") },
          ],
          d.history,
        )
      : el("p", { class: "muted" }, d.known ? "No history." : "The build does not know this user (cold start).");
    // a source's table (up to hundreds of rows) is built when its box is first opened
    const sources = d.candidates.map((s) => {
      const box = el("details", {}, el("summary", {}, el("strong", {}, s.source), ` ${fmt.num(s.count)} candidates · `, el("span", { class: "muted small" }, s.description)));
      box.addEventListener("toggle", () => {
        if (!box.open || box.querySelector("table")) return;
        box.append(
          table(
            [
              { label: "stage-1 rank", value: (c) => c.stage1_rank + 1, num: true },
              { label: "item", value: (c) => itemLink(c.item_id, c.title, a.arm) },
              { label: "stage-1 score", value: (c) => fmt.num(c.stage1_score, 4), num: true },
              { label: "sources", value: (c) => c.sources.map((n) => el("span", { class: "tag" }, n)) },
            ],
            s.items,
          ),
        );
      });
      return box;
    });
    content.replaceChildren(
      form,
      el(
        "div",
        { class: "grid" },
        wideCard(
          `Recommendations for ${d.user_id}`,
          el("p", { class: "small muted", id: "answer-context" }, `As GET /recommendations/${d.user_id}?k=${a.items.length ? params.get("k") || 20 : 0}&explain=true answers: ${contextText(a.context)}; arm ${a.arm}, build ${a.model_version}; fallback: ${a.fallback || "none (ranked)"}.`),
          answerTable,
        ),
        card(`Recent history (${fmt.num(d.n_events)} events in all)`, history),
        card(
          "What the context changes",
          el("p", { class: "small muted" }, `A: ${contextText(a.context)}. B: ${contextText(d.alternative.context)} (fallback: ${d.alternative.fallback || "none"}).`),
          changes,
        ),
        wideCard(`Candidates by source (${fmt.num(d.candidates_total)} in all)`, sources.length ? sources : el("p", { class: "muted" }, "No candidates: the build does not know this user.")),
      ),
    );
    setStatus(`Build ${d.model_version}`);
  };

  function explanation(x) {
    if (!x) return el("span", { class: "muted small" }, "–");
    const parts = [];
    if (!x.sources.length && x.stage1_rank === null) parts.push(el("div", { class: "explain muted" }, "not a candidate: a popular item of the fallback"));
    if (x.sources && x.sources.length) parts.push(el("div", {}, x.sources.map((n) => el("span", { class: "tag" }, n))));
    if (x.stage1_rank !== null && x.stage1_rank !== undefined) parts.push(el("div", { class: "explain stage1" }, `stage 1: #${x.stage1_rank + 1}, score ${fmt.num(x.stage1_score, 4)}`));
    if (x.ranker_score !== null && x.ranker_score !== undefined) parts.push(el("div", { class: "explain ranker" }, `ranker: ${fmt.num(x.ranker_score, 4)}${x.expected_value === null ? "" : ` (mean ${fmt.num(x.expected_value, 3)})`}`));
    if (x.contributions && x.contributions.length) {
      parts.push(
        el(
          "div",
          { class: "explain contributions" },
          x.contributions.map((c, i) => [i ? "; " : "", `${c.feature} = ${fmt.num(c.value, 3)} (${c.contribution >= 0 ? "+" : ""}${fmt.num(c.contribution, 3)})`]),
        ),
      );
    }
    return parts;
  }

  pages.items = async function items() {
    const params = new URLSearchParams(window.location.search);
    const itemId = params.get("item");
    const form = contextForm(params, [
      { name: "item", label: "item id", required: true, size: 16 },
      { name: "arm", label: "A/B arm", placeholder: "champion", size: 10 },
    ]);
    if (!itemId) {
      content.replaceChildren(form, el("p", { class: "muted" }, "Enter an item id, or follow an item from a user's recommendations."));
      setStatus("");
      return;
    }
    const d = await getJSON(`${endpoint}${encodeURIComponent(itemId)}${armQuery(params)}`);
    document.querySelector("main h1").textContent = d.title ? `${d.title} (${d.item_id})` : `Item ${d.item_id}`;
    const chartBox = el("div", { class: "chart" });
    const meta = card(
      "Metadata",
      el(
        "div",
        { class: "stats" },
        stat(fmt.num(d.events_all_time), "events (all time)"),
        stat(fmt.num(d.events_recent), `events (last ${fmt.duration(d.recent_window_s)})`),
        stat(`#${d.popularity_rank + 1}`, "popularity rank"),
      ),
      table(
        [
          { label: "field", value: ([k]) => k },
          { label: "value", value: ([, v]) => v },
        ],
        [
          ["title", d.title || "–"],
          ["genres", d.genres.length ? d.genres.map((g) => el("span", { class: "tag" }, g)) : "–"],
          ["released", fmt.time(d.release_ts)],
          ["duration", d.duration_min === null ? "–" : `${fmt.num(d.duration_min)} min`],
        ],
      ),
    );
    const neighbours = d.neighbours.map((n) =>
      card(
        `Nearest by ${n.label}`,
        el("p", { class: "small muted" }, `The ${n.source} source's table: ${n.description}`),
        table(
          [
            { label: "item", value: (x) => itemLink(x.item_id, x.title, params.get("arm")) },
            { label: "similarity", value: (x) => fmt.num(x.similarity, 3), num: true },
          ],
          n.items,
        ),
      ),
    );
    let audience;
    if (d.audience) {
      const a = d.audience;
      audience = card(
        "Recommended to",
        el("p", { class: "small" }, `In the top ${a.k} of ${fmt.num(a.reach)} of ${fmt.num(a.sample_users)} sampled users (${fmt.pct(a.reach / Math.max(a.sample_users, 1))}), ranked by the build's ranker when it was built. Highest first:`),
        table(
          [
            { label: "user", value: (u) => userLink(u.user_id) },
            { label: "position", value: (u) => u.position + 1, num: true },
            { label: "score", value: (u) => fmt.num(u.score, 4), num: true },
          ],
          a.users,
        ),
      );
    } else {
      audience = card("Recommended to", el("p", { class: "muted" }, "This build ranked no audience sample (inspection.audience_users = 0)."));
    }
    content.replaceChildren(form, el("div", { class: "grid" }, meta, card(`Events per ${d.activity.bucket_s >= 604800 ? "week" : "day"}`, chartBox), ...neighbours, audience));
    const x = d.activity.counts.map((_, i) => d.activity.start_ts + i * d.activity.bucket_s);
    lineChart(chartBox, { x, series: [{ label: "events", values: d.activity.counts }], yLabel: "events" });
    setStatus(`Build ${d.model_version}`);
  };

  pages.drift = async function drift() {
    const params = new URLSearchParams(window.location.search);
    const form = contextForm(params, [{ name: "arm", label: "A/B arm", placeholder: "champion", size: 10 }]);
    const d = await getJSON(`${endpoint}${armQuery(params)}`);
    if (!d.live) {
      content.replaceChildren(form, el("p", { class: "error" }, d.problem || "no drift data"));
      setStatus("");
      return;
    }
    const live = d.live;
    const rows = Object.entries(live.features).concat([["score", live.score]]);
    const label = (n) => (n === "score" ? "ranker score" : n);
    rows.sort((a, b) => (b[1].psi ?? -1) - (a[1].psi ?? -1));
    const chartBox = el("div", { class: "chart" });
    const detailBox = el("div", {});
    const showDetail = (name, shift) => {
      const box = el("div", { class: "chart" });
      const labels = shift.reference_shares.map((_, i) => {
        if (i === shift.reference_shares.length - 1) return "missing";
        const lo = i === 0 ? "-inf" : fmt.num(shift.edges[i - 1], 3);
        const hi = i === shift.edges.length ? "+inf" : fmt.num(shift.edges[i], 3);
        return `(${lo}, ${hi}]`;
      });
      detailBox.replaceChildren(card(`Bins of ${name}`, el("p", { class: "small muted" }, "Share of each side per bin (edges at the training window's deciles)."), box));
      barChart(box, {
        names: labels,
        series: [
          { label: "training window", values: shift.reference_shares },
          { label: "live", values: shift.live_shares || shift.reference_shares.map(() => null) },
        ],
        xLabel: "share",
      });
    };
    const tbl = table(
      [
        { label: "variable", value: ([n]) => label(n) },
        { label: "live PSI", value: ([, s]) => fmt.num(s.psi, 4), num: true },
        { label: "flag", value: ([, s]) => flagTag(s.flag) },
        { label: "report PSI", value: ([n]) => (d.report_psi && n in d.report_psi ? fmt.num(d.report_psi[n], 4) : "–"), num: true },
        { label: "training mean", value: ([, s]) => fmt.num(s.reference_mean, 3), num: true },
        { label: "missing (train / live)", value: ([, s]) => `${fmt.pct(s.reference_missing)} / ${fmt.pct(s.live_missing)}`, num: true },
      ],
      rows,
      ([n, s]) => ({ class: "clickable", on: { click: () => showDetail(label(n), s) } }),
    );
    content.replaceChildren(
      form,
      el(
        "div",
        { class: "grid" },
        wideCard(
          "Population stability: training window vs live requests",
          el(
            "p",
            { class: "small muted" },
            `Reference: ${live.reference} (${fmt.num(live.reference_requests)} requests, ${fmt.num(live.reference_rows)} rows). Live: ${fmt.num(live.live_requests)} sampled requests (${fmt.num(live.live_rows)} rows) served by build ${d.model_version}. Thresholds of the evaluation report: below ${live.moderate} stable, up to ${live.major} moderate, above major.`,
          ),
          chartBox,
        ),
        wideCard("Per variable (click a row for its bins)", tbl),
      ),
      detailBox,
    );
    const withPsi = rows.filter(([, s]) => s.psi !== null);
    if (withPsi.length) {
      barChart(chartBox, {
        names: withPsi.map(([n]) => label(n)),
        series: [{ label: "PSI", values: withPsi.map(([, s]) => s.psi) }],
        xLabel: "PSI",
        thresholds: [
          { label: `moderate (${live.moderate})`, value: live.moderate, color: "#c27a00" },
          { label: `major (${live.major})`, value: live.major, color: "#c8372d" },
        ],
      });
    } else {
      chartBox.append(el("p", { class: "muted" }, "No live request sampled yet: PSI appears once the API has ranked some requests."));
    }
    setStatus(`Build ${d.model_version}`);
  };

  // ------------------------------------------------------------------ start and navigation

  async function run() {
    window.clearTimeout(refreshTimer);
    const token = ++navToken;
    try {
      await pages[page]();
    } catch (error) {
      if (!(error instanceof Stale) && token === navToken) setStatus(error.message, true);
    }
  }

  // Show the page at `target` in this document; any other address is loaded as usual.
  function navigate(target, push = true) {
    const url = new URL(target, window.location.href);
    const entry = PAGES[url.pathname];
    if (url.origin !== window.location.origin || !entry || !pages[entry.page]) {
      window.location.assign(url.href);
      return;
    }
    if (push) window.history.pushState(null, "", url.pathname + url.search);
    page = entry.page;
    endpoint = entry.endpoint;
    Object.assign(document.body.dataset, { page, endpoint });
    document.title = `recsys · ${entry.title}`;
    document.querySelector("main h1").textContent = entry.title;
    for (const link of document.querySelectorAll("header nav a")) {
      if (link.getAttribute("href") === url.pathname) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    content.replaceChildren();
    liveChart = null;
    setStatus("Loading…");
    window.scrollTo(0, 0);
    run();
  }

  // Links to the dashboard's pages and its GET forms (the inspector's, the item page's) stay in
  // this document; a click with a modifier key (a new tab) is left to the browser.
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = event.target instanceof Element ? event.target.closest("a[href]") : null;
    if (!link || link.target || link.hasAttribute("download")) return;
    const url = new URL(link.href);
    if (url.origin !== window.location.origin || !(url.pathname in PAGES)) return;
    event.preventDefault();
    navigate(url);
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "get") return;
    const url = new URL(form.action || window.location.href);
    if (url.origin !== window.location.origin || !(url.pathname in PAGES)) return;
    event.preventDefault();
    url.search = new URLSearchParams(new FormData(form)).toString();
    navigate(url);
  });
  window.addEventListener("popstate", () => navigate(window.location.href, false));

  const signOut = document.getElementById("sign-out");
  if (signOut) {
    signOut.addEventListener("click", async () => {
      try {
        await fetch("/ui/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken() } });
      } finally {
        window.location.assign("/ui/login");
      }
    });
  }

  if (pages[page]) run();
  window.recsysUi = { postJSON, getJSON, navigate };
})();

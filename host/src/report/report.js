"use strict";
(function () {
  // Errors go into the page too, so a headless check (and a person) sees them.
  function showError(msg) {
    var box = document.getElementById("errors");
    box.hidden = false;
    box.textContent += msg + "\n";
  }
  window.addEventListener("error", function (e) { showError("error: " + e.message); });

  var PAGE = 50;
  var data = JSON.parse(document.getElementById("data").textContent);
  var app = document.getElementById("app");
  var kind = document.body.getAttribute("data-kind");

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      if (c != null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }
  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) e.textContent = text;
    return e;
  }
  function fmt(n, digits) {
    if (n == null || !isFinite(n)) return "–";
    return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits == null ? 0 : digits });
  }
  function bytes(n) {
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return fmt(n, 1) + " " + u[i];
  }
  function card(label, value, id, cls) {
    return el("div", { cls: "card " + (cls || "") }, [
      el("div", { cls: "v", id: id, text: value }),
      el("div", { cls: "l", text: label })]);
  }
  function bar(used, total, label) {
    var pct = total > 0 ? Math.min(100, 100 * used / total) : 0;
    var span = el("span", { cls: pct >= 100 ? "full" : pct >= 80 ? "hot" : "" });
    span.style.width = pct.toFixed(1) + "%";
    return el("div", { cls: "bar", title: label }, [span, el("em", { text: fmt(pct) + "%" })]);
  }
  function section(title, wide, id) {
    var s = el("section", { cls: wide ? "wide" : "", id: id }, [el("h2", { text: title })]);
    app.appendChild(s);
    return s;
  }

  // A searchable, paginated table: `rows` are data items, `cols` [{title, cell(item), num}],
  // `text(item)` what the search box matches.
  function table(parent, rows, cols, text, id) {
    var page = 0, query = "";
    var input = el("input", { type: "search", placeholder: "search…", id: id + "-search" });
    var info = el("span", { cls: "muted", id: id + "-info" });
    var prev = el("button", { text: "‹ prev" }), next = el("button", { text: "next ›" });
    parent.appendChild(el("div", { cls: "tools" }, [input, prev, next, info]));
    var tbody = el("tbody");
    parent.appendChild(el("table", { id: id }, [
      el("thead", {}, [el("tr", {}, cols.map(function (c) { return el("th", { text: c.title }); }))]),
      tbody]));
    function matching() {
      if (!query) return rows;
      var q = query.toLowerCase();
      return rows.filter(function (r) { return text(r).toLowerCase().indexOf(q) >= 0; });
    }
    function draw() {
      var m = matching();
      var pages = Math.max(1, Math.ceil(m.length / PAGE));
      page = Math.min(page, pages - 1);
      tbody.textContent = "";
      m.slice(page * PAGE, page * PAGE + PAGE).forEach(function (r) {
        tbody.appendChild(el("tr", {}, cols.map(function (c) {
          var v = c.cell(r);
          return el("td", { cls: c.num ? "num" : "" }, [typeof v === "string" ? v : v]);
        })));
      });
      info.textContent = m.length + " of " + rows.length + " · page " + (page + 1) + "/" + pages;
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
    }
    input.addEventListener("input", function () { query = input.value; page = 0; draw(); });
    prev.addEventListener("click", function () { page--; draw(); });
    next.addEventListener("click", function () { page++; draw(); });
    draw();
  }

  // A bar chart: `bars` [{label, value}].
  function barChart(parent, bars, yLabel, id, width) {
    var W = width || 560, H = 200, L = 44, B = 36, T = 10;
    var max = Math.max.apply(null, bars.map(function (b) { return b.value; }).concat([1]));
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", id: id, role: "img" });
    var bw = (W - L - 10) / Math.max(1, bars.length);
    s.appendChild(svg("line", { x1: L, y1: H - B, x2: W - 5, y2: H - B, stroke: "#ccd" }));
    s.appendChild(svg("text", { x: 4, y: T + 8 }, fmt(max)));
    s.appendChild(svg("text", { x: 4, y: H - B }, "0"));
    s.appendChild(svg("text", { x: 4, y: H - 4 }, yLabel));
    bars.forEach(function (b, i) {
      var h = (H - B - T) * b.value / max;
      var r = svg("rect", { x: L + i * bw + 1, y: H - B - h, width: Math.max(1, bw - 2), height: h,
        fill: "#6d8ce8", rx: 2 });
      r.appendChild(svg("title", {}, b.label + ": " + fmt(b.value, 1)));
      s.appendChild(r);
      if (bars.length <= 16 || i % Math.ceil(bars.length / 16) === 0) {
        s.appendChild(svg("text", { x: L + i * bw + bw / 2, y: H - B + 14, "text-anchor": "middle" },
          b.label));
      }
    });
    parent.appendChild(s);
  }

  // A step line of (x, y) points.
  function lineChart(parent, points, xLabel, yLabel, id) {
    var W = 560, H = 200, L = 44, B = 30, T = 10, R = 10;
    var maxX = Math.max.apply(null, points.map(function (p) { return p[0]; }).concat([1e-3]));
    var maxY = Math.max.apply(null, points.map(function (p) { return p[1]; }).concat([1]));
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, width: "100%", id: id, role: "img" });
    function X(x) { return L + (W - L - R) * x / maxX; }
    function Y(y) { return H - B - (H - B - T) * y / maxY; }
    s.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#ccd" }));
    s.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#ccd" }));
    var d = "M" + X(0) + "," + Y(0);
    points.forEach(function (p) { d += " L" + X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1); });
    s.appendChild(svg("path", { d: d, fill: "none", stroke: "#3559c7", "stroke-width": 2 }));
    s.appendChild(svg("text", { x: 4, y: T + 8 }, fmt(maxY)));
    s.appendChild(svg("text", { x: 4, y: H - B }, "0"));
    s.appendChild(svg("text", { x: W - R, y: H - 8, "text-anchor": "end" }, fmt(maxX, 3) + " " + xLabel));
    s.appendChild(svg("text", { x: L + 4, y: H - 8 }, yLabel));
    parent.appendChild(s);
  }

  // Cumulative (upper bound seconds, count) buckets to per-bucket bars in ms.
  function latencyBars(buckets) {
    var bars = [], below = 0;
    buckets.forEach(function (b) {
      var le = b[0] == null ? Infinity : b[0];
      var label = isFinite(le) ? "≤" + fmt(le * 1000, le < 0.01 ? 1 : 0) : "more";
      bars.push({ label: label, value: b[1] - below });
      below = b[1];
    });
    // Trailing empty buckets say nothing.
    while (bars.length > 1 && bars[bars.length - 1].value === 0) bars.pop();
    return bars;
  }

  function simulate(d) {
    var rows = d.rows, bound = rows.filter(function (r) { return r.node; });
    var times = bound.map(function (r) { return r.boundAfterSeconds; })
      .filter(function (t) { return t != null; }).sort(function (a, b) { return a - b; });
    var placing = times.length ? times[times.length - 1] : null;
    document.getElementById("subtitle").textContent = "run " + d.ending + " after " +
      fmt(d.elapsedSeconds, 3) + " s · " + d.nodes.length + " nodes";
    var retrying = rows.filter(function (r) { return r.retrying && !r.node; });
    app.appendChild(el("div", { cls: "cards" }, [
      card("pods", fmt(rows.length), "pods-total"),
      card("bound", fmt(bound.length), "pods-bound", "ok"),
      card("not bound", fmt(rows.length - bound.length), "pods-unbound",
        rows.length > bound.length ? "bad" : ""),
      card("still retrying", fmt(retrying.length), "pods-retrying", retrying.length ? "bad" : ""),
      card("placed in (s)", fmt(placing, 3), "placing-seconds"),
      card("pods/s while placing", placing ? fmt(bound.length / Math.max(placing, 1e-3)) : "–",
        "pods-per-second"),
      card("settled after (s)", fmt(d.elapsedSeconds, 3), "elapsed-seconds"),
      card("nodes", fmt(d.nodes.length), "node-count")]));

    // Pending pods grouped by reason.
    var pend = section("Pods not bound, by reason", true, "pending");
    var groups = {};
    rows.filter(function (r) { return !r.node; }).forEach(function (r) {
      var k = r.reason || "<pending>";
      (groups[k] = groups[k] || []).push(r);
    });
    var keys = Object.keys(groups).sort(function (a, b) { return groups[b].length - groups[a].length; });
    if (!keys.length) pend.appendChild(el("p", { cls: "muted", text: "Every pod is bound." }));
    keys.forEach(function (k) {
      var pods = groups[k];
      var first = k.split("\n")[0];
      var short = first.length > 160 ? first.slice(0, 159) + "…" : first;
      var shown = pods.slice(0, 200).map(function (p) {
        return p.pod + " (" + p.attempts + " attempts" + (p.retrying ? ", retrying" : "") + ")";
      }).join(", ") + (pods.length > 200 ? ", … " + (pods.length - 200) + " more" : "");
      pend.appendChild(el("details", { cls: "reason-group" }, [
        el("summary", {}, [el("span", { cls: "count", text: String(pods.length) }), short,
          pods.some(function (p) { return p.retrying; }) ? el("span", { cls: "badge retry", text: "retrying" }) : null]),
        el("pre", { text: k }),
        el("div", { cls: "pods", text: shown })]));
    });

    // Binds over time.
    var tl = section("Binds over time", false, "timeline");
    if (times.length) {
      lineChart(tl, times.map(function (t, i) { return [t, i + 1]; }), "s", "pods bound", "bind-chart");
    } else {
      tl.appendChild(el("p", { cls: "muted", text: "No pod was bound." }));
    }
    var lat = section("Scheduling attempt latency (ms)", false, "latency");
    var lb = latencyBars(d.attemptLatency || []);
    var attempts = (d.attemptLatency || []).length ? d.attemptLatency[d.attemptLatency.length - 1][1] : 0;
    lat.appendChild(el("p", { cls: "muted" }, ["attempts: ", el("span", { id: "attempt-count", text: String(attempts) })]));
    barChart(lat, lb, "attempts", "latency-chart");

    // Nodes: a utilisation histogram (all nodes at once), then the searchable table.
    var ns = section("Nodes", true, "nodes");
    var hist = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    d.nodes.forEach(function (n) {
      var u = n.cpuAllocatable > 0 ? n.cpuRequested / n.cpuAllocatable : 0;
      hist[Math.min(9, Math.floor(u * 10))]++;
    });
    ns.appendChild(el("p", { cls: "muted", text: "Nodes by requested CPU (% of allocatable)" }));
    barChart(ns, hist.map(function (v, i) { return { label: i * 10 + "–" + (i + 1) * 10 + "%", value: v }; }),
      "nodes", "cpu-histogram", 1200);
    var nodes = d.nodes.slice().sort(function (a, b) {
      return b.pods.length - a.pods.length || (a.name < b.name ? -1 : 1);
    });
    table(ns, nodes, [
      { title: "node", cell: function (n) { return n.name; } },
      { title: "pods", num: true, cell: function (n) { return n.pods.length + " / " + n.podsAllocatable; } },
      { title: "pod slots", cell: function (n) { return bar(n.pods.length, n.podsAllocatable, "pods"); } },
      { title: "cpu", cell: function (n) {
        return bar(n.cpuRequested, n.cpuAllocatable, fmt(n.cpuRequested) + "m of " + fmt(n.cpuAllocatable) + "m"); } },
      { title: "memory", cell: function (n) {
        return bar(n.memoryRequested, n.memoryAllocatable, bytes(n.memoryRequested) + " of " + bytes(n.memoryAllocatable)); } },
      { title: "placed pods", cell: function (n) {
        var t = n.pods.join(", ");
        return el("div", { cls: "pods", title: t, text: t || "–" }); } }
    ], function (n) { return n.name + " " + n.pods.join(" "); }, "node-table");

    // DRA devices.
    if (d.devices.length) {
      var ds = section("DRA devices", true, "devices");
      var held = d.devices.filter(function (x) { return x.claim; }).length;
      ds.appendChild(el("p", { cls: "muted" }, [el("span", { id: "devices-held", text: String(held) }),
        " of " + d.devices.length + " devices allocated"]));
      table(ds, d.devices, [
        { title: "node", cell: function (x) { return x.node || "–"; } },
        { title: "device", cell: function (x) { return x.device; } },
        { title: "claim", cell: function (x) {
          if (!x.claim) return el("span", { cls: "muted", text: "free" });
          return el("span", {}, [x.claim, x.reservedFor.length > 1 ?
            el("span", { cls: "badge shared", text: "shared by " + x.reservedFor.length }) : null]); } },
        { title: "reserved for", cell: function (x) { return x.reservedFor.join(", ") || "–"; } }
      ], function (x) { return [x.node, x.device, x.claim || "free"].concat(x.reservedFor).join(" "); },
      "device-table");
    }

    var ps = section("All pods", true, "pods");
    table(ps, rows, [
      { title: "pod", cell: function (r) { return r.pod; } },
      { title: "node or reason", cell: function (r) {
        if (r.node) return r.node;
        var first = (r.reason || "<pending>").split("\n")[0];
        return el("span", { title: r.reason || "", text: first.length > 140 ? first.slice(0, 139) + "…" : first }); } },
      { title: "attempts", num: true, cell: function (r) { return String(r.attempts); } },
      { title: "bound after (s)", num: true, cell: function (r) { return fmt(r.boundAfterSeconds, 3); } }
    ], function (r) { return r.pod + " " + (r.node || r.reason || ""); }, "pod-table");
  }

  function bench(d) {
    document.getElementById("subtitle").textContent = d.command;
    var runs = d.runs;
    app.appendChild(el("div", { cls: "cards" }, [card("runs", String(runs.length), "run-count")]));
    var s = section("Throughput (pods/s of the measured phase)", false, "throughput");
    barChart(s, runs.map(function (r) {
      return { label: r.spec.workload.replace("Scheduling", "") + " " + r.spec.mode, value: r.pods_per_second };
    }), "pods/s", "throughput-chart");
    var series = runs.filter(function (r) { return r.throughput && r.throughput.length; });
    var ot = section("Pods/s over time", false, "over-time");
    if (!series.length) ot.appendChild(el("p", { cls: "muted", text: "No run sampled its binds over time." }));
    series.forEach(function (r, i) {
      ot.appendChild(el("p", { cls: "muted", text: r.spec.workload + " (" + r.spec.mode + ")" }));
      lineChart(ot, r.throughput, "s", "pods/s", "over-time-" + i);
    });
    var t = section("Runs", true, "runs");
    table(t, runs, [
      { title: "workload", cell: function (r) { return r.spec.workload; } },
      { title: "mode", cell: function (r) { return r.spec.mode; } },
      { title: "bound", num: true, cell: function (r) { return r.bound + " / " + r.expected; } },
      { title: "pods/s", num: true, cell: function (r) { return fmt(r.pods_per_second); } },
      { title: "seconds", num: true, cell: function (r) { return fmt(r.seconds, 2); } },
      { title: "attempt p50 / p90 / p99 (ms)", num: true, cell: function (r) {
        return fmt(r.attempts.p50_ms, 1) + " / " + fmt(r.attempts.p90_ms, 1) + " / " + fmt(r.attempts.p99_ms, 1); } },
      { title: "peak RSS", num: true, cell: function (r) { return bytes(r.peak_rss_bytes); } }
    ], function (r) { return r.spec.workload + " " + r.spec.mode; }, "run-table");
  }

  app.textContent = "";
  try {
    if (kind === "bench") bench(data); else simulate(data);
    document.body.setAttribute("data-rendered", "true");
  } catch (e) {
    showError("error: " + (e && e.stack || e));
  }
})();

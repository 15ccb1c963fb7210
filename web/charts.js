// Chart helpers shared by the dashboard and the sweep report (inlined into both; uPlot is inlined before).
// Plain browser JavaScript: the pages must open with no build step and no network.
(function () {
  "use strict";

  var PALETTE = {
    blue: "#2563eb", orange: "#ea580c", green: "#16a34a", red: "#dc2626", purple: "#7c3aed",
    teal: "#0d9488", grey: "#6b7280", pink: "#db2777", amber: "#d97706", sky: "#0284c7",
  };
  /** Distinct colours for per-worker lines. */
  var SERIES = ["#2563eb", "#ea580c", "#16a34a", "#7c3aed", "#db2777", "#0d9488", "#d97706", "#0284c7", "#65a30d", "#9333ea", "#e11d48", "#4b5563"];

  function num(v) {
    if (v == null || !isFinite(v)) return "–";
    return Math.round(v).toLocaleString("en-US");
  }
  /** 12.3k, 1.20M: short enough for axis labels and tiles. */
  function si(v) {
    if (v == null || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(a >= 1e10 ? 1 : 2) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(a >= 1e7 ? 1 : 2) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    return a >= 10 || a === 0 ? String(Math.round(v)) : v.toFixed(a >= 1 ? 1 : 2);
  }
  function bytes(v) {
    if (v == null || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (a >= 1073741824) return (v / 1073741824).toFixed(1) + " GiB";
    if (a >= 1048576) return (v / 1048576).toFixed(a >= 104857600 ? 0 : 1) + " MiB";
    if (a >= 1024) return (v / 1024).toFixed(a >= 102400 ? 0 : 1) + " KiB";
    return Math.round(v) + " B";
  }
  function ms(v) {
    if (v == null || !isFinite(v)) return "–";
    return v === 0 ? "0" : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3);
  }
  function cores(v) {
    if (v == null || !isFinite(v)) return "–";
    return v.toFixed(2);
  }
  /** A plain decimal with about three significant digits. */
  function dec(v) {
    return ms(v);
  }
  var FORMATS = { num: num, si: si, bytes: bytes, ms: ms, cores: cores, dec: dec };

  /** Whole-second ticks for a clock axis (unix seconds): samples arrive once a second, never finer. */
  var CLOCK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  function pad2(n) { return n < 10 ? "0" + n : String(n); }
  function clock(t) {
    var d = new Date(t * 1000);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  function fmtOf(name) {
    return FORMATS[name] || si;
  }

  /**
   * Shades each round's span behind the series (failed rounds in red) and names it at the top, so a
   * time series across a whole sweep reads round by round.
   */
  function roundBands(bands) {
    return {
      hooks: {
        drawClear: [
          function (u) {
            var ctx = u.ctx;
            var top = u.bbox.top;
            var h = u.bbox.height;
            ctx.save();
            ctx.font = Math.round(10 * devicePixelRatio) + "px system-ui, sans-serif";
            ctx.textBaseline = "top";
            for (var i = 0; i < bands.length; i++) {
              var b = bands[i];
              var x0 = u.valToPos(b.start, "x", true);
              var x1 = u.valToPos(b.end, "x", true);
              if (x1 < u.bbox.left || x0 > u.bbox.left + u.bbox.width) continue;
              x0 = Math.max(x0, u.bbox.left);
              x1 = Math.min(x1, u.bbox.left + u.bbox.width);
              ctx.fillStyle = b.held ? (i % 2 ? "rgba(37,99,235,0.06)" : "rgba(37,99,235,0.11)") : "rgba(220,38,38,0.10)";
              ctx.fillRect(x0, top, x1 - x0, h);
              if (x1 - x0 > 14 * devicePixelRatio) {
                ctx.fillStyle = b.held ? "#475569" : "#b91c1c";
                ctx.fillText(b.label, x0 + 3 * devicePixelRatio, top + 2 * devicePixelRatio);
              }
            }
            ctx.restore();
          },
        ],
      },
    };
  }

  /**
   * A line chart. spec: { title, width, height, series: [{ label, color, dash, width, fill }], format
   * ('si' | 'bytes' | 'ms' | 'cores' | 'num'), log (log10 y), time (x in unix seconds), xLabel, bands }.
   */
  function lineChart(el, spec, data) {
    var f = fmtOf(spec.format);
    var series = [{ label: spec.time ? "time" : spec.xLabel || "s", value: function (u, v) { return v == null ? "–" : spec.time ? clock(v) : v.toFixed(0) + " s"; } }];
    for (var i = 0; i < spec.series.length; i++) {
      var s = spec.series[i];
      series.push({
        label: s.label,
        stroke: s.color,
        width: s.width || 1.5,
        dash: s.dash,
        fill: s.fill,
        spanGaps: false,
        points: { show: false },
        value: function (u, v) { return f(v); },
      });
    }
    var opts = {
      title: spec.title,
      width: spec.width,
      height: spec.height || 200,
      series: series,
      legend: { live: spec.liveLegend !== false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: !!spec.time },
        y: spec.log ? { distr: 3, log: 10 } : { range: function (u, min, max) { return [Math.min(0, min), max > 0 ? max * 1.08 : 1]; } },
      },
      axes: [
        spec.time
          ? { stroke: "#475569", grid: { stroke: "#e5e7eb", width: 1 }, ticks: { stroke: "#e5e7eb" }, space: 70, incrs: CLOCK_STEPS, values: function (u, splits) { return splits.map(clock); } }
          : { stroke: "#475569", grid: { stroke: "#e5e7eb", width: 1 }, ticks: { stroke: "#e5e7eb" }, values: function (u, splits) { return splits.map(function (v) { return v + " s"; }); } },
        { stroke: "#475569", size: spec.format === "bytes" ? 72 : 56, grid: { stroke: "#e5e7eb", width: 1 }, ticks: { stroke: "#e5e7eb" }, values: function (u, splits) { return splits.map(function (v) { return f(v); }); } },
      ],
      plugins: spec.bands ? [roundBands(spec.bands)] : [],
    };
    return new uPlot(opts, data, el);
  }

  /**
   * Grouped bars, one group per category. spec: { title, width, height, labels: ['R1', ...], series:
   * [{ label, color }], format, log }. data: one array of values per series, each as long as labels.
   */
  function barChart(el, spec, values) {
    var f = fmtOf(spec.format);
    // A series may sit on a second scale (right axis) when its unit differs, e.g. KiB beside MiB.
    var second = spec.series.filter(function (s) { return s.scale === "y2"; })[0];
    var f2 = second ? fmtOf(second.format || spec.format) : f;
    var n = spec.series.length;
    var xs = spec.labels.map(function (_, i) { return i + 1; });
    var group = 0.8;
    var each = group / n;
    var series = [{ label: "round", value: function (u, v) { return v == null ? "–" : spec.labels[v - 1] || ""; } }];
    var data = [xs];
    for (var i = 0; i < n; i++) {
      var s = spec.series[i];
      // Shift each series within its group: bars drawn centred on x + offset.
      var offset = -group / 2 + each * (i + 0.5);
      data.push(values[i].map(function (v) { return spec.log && !(v > 0) ? null : v; }));
      series.push({
        label: s.label,
        stroke: s.color,
        fill: s.color + "cc",
        width: 0,
        scale: s.scale === "y2" ? "y2" : "y",
        points: { show: false },
        value: s.scale === "y2" ? function (u, v) { return f2(v); } : function (u, v) { return f(v); },
        paths: barsPath(each, offset),
      });
    }
    var linear = { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } };
    var scales = {
      x: { time: false, range: function () { return [0.5, xs.length + 0.5]; } },
      y: spec.log ? { distr: 3, log: 10 } : linear,
    };
    var axes = [
      {
        stroke: "#475569", grid: { show: false }, ticks: { show: false },
        splits: function () { return xs; },
        values: function (u, splits) { return splits.map(function (v) { return spec.labels[v - 1] || ""; }); },
      },
      { stroke: "#475569", size: 56, grid: { stroke: "#e5e7eb", width: 1 }, ticks: { stroke: "#e5e7eb" }, values: function (u, splits) { return splits.map(function (v) { return f(v); }); } },
    ];
    if (second) {
      scales.y2 = linear;
      axes.push({ scale: "y2", side: 1, stroke: second.color, size: 50, grid: { show: false }, ticks: { stroke: "#e5e7eb" }, values: function (u, splits) { return splits.map(function (v) { return f2(v); }); } });
    }
    var opts = {
      title: spec.title,
      width: spec.width,
      height: spec.height || 200,
      series: series,
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: scales,
      axes: axes,
    };
    return new uPlot(opts, data, el);
  }

  /** A path builder drawing one bar per point, `width` x-units wide, centred at x + offset. */
  function barsPath(width, offset) {
    return function (u, seriesIdx, idx0, idx1) {
      var xs = u.data[0];
      var ys = u.data[seriesIdx];
      var path = new Path2D();
      var key = u.series[seriesIdx].scale || "y";
      var scaleY = u.scales[key];
      var base = scaleY.distr === 3 ? scaleY.min : 0;
      var y0 = u.valToPos(base, key, true);
      for (var i = idx0; i <= idx1; i++) {
        var v = ys[i];
        if (v == null) continue;
        var left = u.valToPos(xs[i] + offset - width / 2, "x", true);
        var right = u.valToPos(xs[i] + offset + width / 2, "x", true);
        var y = u.valToPos(v, key, true);
        path.rect(left, Math.min(y, y0), Math.max(1, right - left - 1), Math.abs(y0 - y));
      }
      return { stroke: path, fill: path };
    };
  }

  /** A fixed-length ring of numbers: push is O(1) and never allocates; toArray gives oldest first. */
  function Ring(n) {
    this.buf = new Float64Array(n);
    this.n = n;
    this.len = 0;
    this.head = 0;
  }
  Ring.prototype.push = function (v) {
    this.buf[this.head] = v == null ? NaN : v;
    this.head = (this.head + 1) % this.n;
    if (this.len < this.n) this.len++;
  };
  Ring.prototype.toArray = function () {
    var out = new Array(this.len);
    var start = (this.head - this.len + this.n) % this.n;
    for (var i = 0; i < this.len; i++) {
      var v = this.buf[(start + i) % this.n];
      out[i] = v !== v ? null : v;
    }
    return out;
  };
  Ring.prototype.last = function () {
    if (this.len === 0) return null;
    var v = this.buf[(this.head - 1 + this.n) % this.n];
    return v !== v ? null : v;
  };

  window.WsCharts = { PALETTE: PALETTE, SERIES: SERIES, fmt: FORMATS, lineChart: lineChart, barChart: barChart, Ring: Ring };
})();

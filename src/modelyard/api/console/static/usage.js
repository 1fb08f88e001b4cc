// The usage page's chart: uPlot draws one line per group, per UTC day, from the numbers the
// server put in #usage-data (the same /admin/usage rows as the tables). The "Chart" select
// switches the measure in place and keeps it in the address, so a reload shows the same chart.
(() => {
  const source = document.getElementById("usage-data");
  const target = document.getElementById("usage-chart");
  if (!source || !target || typeof uPlot === "undefined") return;
  const data = JSON.parse(source.textContent);
  const picker = document.getElementById("usage-measure");
  const title = document.getElementById("usage-chart-measure");
  const COLORS = [
    "#2456c6", "#c2410c", "#1e7a3c", "#8a3ffc", "#b3261e",
    "#0e7490", "#a16207", "#be185d", "#4d7c0f", "#5b6673",
  ];
  const DAY_S = 86400;
  const whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const tenth = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  const FORMATS = {
    cost_usd: (v) => "$" + v.toFixed(6),
    error_rate: (v) => (v * 100).toFixed(2) + "%",
    latency_ms_avg: (v) => tenth.format(v) + " ms",
  };
  const format = (measure, v) => (v == null ? "\u2013" : (FORMATS[measure] || whole.format)(v));
  // Counted measures step by whole numbers on the y axis; days step by whole days.
  const COUNTED = new Set(["requests", "prompt_tokens", "completion_tokens", "errors"]);
  const WHOLE_STEPS = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8]
    .flatMap((p) => [p, 2 * p, 5 * p]);
  const DAY_STEPS = [1, 2, 7, 14, 28, 56, 91, 182].map((n) => n * DAY_S);
  const dayText = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  let chart = null;

  function size() {
    const narrow = window.innerWidth < 640;
    return { width: Math.max(target.clientWidth - 16, 200), height: narrow ? 220 : 300 };
  }

  function draw(measure) {
    if (chart) chart.destroy();
    const options = {
      ...size(),
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),
      scales: {
        x: { time: true, range: (u, min, max) => (min === max ? [min - DAY_S / 2, max + DAY_S / 2] : [min, max]) },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [
        { incrs: DAY_STEPS, values: (u, ticks) => ticks.map((ts) => dayText.format(new Date(ts * 1e3))) },
        {
          size: 90,
          ...(COUNTED.has(measure) ? { incrs: WHOLE_STEPS } : {}),
          values: (u, ticks) => ticks.map((v) => format(measure, v)),
        },
      ],
      series: [
        // Pointing at no day, the legend shows the whole range's numbers (the totals table's).
        { label: "Day", value: (u, ts) => (ts == null ? "whole range" : dayText.format(new Date(ts * 1e3))) },
        ...data.series.map((group, n) => ({
          label: group.label,
          stroke: COLORS[n % COLORS.length],
          width: 2,
          points: { show: true, size: 6 },
          value: (u, v, s, idx) => format(measure, idx == null ? group.totals[measure] : v),
        })),
      ],
    };
    const columns = [data.days, ...data.series.map((group) => group.values[measure])];
    chart = new uPlot(options, columns, target);
  }

  draw(data.measure);
  if (picker) {
    picker.addEventListener("change", () => {
      const measure = data.measures.find((m) => m.key === picker.value);
      if (!measure) return;
      draw(measure.key);
      if (title) title.textContent = measure.label;
      const address = new URL(window.location.href);
      address.searchParams.set("measure", measure.key);
      window.history.replaceState(null, "", address);
    });
  }
  new ResizeObserver(() => {
    if (chart) chart.setSize(size());
  }).observe(target);
})();

// The quality-vs-cost plot of an evaluation run: one uPlot scatter series per model (uPlot's
// facet mode), each point drawn with its 95% interval and its name; the Pareto front filled.
// The numbers come from the page (#eval-plot-data), computed by the server as the report does.
(() => {
  const holder = document.getElementById("eval-plot");
  const source = document.getElementById("eval-plot-data");
  if (!holder || !source || typeof uPlot === "undefined") return;
  const plot = JSON.parse(source.textContent);
  const points = plot.points;
  if (!points.length) {
    holder.textContent = "No model has numbers to plot.";
    return;
  }
  const FRONT = "#1f6fb4";
  const OTHER = "#7a7a7a";

  // A little room around the points, and never a zero-width range (one model, or all free).
  const xs = points.map((p) => p.x);
  let low = Math.min(...xs);
  let high = Math.max(...xs);
  const spread = high - low || Math.abs(high) || 1;
  low -= spread * 0.08;
  high += spread * 0.25;

  const drawPoint = (u, seriesIdx) => {
    const point = points[seriesIdx - 1];
    const ratio = uPlot.pxRatio;
    uPlot.orient(u, seriesIdx, (series, dataX, dataY, scaleX, scaleY, valToPosX, valToPosY,
      xOff, yOff, xDim, yDim) => {
      const ctx = u.ctx;
      const cx = valToPosX(point.x, scaleX, xDim, xOff);
      const cy = valToPosY(point.quality, scaleY, yDim, yOff);
      const top = valToPosY(point.high, scaleY, yDim, yOff);
      const bottom = valToPosY(point.low, scaleY, yDim, yOff);
      const colour = point.front ? FRONT : OTHER;
      const cap = 4 * ratio;
      ctx.save();
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      ctx.lineWidth = 1.5 * ratio;
      ctx.beginPath();
      ctx.moveTo(cx, top);
      ctx.lineTo(cx, bottom);
      ctx.moveTo(cx - cap, top);
      ctx.lineTo(cx + cap, top);
      ctx.moveTo(cx - cap, bottom);
      ctx.lineTo(cx + cap, bottom);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(cx, cy, 5 * ratio, 0, 2 * Math.PI);
      if (point.front) ctx.fill();
      else {
        ctx.fillStyle = "#ffffff";
        ctx.fill();
        ctx.stroke();
      }
      ctx.fillStyle = "#1d232b";
      ctx.font = `${12 * ratio}px system-ui, sans-serif`;
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      ctx.fillText(point.label, cx + 8 * ratio, cy - 4 * ratio);
      ctx.restore();
    });
    return null;
  };

  // As few decimals as tell the ticks apart: $0.1, $0.25, $1.10.
  const dollars = (value) => "$" + Number(value.toPrecision(6)).toString();

  const options = {
    mode: 2,
    width: holder.clientWidth || 600,
    height: 320,
    cursor: { show: false, drag: { x: false, y: false } },
    legend: { live: false },
    scales: {
      x: { time: false, auto: false, range: [low, high] },
      y: { auto: false, range: [-0.02, 1.05] },
    },
    axes: [
      { label: plot.x_label, values: (u, ticks) => ticks.map(dollars), size: 40 },
      { label: plot.y_label, values: (u, ticks) => ticks.map((t) => t.toFixed(1)), size: 50 },
    ],
    series: [
      {},
      ...points.map((point) => ({
        label: point.front ? `${point.label} (Pareto front)` : point.label,
        stroke: point.front ? FRONT : OTHER,
        fill: point.front ? FRONT : OTHER,
        paths: drawPoint,
        points: { show: false },
        facets: [
          { scale: "x", auto: false },
          { scale: "y", auto: false },
        ],
      })),
    ],
  };
  const data = [null, ...points.map((point) => [[point.x], [point.quality]])];
  const chart = new uPlot(options, data, holder);

  // Follow the page's width (a phone turned, a window resized).
  new ResizeObserver(() => {
    const width = holder.clientWidth;
    if (width && width !== chart.width) chart.setSize({ width, height: 320 });
  }).observe(holder);
})();

// Small SVG charts drawn by the page: a histogram of fixed buckets (engine/stats.py), and a
// sparkline of recent values.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  if (text !== null) element.textContent = text;
  return element;
}

/**
 * Bars of a histogram snapshot {upper_bounds, bucket_counts, count}: one bar per bucket
 * from the first to the last non-empty one, plus "more" for values above the last bound.
 * `formatBound` labels a bucket by its upper bound.
 */
export function histogramChart(histogram, formatBound, { width = 260, height = 80 } = {}) {
  const counts = [...histogram.bucket_counts];
  const labels = histogram.upper_bounds.map((bound) => `≤${formatBound(bound)}`);
  const above = histogram.count - counts.reduce((sum, count) => sum + count, 0);
  counts.push(above);
  labels.push(`>${formatBound(histogram.upper_bounds.at(-1))}`);
  let first = counts.findIndex((count) => count > 0);
  let last = counts.length - 1 - [...counts].reverse().findIndex((count) => count > 0);
  const chart = svg("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`,
                             role: "img" });
  if (first === -1) {
    chart.append(svg("text", { x: 4, y: height / 2 }, "no observations yet"));
    return chart;
  }
  // At least 4 bars, so one busy bucket still reads as a distribution.
  while (last - first < 3 && (first > 0 || last < counts.length - 1)) {
    if (first > 0) first -= 1;
    if (last - first < 3 && last < counts.length - 1) last += 1;
  }
  const shown = counts.slice(first, last + 1);
  const peak = Math.max(...shown);
  const barWidth = width / shown.length;
  const plotHeight = height - 16;
  shown.forEach((count, index) => {
    const barHeight = peak ? Math.max(count ? 1 : 0, (count / peak) * (plotHeight - 10)) : 0;
    const x = index * barWidth;
    const bar = svg("rect", { class: "b", x: x + 1, y: plotHeight - barHeight,
                              width: Math.max(1, barWidth - 2), height: barHeight });
    bar.append(svg("title", {}, `${labels[first + index]}: ${count}`));
    chart.append(bar);
    if (count) chart.append(svg("text", { x: x + 2, y: plotHeight - barHeight - 2 }, count));
    if (shown.length <= 8 || index % 2 === 0) {
      chart.append(svg("text", { x: x + 1, y: height - 3 }, labels[first + index]));
    }
  });
  return chart;
}

/** A line through the last values (oldest first), scaled to its own range. */
export function sparkline(values, { width = 520, height = 32 } = {}) {
  const chart = svg("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}` });
  if (values.length < 2) return chart;
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = high - low || 1;
  const step = width / (values.length - 1);
  const points = values.map((value, index) =>
    `${(index * step).toFixed(1)},${(height - 2 - ((value - low) / span) * (height - 4)).toFixed(1)}`);
  chart.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: "#2458d3",
                                 "stroke-width": 1.5 }));
  return chart;
}

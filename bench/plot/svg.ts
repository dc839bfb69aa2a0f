/**
 * Hand-written SVG charts for benchmark results: no browser, no dependency. Two kinds:
 * box plots (side-by-side distributions per group, e.g. per datacenter, multi vs single leader)
 * and line charts over time with shaded windows (e.g. an outage).
 */

export interface BoxStats {
  /** Percentiles p1, p25, p50, p75, p99 of the samples (whiskers at p1 and p99). */
  p1: number;
  p25: number;
  p50: number;
  p75: number;
  p99: number;
}

/** Box statistics of ascending samples (NaN everywhere for none). */
export function boxStats(sorted: readonly number[]): BoxStats {
  const at = (p: number): number => {
    if (sorted.length === 0) return NaN;
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return sorted[i] as number;
  };
  return { p1: at(1), p25: at(25), p50: at(50), p75: at(75), p99: at(99) };
}

export interface BoxGroup {
  /** Label under the group (e.g. a datacenter). */
  label: string;
  /** One box per series, in the order of `series`. */
  boxes: BoxStats[];
}

export interface BoxChart {
  title: string;
  yLabel: string;
  /** Series names (e.g. 'multi-leader', 'single-leader'), one color each. */
  series: string[];
  groups: BoxGroup[];
  /** Logarithmic y axis (latencies across 1 ms to 300 ms). */
  logY?: boolean;
}

export interface LineSeries {
  name: string;
  /** [x, y] points, x ascending. */
  points: [number, number][];
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: LineSeries[];
  /** x ranges to shade, with a label (e.g. the outage). */
  shaded?: { from: number; to: number; label: string }[];
  logY?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
const W = 720;
const H = 400;
const M = { top: 40, right: 160, bottom: 50, left: 70 };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const n = (v: number): string => (Math.round(v * 10) / 10).toString();

/** Round tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** e;
        if (v >= lo && v <= hi) out.push(v);
      }
    }
    return out;
  }
  const span = hi - lo || 1;
  const raw = span / 6;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function scale(lo: number, hi: number, a: number, b: number, log: boolean): (v: number) => number {
  if (log) {
    const l0 = Math.log10(lo);
    const l1 = Math.log10(hi);
    return (v) => a + ((Math.log10(Math.max(v, lo)) - l0) / (l1 - l0 || 1)) * (b - a);
  }
  return (v) => a + ((v - lo) / (hi - lo || 1)) * (b - a);
}

function frame(title: string, xLabel: string, yLabel: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - M.right / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
    `<text x="${(M.left + W - M.right) / 2}" y="${H - 10}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(16 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

function yAxis(lo: number, hi: number, log: boolean, y: (v: number) => number): string[] {
  const out: string[] = [];
  for (const t of ticks(lo, hi, log)) {
    out.push(
      `<line x1="${M.left}" x2="${W - M.right}" y1="${n(y(t))}" y2="${n(y(t))}" stroke="#e5e5e5"/>`,
      `<text x="${M.left - 6}" y="${n(y(t) + 4)}" text-anchor="end">${t}</text>`,
    );
  }
  out.push(`<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${H - M.bottom}" stroke="black"/>`);
  return out;
}

function legend(names: string[]): string[] {
  return names.flatMap((name, i) => [
    `<rect x="${W - M.right + 14}" y="${M.top + i * 20}" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`,
    `<text x="${W - M.right + 32}" y="${M.top + i * 20 + 10}">${esc(name)}</text>`,
  ]);
}

function yRange(values: number[], log: boolean): [number, number] {
  const finite = values.filter((v) => Number.isFinite(v) && (!log || v > 0));
  if (finite.length === 0) return log ? [1, 10] : [0, 1];
  const max = Math.max(...finite);
  if (log) return [10 ** Math.floor(Math.log10(Math.min(...finite))), 10 ** Math.ceil(Math.log10(max))];
  return [0, max * 1.1 || 1];
}

/** Box-and-whisker plots, one cluster per group, one box per series (whiskers p1..p99). */
export function boxChartSvg(c: BoxChart): string {
  const log = c.logY === true;
  const all = c.groups.flatMap((g) => g.boxes.flatMap((b) => [b.p1, b.p99]));
  const [lo, hi] = yRange(all, log);
  const y = scale(lo, hi, H - M.bottom, M.top, log);
  const body = yAxis(lo, hi, log, y);
  const groupW = (W - M.left - M.right) / Math.max(1, c.groups.length);
  const boxW = Math.min(40, (groupW * 0.7) / Math.max(1, c.series.length));
  c.groups.forEach((g, gi) => {
    const gx = M.left + gi * groupW;
    body.push(`<text x="${n(gx + groupW / 2)}" y="${H - M.bottom + 18}" text-anchor="middle">${esc(g.label)}</text>`);
    g.boxes.forEach((b, si) => {
      if (!Number.isFinite(b.p50)) return;
      const color = COLORS[si % COLORS.length] as string;
      const cx = gx + groupW / 2 + (si - (c.series.length - 1) / 2) * (boxW + 6);
      const x0 = cx - boxW / 2;
      body.push(
        `<line x1="${n(cx)}" x2="${n(cx)}" y1="${n(y(b.p1))}" y2="${n(y(b.p99))}" stroke="${color}"/>`,
        `<line x1="${n(cx - boxW / 4)}" x2="${n(cx + boxW / 4)}" y1="${n(y(b.p99))}" y2="${n(y(b.p99))}" stroke="${color}"/>`,
        `<line x1="${n(cx - boxW / 4)}" x2="${n(cx + boxW / 4)}" y1="${n(y(b.p1))}" y2="${n(y(b.p1))}" stroke="${color}"/>`,
        `<rect x="${n(x0)}" y="${n(y(b.p75))}" width="${n(boxW)}" height="${n(Math.max(1, y(b.p25) - y(b.p75)))}" fill="${color}" fill-opacity="0.35" stroke="${color}"/>`,
        `<line x1="${n(x0)}" x2="${n(x0 + boxW)}" y1="${n(y(b.p50))}" y2="${n(y(b.p50))}" stroke="${color}" stroke-width="2.5"/>`,
        `<text x="${n(cx)}" y="${n(y(b.p99) - 4)}" text-anchor="middle" font-size="10">${n(b.p50)}</text>`,
      );
    });
  });
  body.push(...legend(c.series));
  body.push(
    `<text x="${W - M.right + 14}" y="${M.top + c.series.length * 20 + 16}" font-size="10">box p25-p75, line p50</text>`,
    `<text x="${W - M.right + 14}" y="${M.top + c.series.length * 20 + 30}" font-size="10">whiskers p1-p99</text>`,
    `<text x="${W - M.right + 14}" y="${M.top + c.series.length * 20 + 44}" font-size="10">label: p50</text>`,
  );
  return frame(c.title, '', c.yLabel, body);
}

/** Lines over a shared x axis, with shaded x windows behind them. */
export function lineChartSvg(c: LineChart): string {
  const log = c.logY === true;
  const xs = c.series.flatMap((s) => s.points.map((p) => p[0]));
  const xLo = xs.length === 0 ? 0 : Math.min(...xs, ...(c.shaded ?? []).map((s) => s.from));
  const xHi = xs.length === 0 ? 1 : Math.max(...xs, ...(c.shaded ?? []).map((s) => s.to));
  const [lo, hi] = yRange(
    c.series.flatMap((s) => s.points.map((p) => p[1])),
    log,
  );
  const x = scale(xLo, xHi, M.left, W - M.right, false);
  const y = scale(lo, hi, H - M.bottom, M.top, log);
  const body: string[] = [];
  for (const s of c.shaded ?? []) {
    body.push(
      `<rect x="${n(x(s.from))}" y="${M.top}" width="${n(Math.max(1, x(s.to) - x(s.from)))}" height="${H - M.top - M.bottom}" fill="#999" fill-opacity="0.2"/>`,
      `<text x="${n((x(s.from) + x(s.to)) / 2)}" y="${M.top + 14}" text-anchor="middle" fill="#555">${esc(s.label)}</text>`,
    );
  }
  body.push(...yAxis(lo, hi, log, y));
  for (const t of ticks(xLo, xHi, false)) {
    body.push(`<text x="${n(x(t))}" y="${H - M.bottom + 16}" text-anchor="middle">${t}</text>`);
  }
  body.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${H - M.bottom}" y2="${H - M.bottom}" stroke="black"/>`);
  c.series.forEach((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p[1]) && (!log || p[1] > 0));
    if (pts.length === 0) return;
    // A gap in the data (nothing arrived then) breaks the line rather than bridging it.
    const steps = pts.slice(1).map((p, j) => p[0] - (pts[j] as [number, number])[0]);
    const maxStep = 3 * Math.max(1e-9, Math.min(...steps.filter((v) => v > 0), Infinity));
    const d = pts
      .map((p, j) => {
        const prev = pts[j - 1];
        const move = prev === undefined || p[0] - prev[0] > maxStep;
        return `${move ? 'M' : 'L'}${n(x(p[0]))},${n(y(p[1]))}`;
      })
      .join(' ');
    body.push(`<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5"/>`);
  });
  body.push(...legend(c.series.map((s) => s.name)));
  return frame(c.title, c.xLabel, c.yLabel, body);
}

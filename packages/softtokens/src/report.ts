/**
 * Report output with no dependencies: standalone SVG line charts (training curves, entropy
 * profiles, pass@k curves) and Markdown tables.
 */

export interface LineSeries {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
  /** Stroke colour (default: the palette's colour for the series' position). */
  readonly colour?: string;
  /**
   * A shaded band around the line, as `[x, low, high]` points (e.g. the range over seeds);
   * drawn in the series' colour, translucent, under every line.
   */
  readonly band?: readonly (readonly [number, number, number])[];
}

export interface LineChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly LineSeries[];
  readonly width?: number;
  readonly height?: number;
  /** Fixed axis ranges; by default they fit the data. */
  readonly xRange?: readonly [number, number];
  readonly yRange?: readonly [number, number];
  /** Draw a dot at every point (default: only when a series has at most 40 points). */
  readonly markers?: boolean;
}

/** Tableau 10: distinguishable, and legible for the common colour-vision deficiencies. */
export const SERIES_COLOURS: readonly string[] = [
  '#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f',
  '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac',
];

/** Escapes text for XML content and attribute values. */
export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
    // Control characters are not allowed in XML 1.0 at all.
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '');
}

/** About `target` round tick values (steps of 1, 2 or 5 × 10^k) covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const start = Math.ceil(lo / step - 1e-9);
  const end = Math.floor(hi / step + 1e-9);
  // Spans at the ends of the double range (overflow, denormals) get just their end points.
  if (!(step > 0) || !Number.isFinite(step) || !Number.isFinite(start) || !Number.isFinite(end) || end - start > 1000) {
    return [lo, hi];
  }
  const ticks: number[] = [];
  for (let i = start; i <= end; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks.filter(Number.isFinite);
}

function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1).replace('e+', 'e');
  return String(Number(v.toPrecision(6)));
}

function fmt(v: number): string {
  return String(Math.round(v * 100) / 100);
}

/** Data range padded so a flat series or a single point still gets a visible axis. */
function extent(values: number[], target: number, fixed?: readonly [number, number]): [number, number] {
  if (fixed) return [fixed[0], fixed[1]];
  if (values.length === 0) return [0, 1];
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo = Math.max(lo - pad, -Number.MAX_VALUE);
    hi = Math.min(hi + pad, Number.MAX_VALUE);
  }
  // Round out to the enclosing ticks, so the axis starts and ends on a labelled value.
  const ticks = niceTicks(lo, hi, target);
  if (ticks.length >= 2) {
    const step = ticks[1]! - ticks[0]!;
    const outLo = ticks[0]! > lo ? ticks[0]! - step : ticks[0]!;
    const outHi = ticks[ticks.length - 1]! < hi ? ticks[ticks.length - 1]! + step : ticks[ticks.length - 1]!;
    const round = (v: number) => Number(v.toPrecision(12));
    if (Number.isFinite(outLo) && Number.isFinite(outHi)) return [round(outLo), round(outHi)];
  }
  return [lo, hi];
}

/**
 * A standalone SVG line chart: title, axes with ticks and labels, one polyline per series
 * (non-finite points break the line), a legend. Same input, same bytes.
 */
export function lineChartSvg(options: LineChartOptions): string {
  const width = options.width ?? 640;
  const height = options.height ?? 400;
  const legendRows = options.series.length;
  const margin = { top: 40, right: 20 + (legendRows > 0 ? 150 : 0), bottom: 55, left: 70 };
  const plotW = Math.max(10, width - margin.left - margin.right);
  const plotH = Math.max(10, height - margin.top - margin.bottom);

  const bandPoints = options.series.flatMap((s) => (s.band ?? []).flatMap(([x, lo, hi]) => [[x, lo], [x, hi]] as [number, number][]));
  const finite = [...options.series.flatMap((s) => s.points), ...bandPoints].filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const [x0, x1] = extent(finite.map((p) => p[0]), 6, options.xRange);
  const [y0, y1] = extent(finite.map((p) => p[1]), 5, options.yRange);
  // Halving first keeps x − x0 finite even for data near ±Number.MAX_VALUE.
  const unit = (v: number, lo: number, hi: number) => (v / 2 - lo / 2) / (hi / 2 - lo / 2 || 1);
  const sx = (x: number) => margin.left + unit(x, x0, x1) * plotW;
  const sy = (y: number) => margin.top + plotH - unit(y, y0, y1) * plotH;

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
  );
  parts.push(`<title>${escapeXml(options.title)}</title>`);
  parts.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  parts.push(`<text x="${fmt(width / 2)}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(options.title)}</text>`);

  // Grid and ticks.
  const bottom = margin.top + plotH;
  parts.push('<g stroke="#e5e5e5" stroke-width="1">');
  const xTicks = niceTicks(x0, x1, 6).filter((t) => t >= x0 && t <= x1);
  const yTicks = niceTicks(y0, y1, 5).filter((t) => t >= y0 && t <= y1);
  for (const t of xTicks) parts.push(`<line x1="${fmt(sx(t))}" y1="${margin.top}" x2="${fmt(sx(t))}" y2="${bottom}"/>`);
  for (const t of yTicks) parts.push(`<line x1="${margin.left}" y1="${fmt(sy(t))}" x2="${margin.left + plotW}" y2="${fmt(sy(t))}"/>`);
  parts.push('</g>');
  parts.push('<g stroke="#333333" stroke-width="1">');
  parts.push(`<line x1="${margin.left}" y1="${bottom}" x2="${margin.left + plotW}" y2="${bottom}"/>`);
  parts.push(`<line x1="${margin.left}" y1="${margin.top}" x2="${margin.left}" y2="${bottom}"/>`);
  for (const t of xTicks) parts.push(`<line x1="${fmt(sx(t))}" y1="${bottom}" x2="${fmt(sx(t))}" y2="${bottom + 5}"/>`);
  for (const t of yTicks) parts.push(`<line x1="${margin.left - 5}" y1="${fmt(sy(t))}" x2="${margin.left}" y2="${fmt(sy(t))}"/>`);
  parts.push('</g>');
  parts.push('<g fill="#333333">');
  for (const t of xTicks) parts.push(`<text x="${fmt(sx(t))}" y="${bottom + 18}" text-anchor="middle">${formatTick(t)}</text>`);
  for (const t of yTicks) parts.push(`<text x="${margin.left - 8}" y="${fmt(sy(t) + 4)}" text-anchor="end">${formatTick(t)}</text>`);
  parts.push('</g>');
  parts.push(`<text x="${fmt(margin.left + plotW / 2)}" y="${height - 12}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  const yMid = fmt(margin.top + plotH / 2);
  parts.push(`<text x="16" y="${yMid}" text-anchor="middle" transform="rotate(-90 16 ${yMid})">${escapeXml(options.yLabel)}</text>`);

  // Series, clipped to the plot so fixed ranges cannot draw over the axes.
  // Unique per title, so that several charts inlined in one HTML page keep their own clips.
  let h = 0;
  for (const ch of options.title) h = (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0;
  const clipId = `plot-area-${h.toString(36)}`;
  parts.push(`<clipPath id="${clipId}"><rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}"/></clipPath>`);
  const colourOf = (s: LineSeries, i: number) => s.colour ?? SERIES_COLOURS[i % SERIES_COLOURS.length]!;
  if (options.series.some((s) => s.band && s.band.length > 1)) {
    parts.push(`<g clip-path="url(#${clipId})" stroke="none" fill-opacity="0.18">`);
    options.series.forEach((s, i) => {
      const band = (s.band ?? []).filter(([x, lo, hi]) => Number.isFinite(x) && Number.isFinite(lo) && Number.isFinite(hi));
      if (band.length < 2) return;
      const upper = band.map(([x, , hi]) => `${fmt(sx(x))},${fmt(sy(hi))}`);
      const lower = band.map(([x, lo]) => `${fmt(sx(x))},${fmt(sy(lo))}`).reverse();
      parts.push(`<polygon fill="${escapeXml(colourOf(s, i))}" points="${[...upper, ...lower].join(' ')}"/>`);
    });
    parts.push('</g>');
  }
  parts.push(`<g clip-path="url(#${clipId})" fill="none" stroke-width="2" stroke-linejoin="round">`);
  options.series.forEach((s, i) => {
    const colour = escapeXml(colourOf(s, i));
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) parts.push(`<polyline stroke="${colour}" points="${run.join(' ')}"/>`);
      run = [];
    };
    for (const [x, y] of s.points) {
      if (Number.isFinite(x) && Number.isFinite(y)) run.push(`${fmt(sx(x))},${fmt(sy(y))}`);
      else flush();
    }
    flush();
    if (options.markers ?? s.points.length <= 40) {
      for (const [x, y] of s.points) {
        if (Number.isFinite(x) && Number.isFinite(y)) {
          parts.push(`<circle cx="${fmt(sx(x))}" cy="${fmt(sy(y))}" r="2.5" fill="${colour}" stroke="none"/>`);
        }
      }
    }
  });
  parts.push('</g>');

  if (legendRows > 0) {
    const lx = margin.left + plotW + 15;
    parts.push('<g>');
    options.series.forEach((s, i) => {
      const colour = escapeXml(colourOf(s, i));
      const ly = margin.top + 10 + i * 18;
      parts.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 18}" y2="${ly}" stroke="${colour}" stroke-width="3"/>`);
      parts.push(`<text x="${lx + 24}" y="${ly + 4}">${escapeXml(s.name)}</text>`);
    });
    parts.push('</g>');
  }
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------
// Markdown

/** A fraction in [0, 1] as a percentage with one decimal: 0.714 → `71.4%`; non-finite → `–`. */
export function formatPercent(fraction: number, withSign = true): string {
  if (!Number.isFinite(fraction)) return '–';
  const s = (Math.round(fraction * 1000) / 10).toFixed(1);
  return withSign ? `${s}%` : s;
}

export type TableCell = string | number | null | undefined;

function cellText(c: TableCell): string {
  if (c === null || c === undefined) return '';
  const s = typeof c === 'number' ? (Number.isFinite(c) ? String(c) : '–') : c;
  // A pipe would end the cell and a newline the row.
  return s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/**
 * A GitHub-flavoured Markdown table. Columns whose cells are all numbers (or numbers
 * formatted as percentages) are right-aligned so that digits line up.
 */
export function markdownTable(headers: readonly string[], rows: readonly (readonly TableCell[])[]): string {
  rows.forEach((r, i) => {
    if (r.length !== headers.length) {
      throw new Error(`markdownTable: row ${i} has ${r.length} cells, expected ${headers.length} (one per header)`);
    }
  });
  const numeric = headers.map(
    (_, j) =>
      rows.length > 0 &&
      rows.every((r) => {
        const c = r[j];
        return typeof c === 'number' || (typeof c === 'string' && /^[-+]?\d+(\.\d+)?%?$|^–$/.test(c.trim()));
      }),
  );
  const head = headers.map(cellText);
  const body = rows.map((r) => r.map(cellText));
  const widths = head.map((h, j) => Math.max(3, h.length, ...body.map((r) => r[j]!.length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, j) => (numeric[j] ? c.padStart(widths[j]!) : c.padEnd(widths[j]!))).join(' | ')} |`;
  const rule = `| ${widths.map((w, j) => (numeric[j] ? '-'.repeat(w - 1) + ':' : '-'.repeat(w))).join(' | ')} |`;
  return [line(head), rule, ...body.map(line)].join('\n') + '\n';
}

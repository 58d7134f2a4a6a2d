/**
 * The charts `npm run bench` writes to docs/bench/: plain SVG text (no chart library: three
 * fixed layouts of bars and labels). Each carries the run's date and command in its caption, so
 * a chart in the docs always says which run it shows.
 */

export interface Caption {
  date: string;
  command: string;
  load: string;
}

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"';

const xml = (s: string) =>
  s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

function text(x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${xml(content)}</text>`;
}

function svg(width: number, height: number, title: string, body: string[], caption: Caption): string {
  const foot = `${caption.date} · ${caption.command} · ${caption.load}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height + 34}" width="${width}" height="${height + 34}" role="img" aria-label="${xml(title)}" ${FONT}>`,
    `<title>${xml(title)}</title>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    text(16, 26, title, 'font-size="16" font-weight="600" fill="#111"'),
    ...body,
    text(16, height + 22, foot, 'font-size="11" fill="#666"'),
    '</svg>',
    '',
  ].join('\n');
}

export const LAYER_COLOURS: Record<string, string> = {
  incumbent: '#b0b7c3',
  pgsession: '#2f6fdb',
  floor: '#7fb069',
  ceiling: '#444',
};

export interface ThroughputBar {
  group: string;
  layer: string;
  label: string;
  rps: number;
  /** Share of the group's ceiling. */
  ofCeiling: number;
}

/** Horizontal bars, one group per framework (and session count), scaled to the group's ceiling. */
export function throughputChart(bars: ThroughputBar[], caption: Caption): string {
  const groups = [...new Set(bars.map((b) => b.group))];
  const left = 230;
  const barWidth = 420;
  const rowH = 20;
  let y = 52;
  const body: string[] = [];
  for (const group of groups) {
    body.push(text(16, y + 4, group, 'font-size="13" font-weight="600" fill="#111"'));
    y += 12;
    for (const b of bars.filter((x) => x.group === group)) {
      const w = Math.max(1, Math.min(1.25, b.ofCeiling) * barWidth);
      body.push(text(left - 8, y + 14, b.label, 'font-size="12" text-anchor="end" fill="#333"'));
      body.push(
        `<rect x="${left}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${LAYER_COLOURS[b.layer] ?? '#999'}"/>`,
      );
      body.push(
        text(
          left + w + 6,
          y + 14,
          `${Math.round(b.rps).toLocaleString('en-US')} req/s · ${(b.ofCeiling * 100).toFixed(0)}%`,
          'font-size="11" fill="#333"',
        ),
      );
      y += rowH;
    }
    y += 14;
  }
  // The ceiling line: 100% of each group's no-session app.
  body.push(
    `<line x1="${left + barWidth}" y1="56" x2="${left + barWidth}" y2="${y - 14}" stroke="#444" stroke-dasharray="3 3"/>`,
  );
  body.push(
    text(left + barWidth, 48, '100% = no session layer', 'font-size="10" text-anchor="middle" fill="#444"'),
  );
  return svg(
    left + barWidth + 190,
    y,
    'Throughput: authenticated GET /dashboard, share of the same app without sessions',
    body,
    caption,
  );
}

/** A histogram of revocation delays (logout on one process → refused on another), p50/p99 marked. */
export function revocationChart(samplesMs: number[], p50: number, p99: number, caption: Caption): string {
  const max = Math.max(1, ...samplesMs);
  const binMs = max <= 10 ? 0.5 : max <= 40 ? 1 : Math.ceil(max / 40);
  const bins = Array.from({ length: Math.ceil(max / binMs) + 1 }, () => 0);
  for (const s of samplesMs) bins[Math.floor(s / binMs)]!++;
  const left = 56;
  const top = 50;
  const width = 600;
  const height = 220;
  const peak = Math.max(...bins);
  const bw = width / bins.length;
  const body: string[] = [];
  bins.forEach((n, i) => {
    const h = (n / peak) * height;
    body.push(
      `<rect x="${(left + i * bw + 1).toFixed(1)}" y="${(top + height - h).toFixed(1)}" width="${Math.max(1, bw - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="#2f6fdb"/>`,
    );
  });
  const xOf = (ms: number) => left + (ms / (bins.length * binMs)) * width;
  for (const [label, v] of [
    ['p50', p50],
    ['p99', p99],
  ] as const) {
    body.push(
      `<line x1="${xOf(v).toFixed(1)}" y1="${top}" x2="${xOf(v).toFixed(1)}" y2="${top + height}" stroke="#d33" stroke-dasharray="4 3"/>`,
    );
    body.push(text(xOf(v) + 4, top + 12, `${label} ${v.toFixed(1)} ms`, 'font-size="11" fill="#d33"'));
  }
  body.push(
    `<line x1="${left}" y1="${top + height}" x2="${left + width}" y2="${top + height}" stroke="#333"/>`,
  );
  const ticks = 5;
  for (let t = 0; t <= ticks; t++) {
    const ms = (t / ticks) * bins.length * binMs;
    body.push(
      text(
        xOf(ms),
        top + height + 16,
        `${ms.toFixed(0)} ms`,
        'font-size="11" text-anchor="middle" fill="#333"',
      ),
    );
  }
  body.push(text(left - 8, top + 10, String(peak), 'font-size="11" text-anchor="end" fill="#333"'));
  body.push(text(left - 8, top + height, '0', 'font-size="11" text-anchor="end" fill="#333"'));
  return svg(
    left + width + 30,
    top + height + 30,
    `Revocation: logout on process A until process B refuses the cookie (${samplesMs.length} logouts)`,
    body,
    caption,
  );
}

export interface MemoryPoint {
  sessions: number;
  heapPerSession: number;
  rssPerSession: number;
}

/** Bytes per cached session (heap and RSS) at each size measured, against the 1 KB target. */
export function memoryChart(points: MemoryPoint[], caption: Caption): string {
  const left = 130;
  const width = 460;
  const scaleMax = Math.max(1400, ...points.flatMap((p) => [p.heapPerSession, p.rssPerSession]));
  const xOf = (bytes: number) => left + (Math.max(0, bytes) / scaleMax) * width;
  let y = 50;
  const body: string[] = [];
  for (const p of points) {
    body.push(
      text(
        left - 8,
        y + 22,
        `${p.sessions.toLocaleString('en-US')} sessions`,
        'font-size="12" text-anchor="end" fill="#333"',
      ),
    );
    for (const [kind, v, colour] of [
      ['heap', p.heapPerSession, '#2f6fdb'],
      ['RSS', p.rssPerSession, '#7fb069'],
    ] as const) {
      body.push(
        `<rect x="${left}" y="${y + 2}" width="${(xOf(v) - left).toFixed(1)}" height="14" fill="${colour}"/>`,
      );
      body.push(text(xOf(v) + 6, y + 13, `${kind} ${Math.round(v)} B`, 'font-size="11" fill="#333"'));
      y += 18;
    }
    y += 14;
  }
  body.push(
    `<line x1="${xOf(1024).toFixed(1)}" y1="44" x2="${xOf(1024).toFixed(1)}" y2="${y - 10}" stroke="#d33" stroke-dasharray="4 3"/>`,
  );
  body.push(text(xOf(1024), 42, 'target: 1 KB', 'font-size="10" text-anchor="middle" fill="#d33"'));
  return svg(
    left + width + 120,
    y,
    'Memory per cached session (one process, after a full GC)',
    body,
    caption,
  );
}

/** An SVG bar chart of accuracy results: pooled exact match per cell with its 95% interval. */
import type { BenchResults } from '../results.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * One bar per row whose `family` is `all` and that has numeric `accuracy`, `ciLow`, `ciHigh`
 * (the accuracy bench's rows); `undefined` when there is none.
 */
export function toAccuracySvg(r: BenchResults): string | undefined {
  const bars = r.rows.filter(
    (row) =>
      row.family === 'all' &&
      typeof row.accuracy === 'number' &&
      typeof row.ciLow === 'number' &&
      typeof row.ciHigh === 'number',
  );
  if (bars.length === 0) return undefined;
  const rowH = 22;
  const left = 260;
  const width = 420;
  const top = 40;
  const height = top + bars.length * rowH + 40;
  const x = (v: number) => left + v * width;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${left + width + 80}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<text x="10" y="20" font-size="14">${esc(`${r.bench}: exact match, all families pooled (95% Wilson interval)`)}</text>`,
  ];
  for (let t = 0; t <= 10; t += 2) {
    const v = t / 10;
    parts.push(
      `<line x1="${x(v)}" y1="${top - 5}" x2="${x(v)}" y2="${top + bars.length * rowH}" stroke="#ddd"/>`,
      `<text x="${x(v)}" y="${top + bars.length * rowH + 16}" text-anchor="middle">${t * 10}%</text>`,
    );
  }
  bars.forEach((row, i) => {
    const y = top + i * rowH;
    const plan = typeof row.plan === 'string' ? ` [${row.plan}]` : '';
    const label = `${row.grid} ${row.policy}${plan} ${row.context} p${row.percent} (n=${row.n})`;
    const acc = row.accuracy as number;
    parts.push(
      `<text x="${left - 8}" y="${y + 14}" text-anchor="end">${esc(label)}</text>`,
      `<rect x="${left}" y="${y + 3}" width="${Math.max(0, x(acc) - left)}" height="${rowH - 8}" fill="${row.policy === 'dense' ? '#888' : '#4a7ab5'}"/>`,
      `<line x1="${x(row.ciLow as number)}" y1="${y + 11}" x2="${x(row.ciHigh as number)}" y2="${y + 11}" stroke="#000"/>`,
      `<text x="${x(1) + 6}" y="${y + 14}">${(acc * 100).toFixed(1)}%</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

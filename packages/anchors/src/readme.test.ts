import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { layerRoles, parsePlan } from './plan.js';

describe('README', () => {
  it('shows the example file verbatim, and the example runs to a valid plan', async () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const source = readFileSync(new URL('./readme-example.ts', import.meta.url), 'utf8');
    const body = source.split('\n').slice(1).join('\n').trimEnd(); // drop the first comment line
    expect(readme).toContain(body);
    const example = await import('./readme-example.js');
    expect(example.plan.format).toBe('kascade-plan');
    expect(example.plan.anchors.length).toBe(2);
    expect(example.plan.anchors[0]).toBe(0);
    expect(example.plan.headMaps.length).toBe(4);
    expect(example.text.endsWith('\n')).toBe(true);
  });

  it('shows a plan file that parsePlan accepts', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const json = readme.match(/```json\n([\s\S]*?)```/)?.[1];
    expect(json).toBeDefined();
    const plan = parsePlan(json, { layers: 4, heads: 4, kvHeads: 2, headDim: 8 });
    expect(layerRoles(plan)).toEqual(['dense-anchor', 'reuse', 'anchor', 'reuse']);
  });
});

import { describe, expect, it } from 'vitest';
import { CalibrationAccumulator } from './accumulator.js';
import { PlanError } from './errors.js';
import { headMaps, layerSimilarityMatrix } from './heads.js';
import { anchorOf, buildPlan, type KascadePlan, layerRoles, parsePlan, serializePlan } from './plan.js';
import { selectAnchors, selectAnchorsAuto } from './select.js';

function validPlan(): KascadePlan {
  return {
    format: 'kascade-plan',
    version: 1,
    model: { id: 'tiny', architecture: 'llama', layers: 4, heads: 8, kvHeads: 2, headDim: 16 },
    budget: { percent: 10, kMin: 128, roundTo: 1, tileSize: 32 },
    anchors: [0, 2],
    headMaps: [
      [0, 1],
      [1, 0],
      [0, 1],
      [0, 0],
    ],
    calibration: {
      prompts: 3,
      tau: 0.9,
      layerSimilarity: [1, 0.95, 1, 0.92],
      importance: [0.3, 0.1, 0.2, 0.05],
      objective: 0.3 + 0.095 + 0.2 + 0.046,
    },
    createdAt: '2026-11-29T10:00:00.000Z',
    tool: '@kascade/anchors test',
  };
}

type Json = Record<string, unknown>;

/** A deep copy of the valid plan, changed by `edit`, as untyped JSON. */
function edited(
  edit: (p: Json & { model: Json; budget: Json; calibration: Json; headMaps: unknown[][] }) => void,
): unknown {
  const p = JSON.parse(JSON.stringify(validPlan()));
  edit(p);
  return p;
}

function rejection(json: unknown, expected?: Parameters<typeof parsePlan>[1]): PlanError {
  try {
    parsePlan(json, expected);
  } catch (error) {
    expect(error).toBeInstanceOf(PlanError);
    return error as PlanError;
  }
  throw new Error('parsePlan accepted a bad plan');
}

describe('parsePlan', () => {
  it('accepts a valid plan, as an object or as JSON text', () => {
    const plan = validPlan();
    expect(parsePlan(plan)).toEqual(plan);
    expect(parsePlan(JSON.stringify(plan), { layers: 4, heads: 8, kvHeads: 2, headDim: 16 })).toEqual(plan);
    const { calibration: _c, createdAt: _t, tool: _o, ...bare } = plan;
    expect(parsePlan(bare)).toEqual(bare);
  });

  const cases: [string, unknown, string, RegExp][] = [
    ['not JSON', '{"format": ', '', /not valid JSON/],
    ['not an object', [1, 2], '', /JSON object/],
    ['wrong format', edited((p) => (p.format = 'other')), 'format', /kascade-plan/],
    ['unknown version', edited((p) => (p.version = 2)), 'version', /unknown plan version 2/],
    ['missing version', edited((p) => delete p.version), 'version', /unknown plan version \(missing\)/],
    ['anchor out of range', edited((p) => (p.anchors = [0, 2, 4])), 'anchors[2]', /out of range \[0, 4\)/],
    ['anchors unsorted', edited((p) => (p.anchors = [0, 3, 2])), 'anchors[2]', /unsorted/],
    ['anchors duplicated', edited((p) => (p.anchors = [0, 2, 2])), 'anchors[2]', /duplicated/],
    ['anchors not starting at 0', edited((p) => (p.anchors = [1, 2])), 'anchors[0]', /start at layer 0/],
    ['no anchors', edited((p) => (p.anchors = [])), 'anchors', /at least layer 0/],
    ['negative anchor', edited((p) => (p.anchors = [0, -1])), 'anchors[1]', />= 0/],
    ['fractional anchor', edited((p) => (p.anchors = [0, 1.5])), 'anchors[1]', /integer/],
    ['head maps for too few layers', edited((p) => p.headMaps.pop()), 'headMaps', /cover 3 layers/],
    [
      'head map length not G',
      edited((p) => p.headMaps[1].push(0)),
      'headMaps[1]',
      /3 entries, expected kvHeads = 2/,
    ],
    [
      'head map index out of range',
      edited((p) => (p.headMaps[3][1] = 2)),
      'headMaps[3][1]',
      /out of range \[0, 2\)/,
    ],
    [
      'head map of an anchor not identity',
      edited((p) => (p.headMaps[2] = [1, 0])),
      'headMaps[2][0]',
      /identity/,
    ],
    [
      'head map of layer 0 not identity',
      edited((p) => (p.headMaps[0] = [0, 0])),
      'headMaps[0][1]',
      /identity/,
    ],
    ['heads not a multiple of kvHeads', edited((p) => (p.model.heads = 7)), 'model.heads', /multiple/],
    ['zero layers', edited((p) => (p.model.layers = 0)), 'model.layers', />= 1/],
    ['empty model id', edited((p) => (p.model.id = '')), 'model.id', /non-empty/],
    ['bad budget percent (0)', edited((p) => (p.budget.percent = 0)), 'budget.percent', /\(0, 100\]/],
    ['bad budget percent (150)', edited((p) => (p.budget.percent = 150)), 'budget.percent', /\(0, 100\]/],
    ['bad budget kMin', edited((p) => (p.budget.kMin = -1)), 'budget.kMin', />= 0/],
    ['bad budget roundTo', edited((p) => (p.budget.roundTo = 0)), 'budget.roundTo', />= 1/],
    ['bad budget tileSize', edited((p) => (p.budget.tileSize = 1.5)), 'budget.tileSize', /integer/],
    [
      'missing budget tileSize',
      edited((p) => delete p.budget.tileSize),
      'budget.tileSize',
      /tileSize is required/,
    ],
    [
      'calibration of the wrong length',
      edited((p) => (p.calibration.importance = [1])),
      'calibration.importance',
      /1 entries, expected one per layer \(4\)/,
    ],
    ['calibration tau above 1', edited((p) => (p.calibration.tau = 2)), 'calibration.tau', /\[0, 1\]/],
    ['misspelt field', edited((p) => (p.anchor = [0])), 'anchor', /Unrecognized key/],
  ];
  for (const [name, json, path, message] of cases) {
    it(`rejects ${name}, naming ${path || 'the document'}`, () => {
      const error = rejection(json);
      expect(error.path).toBe(path);
      expect(error.message).toMatch(message);
      expect(error.message).toContain(path === '' ? 'plan' : path);
    });
  }

  it('rejects a shape mismatch against the model, naming each field', () => {
    const error = rejection(validPlan(), { layers: 32, heads: 8, kvHeads: 4, headDim: 16 });
    expect(error.path).toBe('model.layers');
    expect(error.message).toMatch(/the plan says layers = 4, the model has 32/);
    expect(error.issues.map((i) => i.path)).toEqual(['model.layers', 'model.kvHeads']);
    expect(rejection(validPlan(), { headDim: 128 }).path).toBe('model.headDim');
  });

  it('lists every problem it finds', () => {
    const error = rejection(
      edited((p) => {
        p.anchors = [0, 9];
        p.headMaps[3] = [5, 0];
      }),
    );
    expect(error.issues.map((i) => i.path)).toEqual(['anchors[1]', 'headMaps[3][0]']);
    expect(error.message).toMatch(/and 1 more: headMaps\[3\]\[0\]/);
  });

  it('rejects a huge layer count without allocating per layer (a request may send any plan)', () => {
    const error = rejection(
      edited((p) => {
        p.model.layers = 2 ** 32 - 1;
      }),
    );
    expect(error.path).toBe('headMaps');
    expect(error.message).toMatch(/head maps cover 4 layers, the model has 4294967295/);
  });
});

describe('serializePlan', () => {
  it('round-trips, and gives the same text whatever the key order', () => {
    const plan = validPlan();
    const text = serializePlan(plan);
    expect(parsePlan(text)).toEqual(plan);
    const reordered = JSON.parse(JSON.stringify(plan), (_k, v) =>
      v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).reverse()) : v,
    );
    expect(Object.keys(reordered)[0]).toBe('tool');
    expect(serializePlan(reordered)).toBe(text);
    expect(text.startsWith('{\n  "format": "kascade-plan",\n  "version": 1,\n')).toBe(true);
    expect(text).toContain('  "anchors": [0, 2],\n');
    expect(text).toContain('    [1, 0],\n');
    expect(text.endsWith('}\n')).toBe(true);
  });

  it('refuses to write an invalid plan', () => {
    expect(() => serializePlan({ ...validPlan(), anchors: [0, 0] })).toThrow(PlanError);
  });
});

describe('layerRoles and anchorOf', () => {
  it('derive each layer’s role and anchor', () => {
    const plan = parsePlan(
      edited((p) => {
        p.model.layers = 6;
        p.anchors = [0, 2, 5];
        p.headMaps = [
          [0, 1],
          [1, 1],
          [0, 1],
          [1, 0],
          [0, 0],
          [0, 1],
        ];
        Reflect.deleteProperty(p, 'calibration');
      }),
    );
    expect(layerRoles(plan)).toEqual(['dense-anchor', 'reuse', 'anchor', 'reuse', 'reuse', 'anchor']);
    expect(anchorOf(plan)).toEqual([0, 0, 2, 2, 2, 5]);
  });
});

describe('buildPlan', () => {
  function calibrate() {
    const L = 3;
    const G = 2;
    const tiles = 3;
    const T = 2;
    const n = 6;
    const acc = new CalibrationAccumulator({
      layers: L,
      kvHeads: G,
      tileSize: T,
      budget: { percent: 40, kMin: 1 },
    });
    let seed = 11;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (let prompt = 0; prompt < 2; prompt++) {
      acc.beginPrompt();
      for (let l = 0; l < L; l++) {
        acc.addLayer({
          layer: l,
          scores: Float64Array.from({ length: G * tiles * n }, next),
          diagonalMass: Float64Array.from({ length: G * tiles }, next),
          tiles,
          importance: next(),
        });
      }
      acc.endPrompt();
    }
    return acc.statistics();
  }
  const model = { id: 'synthetic', layers: 3, heads: 4, kvHeads: 2, headDim: 8 };

  it('assembles a valid plan from the statistics and the DP', () => {
    const statistics = calibrate();
    const selection = selectAnchors({
      similarity: layerSimilarityMatrix(statistics.similarity),
      weights: statistics.importance,
      anchors: 2,
    });
    const plan = buildPlan({ model, statistics, selection, tool: 'test' });
    expect(plan.anchors).toEqual(selection.anchors);
    expect(plan.headMaps).toEqual(headMaps(statistics.similarity, selection.anchors));
    expect(plan.budget).toEqual({ percent: 40, kMin: 1, roundTo: 1, tileSize: 2 });
    expect(plan.calibration).toEqual({
      prompts: 2,
      layerSimilarity: selection.layerSimilarity,
      importance: statistics.importance,
      objective: selection.objective,
    });
    expect(parsePlan(serializePlan(plan), model)).toEqual(plan);

    const auto = buildPlan({
      model,
      statistics,
      selection: selectAnchorsAuto({ ...selectionInputs(statistics) }),
    });
    expect(auto.calibration?.tau).toBe(0.9);
  });

  function selectionInputs(statistics: ReturnType<typeof calibrate>) {
    return { similarity: layerSimilarityMatrix(statistics.similarity), weights: statistics.importance };
  }

  it('refuses statistics of another shape', () => {
    const statistics = calibrate();
    const selection = selectAnchors({ ...selectionInputs(statistics), anchors: 1 });
    expect(() => buildPlan({ model: { ...model, layers: 4 }, statistics, selection })).toThrow(
      expect.objectContaining({ name: 'PlanError', path: 'model.layers' }),
    );
    expect(() => buildPlan({ model: { ...model, kvHeads: 1 }, statistics, selection })).toThrow(
      expect.objectContaining({ name: 'PlanError', path: 'model.kvHeads' }),
    );
  });
});

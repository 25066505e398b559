import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from './config.js';

describe('parseConfig', () => {
  it('has defaults: loopback, port 8080, CPU, the bundled model', () => {
    const c = parseConfig([], {});
    expect(c).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      backend: 'cpu',
      model: undefined,
      plan: undefined,
    });
    expect(c).toMatchObject({ concurrency: 1, queue: 16, maxTokens: 1024, calibrate: 'auto', log: false });
  });

  it('reads flags, and environment variables where no flag is given', () => {
    const c = parseConfig(['--port', '9000', '--model', '/m', '--backend', 'auto', '--log'], {
      KASCADE_PORT: '1',
      KASCADE_PLAN: '/p.json',
      KASCADE_CONCURRENCY: '4',
      KASCADE_QUEUE: '0',
    });
    expect(c).toMatchObject({
      port: 9000,
      model: '/m',
      plan: '/p.json',
      backend: 'auto',
      concurrency: 4,
      queue: 0,
      log: true,
    });
  });

  it("passes --model random (or KASCADE_MODEL=random) through: the engine's word for the random-weight model", () => {
    expect(parseConfig(['--model', 'random'], {}).model).toBe('random');
    expect(parseConfig([], { KASCADE_MODEL: 'random' }).model).toBe('random');
  });

  it('names the flag or variable with a bad value', () => {
    const bad: [string[], Record<string, string>, RegExp][] = [
      [['--port', 'x'], {}, /--port/],
      [['--port', '70000'], {}, /--port/],
      [[], { KASCADE_CONCURRENCY: '0' }, /KASCADE_CONCURRENCY/],
      [['--backend', 'tpu'], {}, /--backend must be one of/],
      [['--max-tokens', '1.5'], {}, /--max-tokens/],
      [['--calibrate', 'yes'], {}, /--calibrate/],
      [['--nope'], {}, /nope/],
      [['stray'], {}, /stray/],
    ];
    for (const [argv, env, message] of bad) {
      expect(() => parseConfig(argv, env)).toThrow(ConfigError);
      expect(() => parseConfig(argv, env)).toThrow(message);
    }
  });
});

import { describe, expect, it } from 'vitest';
import { parseVariants } from './cuda-decode.js';

describe('cuda-decode --variants', () => {
  it('defaults to variant 0 alone and reads a comma list (duplicates dropped)', () => {
    expect(parseVariants()).toEqual([0]);
    expect(parseVariants(['--repeats', '3'])).toEqual([0]);
    expect(parseVariants(['--variants', '0,1,12,1'])).toEqual([0, 1, 12]);
    expect(parseVariants(['--variants', '128,252,764,1023,3260,32767'])).toEqual([
      128, 252, 764, 1023, 3260, 32767,
    ]);
  });

  it.each([['2147483648'], ['-1'], ['1.5'], ['a'], ['']])('rejects %j', (list) => {
    expect(() => parseVariants(['--variants', list])).toThrow(
      /--variants takes a comma list of integers in 0\.\.2147483647/,
    );
  });
});

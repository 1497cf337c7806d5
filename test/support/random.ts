// A seeded pseudo-random generator for tests (mulberry32), so that a failing
// random case can be replayed: tests print their seed, and QNH_SEED=N replays it.

export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** A generator seeded from QNH_SEED when set, else from the clock; the seed is reported through `say` (t.comment). */
export function seededRandom(say: (text: string) => void): () => number {
  const given = process.env.QNH_SEED;
  const seed = given !== undefined && /^[0-9]{1,10}$/.test(given) ? Number(given) : Date.now() % 2 ** 32;
  say(`random seed ${seed} (replay with QNH_SEED=${seed})`);
  return prng(seed);
}

/**
 * Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"),
 * the generator JAX uses. Pure uint32 arithmetic, so it is reproduced exactly by WGSL.
 */
const ROTATIONS = [13, 15, 26, 6, 17, 29, 16, 24] as const;

function rotl(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

/** Returns the two output words for key (k0, k1) and counter (x0, x1); all values uint32. */
export function threefry2x32(k0: number, k1: number, x0: number, x1: number): [number, number] {
  const ks0 = k0 >>> 0;
  const ks1 = k1 >>> 0;
  const ks2 = (ks0 ^ ks1 ^ 0x1bd11bda) >>> 0;
  let a = (x0 + ks0) >>> 0;
  let b = (x1 + ks1) >>> 0;
  for (let block = 0; block < 5; block++) {
    for (let r = 0; r < 4; r++) {
      a = (a + b) >>> 0;
      b = rotl(b, ROTATIONS[(block % 2) * 4 + r]!);
      b = (b ^ a) >>> 0;
    }
    // Key schedule ks[s % 3], ks[(s+1) % 3] without an array (this runs per element).
    const s = block + 1;
    const m = s % 3;
    a = (a + (m === 0 ? ks0 : m === 1 ? ks1 : ks2)) >>> 0;
    b = (b + (m === 0 ? ks1 : m === 1 ? ks2 : ks0) + s) >>> 0;
  }
  return [a, b];
}

/** The uint32 random word for element i under the rule documented on Backend.randomUniform. */
export function randomBitsAt(key: readonly [number, number], i: number): number {
  const [x0, x1] = threefry2x32(key[0], key[1], Math.floor(i / 2), 0);
  return i % 2 === 0 ? x0 : x1;
}

const f32view = new Float32Array(1);
const u32view = new Uint32Array(f32view.buffer);

/** bits → float32 in [1, 2) → minus 1: exact in float32 on every backend. */
export function bitsToUnitFloat(bits: number): number {
  u32view[0] = (bits >>> 9) | 0x3f800000;
  return f32view[0]! - 1;
}

/**
 * The float32 uniforms of Backend.randomUniform for elements [0, out.length), written into
 * `out` (the bits of element i are those of randomBitsAt(key, i)). The rounds are unrolled
 * and nothing is allocated per element: this runs for every random draw of a rollout step.
 */
export function fillUniformFloat32(key: readonly [number, number], out: Float32Array): void {
  const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
  const ks0 = key[0] >>> 0;
  const ks1 = key[1] >>> 0;
  const ks2 = (ks0 ^ ks1 ^ 0x1bd11bda) >>> 0;
  const n = out.length;
  for (let p = 0; 2 * p < n; p++) {
    let a = (p + ks0) | 0;
    let b = ks1 | 0;
    // Five blocks of four rounds, rotations alternating between the two sets, key injections between blocks.
    a = (a + b) | 0; b = (b << 13) | (b >>> 19); b ^= a;
    a = (a + b) | 0; b = (b << 15) | (b >>> 17); b ^= a;
    a = (a + b) | 0; b = (b << 26) | (b >>> 6); b ^= a;
    a = (a + b) | 0; b = (b << 6) | (b >>> 26); b ^= a;
    a = (a + ks1) | 0; b = (b + ks2 + 1) | 0;
    a = (a + b) | 0; b = (b << 17) | (b >>> 15); b ^= a;
    a = (a + b) | 0; b = (b << 29) | (b >>> 3); b ^= a;
    a = (a + b) | 0; b = (b << 16) | (b >>> 16); b ^= a;
    a = (a + b) | 0; b = (b << 24) | (b >>> 8); b ^= a;
    a = (a + ks2) | 0; b = (b + ks0 + 2) | 0;
    a = (a + b) | 0; b = (b << 13) | (b >>> 19); b ^= a;
    a = (a + b) | 0; b = (b << 15) | (b >>> 17); b ^= a;
    a = (a + b) | 0; b = (b << 26) | (b >>> 6); b ^= a;
    a = (a + b) | 0; b = (b << 6) | (b >>> 26); b ^= a;
    a = (a + ks0) | 0; b = (b + ks1 + 3) | 0;
    a = (a + b) | 0; b = (b << 17) | (b >>> 15); b ^= a;
    a = (a + b) | 0; b = (b << 29) | (b >>> 3); b ^= a;
    a = (a + b) | 0; b = (b << 16) | (b >>> 16); b ^= a;
    a = (a + b) | 0; b = (b << 24) | (b >>> 8); b ^= a;
    a = (a + ks1) | 0; b = (b + ks2 + 4) | 0;
    a = (a + b) | 0; b = (b << 13) | (b >>> 19); b ^= a;
    a = (a + b) | 0; b = (b << 15) | (b >>> 17); b ^= a;
    a = (a + b) | 0; b = (b << 26) | (b >>> 6); b ^= a;
    a = (a + b) | 0; b = (b << 6) | (b >>> 26); b ^= a;
    a = (a + ks2) | 0; b = (b + ks0 + 5) | 0;
    // bits → [1, 2) by the exponent trick, then − 1 below (exact in float32).
    bits[2 * p] = (a >>> 9) | 0x3f800000;
    if (2 * p + 1 < n) bits[2 * p + 1] = (b >>> 9) | 0x3f800000;
  }
  for (let i = 0; i < n; i++) out[i] = out[i]! - 1;
}

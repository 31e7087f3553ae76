/**
 * Batched matmul for float32 and float64. Large products run a GotoBLAS-style blocked
 * kernel: a block of B's columns and a block of A's rows are packed (transposes folded into
 * the packing) into Float64Array panels, and a 4×4 micro-kernel keeps its 16 accumulators in
 * local variables while walking the whole K dimension. Accumulating over all of K in doubles
 * before the single store means float32 results are rounded once, like the other kernels.
 */
import type { BufferView } from '../backend.js';
import { allocTyped, type TypedArray } from '../dtype.js';
import { broadcastStrides, sizeOf, type Shape } from '../shape.js';

const MR = 4;
const NR = 4;
/** Columns of B packed at once; A is repacked once per block, a 1/(2·NC) overhead. */
const NC_MAX = 256;
/** Bytes of packed A rows we try to keep in L2 while a B panel sweeps over them. */
const A_BLOCK_BYTES = 512 * 1024;
/** Bytes of packed B we allow per column block before narrowing the block. */
const B_BLOCK_BYTES = 8 * 1024 * 1024;

/** Element (i, k) of A is at off + i·rs + k·cs (likewise (k, j) of B). */
interface MatView {
  data: TypedArray;
  off: number;
  rs: number;
  cs: number;
}

// Reused between calls: matmuls come in long sequences of similar sizes during training.
let packA = new Float64Array(0);
let packB = new Float64Array(0);
const edgeTile = new Float64Array(MR * NR);

function scratchA(n: number): Float64Array {
  if (packA.length < n) packA = new Float64Array(n);
  return packA;
}
function scratchB(n: number): Float64Array {
  if (packB.length < n) packB = new Float64Array(n);
  return packB;
}

export function matmul(
  av: BufferView, a: TypedArray, bv: BufferView, b: TypedArray,
  transA: boolean, transB: boolean, batchShape: Shape,
): TypedArray {
  if (av.dtype !== bv.dtype || (av.dtype !== 'float32' && av.dtype !== 'float64')) {
    throw new Error(`matmul: expected two float inputs of the same dtype, got ${av.dtype} and ${bv.dtype}`);
  }
  const ra = av.shape.length;
  const rb = bv.shape.length;
  if (ra < 2 || rb < 2) throw new Error(`matmul: inputs must have rank ≥ 2, got ${ra} and ${rb}`);
  const M = transA ? av.shape[ra - 1]! : av.shape[ra - 2]!;
  const K = transA ? av.shape[ra - 2]! : av.shape[ra - 1]!;
  const Kb = transB ? bv.shape[rb - 1]! : bv.shape[rb - 2]!;
  const N = transB ? bv.shape[rb - 2]! : bv.shape[rb - 1]!;
  if (K !== Kb) {
    throw new Error(`matmul: inner dimensions differ ([${av.shape.join(',')}] · [${bv.shape.join(',')}])`);
  }
  const nBatch = sizeOf(batchShape);
  const out = allocTyped(av.dtype, nBatch * M * N);
  if (out.length === 0 || K === 0) return out;

  const aBatch = av.shape.slice(0, ra - 2);
  const bBatch = bv.shape.slice(0, rb - 2);
  const aRs = transA ? 1 : K;
  const aCs = transA ? M : 1;
  const bRs = transB ? 1 : N;
  const bCs = transB ? K : 1;

  // x[b, M, K] · w[K, N]: the batch rows of A are contiguous, so one large product packs w once.
  if (!transA && sizeOf(bBatch) === 1 && sizeOf(aBatch) === nBatch) {
    gemm(nBatch * M, N, K, { data: a, off: 0, rs: K, cs: 1 }, { data: b, off: 0, rs: bRs, cs: bCs }, out, 0);
    return out;
  }
  const aStr = broadcastStrides(aBatch, batchShape);
  const bStr = broadcastStrides(bBatch, batchShape);
  const rank = batchShape.length;
  const idx = new Array<number>(rank).fill(0);
  let aBatchOff = 0;
  let bBatchOff = 0;
  for (let t = 0; t < nBatch; t++) {
    gemm(
      M, N, K,
      { data: a, off: aBatchOff * M * K, rs: aRs, cs: aCs },
      { data: b, off: bBatchOff * K * N, rs: bRs, cs: bCs },
      out, t * M * N,
    );
    for (let d = rank - 1; d >= 0; d--) {
      aBatchOff += aStr[d]!;
      bBatchOff += bStr[d]!;
      if (++idx[d]! < batchShape[d]!) break;
      aBatchOff -= aStr[d]! * batchShape[d]!;
      bBatchOff -= bStr[d]! * batchShape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

/** C[M, N] (contiguous at cOff) = A · B. */
function gemm(M: number, N: number, K: number, A: MatView, B: MatView, C: TypedArray, cOff: number): void {
  // Vector cases: packing would cost as much as the product itself and a 4-wide tile would be
  // three-quarters padding.
  if (M === 1) {
    rowTimesMatrix(N, K, A.data, A.off, A.cs, B, C, cOff);
    return;
  }
  if (N === 1) {
    // C[:, 0] = A · b is the transposed problem bᵀ · Aᵀ with a unit output stride.
    rowTimesMatrix(M, K, B.data, B.off, B.rs, { data: A.data, off: A.off, rs: A.cs, cs: A.rs }, C, cOff);
    return;
  }
  const nc = Math.min(NC_MAX, roundUp(N, NR), Math.max(NR, Math.floor(B_BLOCK_BYTES / (8 * K * NR)) * NR));
  const mc = Math.min(roundUp(M, MR), Math.max(MR, Math.floor(A_BLOCK_BYTES / (8 * K * MR)) * MR));
  const bp = scratchB(nc * K);
  const ap = scratchA(mc * K);
  const tile = edgeTile;
  for (let jc = 0; jc < N; jc += nc) {
    const nb = Math.min(nc, N - jc);
    packPanels(bp, B, jc, nb, K, NR, false);
    for (let ic = 0; ic < M; ic += mc) {
      const mb = Math.min(mc, M - ic);
      packPanels(ap, A, ic, mb, K, MR, true);
      for (let jr = 0; jr < nb; jr += NR) {
        const w = Math.min(NR, nb - jr);
        for (let ir = 0; ir < mb; ir += MR) {
          const h = Math.min(MR, mb - ir);
          const c0 = cOff + (ic + ir) * N + jc + jr;
          if (h === MR && w === NR) {
            kernel4x4(ap, ir * K, bp, jr * K, K, C, c0, N);
          } else {
            kernel4x4(ap, ir * K, bp, jr * K, K, tile, 0, NR);
            for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) C[c0 + i * N + j] = tile[i * NR + j]!;
          }
        }
      }
    }
  }
}

function roundUp(n: number, m: number): number {
  return Math.ceil(n / m) * m;
}

/**
 * Packs `count` rows of A (rowsOfA) or columns of B starting at `start` into panels of
 * width `w`: panel p holds, for k = 0..K-1, the w values of its rows/columns at k
 * contiguously, zero-padded past `count`.
 */
function packPanels(dst: Float64Array, V: MatView, start: number, count: number, K: number, w: number, rowsOfA: boolean): void {
  const { data, off } = V;
  // Step along the packed index (row of A / column of B) and along k.
  const sIdx = rowsOfA ? V.rs : V.cs;
  const sK = rowsOfA ? V.cs : V.rs;
  let p = 0;
  for (let q = 0; q < count; q += w) {
    const valid = Math.min(w, count - q);
    const base = off + (start + q) * sIdx;
    if (valid === w && w === 4) {
      for (let k = 0; k < K; k++) {
        const s = base + k * sK;
        dst[p] = data[s]!;
        dst[p + 1] = data[s + sIdx]!;
        dst[p + 2] = data[s + 2 * sIdx]!;
        dst[p + 3] = data[s + 3 * sIdx]!;
        p += 4;
      }
    } else {
      for (let k = 0; k < K; k++) {
        const s = base + k * sK;
        for (let t = 0; t < w; t++) dst[p++] = t < valid ? data[s + t * sIdx]! : 0;
      }
    }
  }
}

function kernel4x4(
  ap: Float64Array, pa: number, bp: Float64Array, pb: number, K: number,
  C: TypedArray | Float64Array, c0: number, ldc: number,
): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  for (let k = 0; k < K; k++) {
    const a0 = ap[pa]!, a1 = ap[pa + 1]!, a2 = ap[pa + 2]!, a3 = ap[pa + 3]!;
    const b0 = bp[pb]!, b1 = bp[pb + 1]!, b2 = bp[pb + 2]!, b3 = bp[pb + 3]!;
    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
    pa += 4;
    pb += 4;
  }
  let r = c0;
  C[r] = c00; C[r + 1] = c01; C[r + 2] = c02; C[r + 3] = c03;
  r += ldc;
  C[r] = c10; C[r + 1] = c11; C[r + 2] = c12; C[r + 3] = c13;
  r += ldc;
  C[r] = c20; C[r + 1] = c21; C[r + 2] = c22; C[r + 3] = c23;
  r += ldc;
  C[r] = c30; C[r + 1] = c31; C[r + 2] = c32; C[r + 3] = c33;
}

/**
 * C[cOff + j] = Σ_k x[xOff + k·xs] · B(k, j) for j < N. Uses the axpy form when B's rows are
 * contiguous along j and the dot form when its columns are contiguous along k.
 */
function rowTimesMatrix(
  N: number, K: number, x: TypedArray, xOff: number, xs: number, B: MatView, C: TypedArray, cOff: number,
): void {
  const { data, off, rs, cs } = B;
  if (cs === 1 || rs !== 1) {
    const acc = new Float64Array(N);
    for (let k = 0; k < K; k++) {
      const xk = x[xOff + k * xs]!;
      const row = off + k * rs;
      if (cs === 1) {
        for (let j = 0; j < N; j++) acc[j] += xk * data[row + j]!;
      } else {
        for (let j = 0; j < N; j++) acc[j] += xk * data[row + j * cs]!;
      }
    }
    for (let j = 0; j < N; j++) C[cOff + j] = acc[j]!;
  } else {
    // Dot form, four columns at a time: four independent accumulators keep the adds from
    // waiting on each other (about 3× one running sum), and each column is still summed in
    // k order, so results equal the one-column loop bit for bit.
    let j = 0;
    for (; j + 4 <= N; j += 4) {
      const c0 = off + j * cs;
      const c1 = c0 + cs;
      const c2 = c1 + cs;
      const c3 = c2 + cs;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < K; k++) {
        const xk = x[xOff + k * xs]!;
        s0 += xk * data[c0 + k]!;
        s1 += xk * data[c1 + k]!;
        s2 += xk * data[c2 + k]!;
        s3 += xk * data[c3 + k]!;
      }
      C[cOff + j] = s0;
      C[cOff + j + 1] = s1;
      C[cOff + j + 2] = s2;
      C[cOff + j + 3] = s3;
    }
    for (; j < N; j++) {
      const col = off + j * cs;
      let s = 0;
      for (let k = 0; k < K; k++) s += x[xOff + k * xs]! * data[col + k]!;
      C[cOff + j] = s;
    }
  }
}

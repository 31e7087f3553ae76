/**
 * Strided iteration shared by the CPU kernels. Every multi-operand loop first collapses its
 * iteration space (dropping size-1 dimensions and merging dimensions that are contiguous in
 * every operand), so that e.g. [B,T,D] + [D] runs as a [B*T, D] loop whose inner dimension
 * is a plain counted loop with constant strides.
 */
import type { TypedArray } from '../dtype.js';
import { collapseDims, type Collapsed, type Shape } from '../shape.js';

export { collapseDims };

/**
 * dst[dOff + Σ i_k·dStrides[k]] = src[sOff + Σ i_k·sStrides[k]] for every index of `shape`.
 * src and dst must be typed arrays of the same dtype.
 */
export function copyStrided(
  shape: Shape,
  src: TypedArray, sOff: number, sStrides: readonly number[],
  dst: TypedArray, dOff: number, dStrides: readonly number[],
): void {
  for (const n of shape) if (n === 0) return;
  const c = collapseDims(shape, [sStrides, dStrides]);
  const cs = c.shape;
  const ss = c.strides[0]!;
  const ds = c.strides[1]!;
  const r = cs.length;
  const n = cs[r - 1]!;
  const si = ss[r - 1]!;
  const di = ds[r - 1]!;
  // A 2-D block whose two fastest dimensions are swapped between source and destination (a
  // transpose) is copied in tiles, so that neither side walks a column across the whole matrix.
  if (r >= 2 && si !== 1 && di === 1 && ss[r - 2] === 1 && n >= 16 && cs[r - 2]! >= 16) {
    copyTransposedTiles(c, src, sOff, dst, dOff);
    return;
  }
  const outer = sizeOfRange(cs, 0, r - 1);
  const idx = new Array<number>(r - 1).fill(0);
  let so = sOff;
  let dout = dOff;
  for (let k = 0; k < outer; k++) {
    if (si === 1 && di === 1) {
      // Contiguous runs: a native block copy beats the element loop past a few elements.
      if (n >= 32) dst.set(src.subarray(so, so + n), dout);
      else for (let j = 0; j < n; j++) dst[dout + j] = src[so + j]!;
    } else {
      let ps = so;
      let pd = dout;
      for (let j = 0; j < n; j++) {
        dst[pd] = src[ps]!;
        ps += si;
        pd += di;
      }
    }
    for (let d = r - 2; d >= 0; d--) {
      so += ss[d]!;
      dout += ds[d]!;
      if (++idx[d]! < cs[d]!) break;
      so -= ss[d]! * cs[d]!;
      dout -= ds[d]! * cs[d]!;
      idx[d] = 0;
    }
  }
}

const TILE = 32;

function copyTransposedTiles(c: Collapsed, src: TypedArray, sOff: number, dst: TypedArray, dOff: number): void {
  const cs = c.shape;
  const ss = c.strides[0]!;
  const ds = c.strides[1]!;
  const r = cs.length;
  const rows = cs[r - 2]!;
  const cols = cs[r - 1]!;
  const sRow = ss[r - 2]!; // = 1
  const sCol = ss[r - 1]!;
  const dRow = ds[r - 2]!;
  const dCol = ds[r - 1]!; // = 1
  const outer = sizeOfRange(cs, 0, r - 2);
  const idx = new Array<number>(Math.max(0, r - 2)).fill(0);
  let so = sOff;
  let dout = dOff;
  for (let k = 0; k < outer; k++) {
    for (let i0 = 0; i0 < rows; i0 += TILE) {
      const i1 = Math.min(rows, i0 + TILE);
      for (let j0 = 0; j0 < cols; j0 += TILE) {
        const j1 = Math.min(cols, j0 + TILE);
        for (let i = i0; i < i1; i++) {
          let ps = so + i * sRow + j0 * sCol;
          let pd = dout + i * dRow + j0 * dCol;
          for (let j = j0; j < j1; j++) {
            dst[pd++] = src[ps]!;
            ps += sCol;
          }
        }
      }
    }
    for (let d = r - 3; d >= 0; d--) {
      so += ss[d]!;
      dout += ds[d]!;
      if (++idx[d]! < cs[d]!) break;
      so -= ss[d]! * cs[d]!;
      dout -= ds[d]! * cs[d]!;
      idx[d] = 0;
    }
  }
}

export function sizeOfRange(shape: Shape, from: number, to: number): number {
  let n = 1;
  for (let i = from; i < to; i++) n *= shape[i]!;
  return n;
}

/** Shape arithmetic shared by the frontend and every backend. Shapes are plain number arrays. */
export type Shape = readonly number[];

export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The largest extent an axis may have (typed arrays index below 2^31 in every engine we run on). */
export const MAX_AXIS = 2 ** 31 - 1;

/** Throws, naming the op, unless `shape` is an array of non-negative integers no larger than MAX_AXIS. */
export function checkShapeDims(op: string, shape: unknown, what = 'shape'): asserts shape is Shape {
  if (!Array.isArray(shape)) throw new Error(`${op}: ${what} must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${op}: ${what} must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    if (d > MAX_AXIS) throw new Error(`${op}: ${what} ${fmtShape(shape)} has an axis of ${d}, larger than ${MAX_AXIS}, the most an axis can hold`);
  }
}

export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

export function fmtShape(shape: Shape): string {
  return `[${shape.join(',')}]`;
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** numpy broadcasting; returns null when the shapes are incompatible. */
export function tryBroadcastShapes(...shapes: Shape[]): number[] | null {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i]!;
      if (d === 1) continue;
      if (out[o] === 1) out[o] = d;
      else if (out[o] !== d) return null;
    }
  }
  return out;
}

/**
 * Strides for reading `shape` as if broadcast to `outShape`: broadcast dimensions get
 * stride 0 and missing leading dimensions are padded.
 */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const strides = stridesOf(shape);
  const out = new Array<number>(outShape.length).fill(0);
  const off = outShape.length - shape.length;
  for (let i = 0; i < shape.length; i++) out[off + i] = shape[i] === 1 ? 0 : strides[i]!;
  return out;
}

/** Normalise possibly-negative axes against a rank; throws with the op's name when out of range. */
/**
 * How `fine` splits the axes of `coarse`: each axis of `coarse` (size-1 ones aside) is a run of
 * consecutive axes of `fine` whose sizes multiply to it, size-1 axes allowed anywhere (a
 * reshape of [.., 64, ..] to [.., 4, 16, ..]). For each axis of `fine`: the axis of `coarse` it
 * is part of (-1 for size-1 axes) and its row-major stride within that axis. Null when `fine`
 * merges axes of `coarse` instead.
 */
export function axisSplit(coarse: Shape, fine: Shape): { of: number[]; factor: number[] } | null {
  const of = fine.map(() => -1);
  const factor = fine.map(() => 1);
  const fineAxes = fine.flatMap((d, a) => (d === 1 ? [] : [a]));
  let j = 0;
  for (let a = 0; a < coarse.length; a++) {
    if (coarse[a] === 1) continue;
    const start = j;
    let prod = 1;
    while (prod < coarse[a]! && j < fineAxes.length) prod *= fine[fineAxes[j++]!]!;
    if (prod !== coarse[a]) return null;
    let inner = 1;
    for (let g = j - 1; g >= start; g--) {
      const k = fineAxes[g]!;
      of[k] = a;
      factor[k] = inner;
      inner *= fine[k]!;
    }
  }
  return j === fineAxes.length ? { of, factor } : null;
}

export function normalizeAxis(op: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank) {
    throw new Error(`${op}: axis ${axis} is out of range for rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}

export function normalizeAxes(op: string, axes: number | readonly number[] | undefined, rank: number): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axes === 'number' ? [axes] : axes;
  const out = list.map((a) => normalizeAxis(op, a, rank));
  if (new Set(out).size !== out.length) throw new Error(`${op}: repeated axis in [${list.join(',')}]`);
  return out.sort((a, b) => a - b);
}

/**
 * Iteration-space collapsing shared by the backends: drops size-1 dimensions and merges
 * dimensions that are contiguous in every operand, so that e.g. [B,T,D] + [D] runs as a
 * [B*T, D] loop.
 */
export interface Collapsed {
  shape: number[];
  /** One stride array per operand, aligned with `shape`. */
  strides: number[][];
}

/** Always returns rank ≥ 1 (a scalar iteration space becomes [1]). */
export function collapseDims(shape: Shape, strides: readonly (readonly number[])[]): Collapsed {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    const n = shape[d]!;
    if (n === 1) continue;
    const last = outShape.length - 1;
    // Merging dimension d into the previous kept one is valid when, for every operand, one
    // step along the previous dimension equals n steps along d.
    let merge = last >= 0;
    for (let s = 0; merge && s < strides.length; s++) {
      if (outStrides[s]![last] !== strides[s]![d]! * n) merge = false;
    }
    if (merge) {
      outShape[last] = outShape[last]! * n;
      for (let s = 0; s < strides.length; s++) outStrides[s]![last] = strides[s]![d]!;
    } else {
      outShape.push(n);
      for (let s = 0; s < strides.length; s++) outStrides[s]!.push(strides[s]![d]!);
    }
  }
  if (outShape.length === 0) {
    outShape.push(1);
    for (const st of outStrides) st.push(0);
  }
  return { shape: outShape, strides: outStrides };
}


/**
 * Dim collapsing for kernel launches. The plain shape helpers (sizeOf, stridesOf,
 * broadcastStrides, fmtShape) come from @softgrad/tensor.
 */

export interface Collapsed {
  shape: number[];
  strides: number[][];
}

/**
 * Drops size-1 dims and merges neighbours that are contiguous in every operand, so index
 * math in the kernels runs over as few dims as possible ([B,T,D] + [D] becomes [B*T, D]).
 * Always returns rank ≥ 1.
 */
export function collapseDims(shape: readonly number[], strides: readonly (readonly number[])[]): Collapsed {
  const outShape: number[] = [];
  const outStrides: number[][] = strides.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    const n = shape[d]!;
    if (n === 1) continue;
    const last = outShape.length - 1;
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

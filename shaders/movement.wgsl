// Data movement as one strided copy over 32-bit words (the dtype does not matter):
//   out[outOffset + sum_k idx_k * outStride_k] = inp[inOffset + sum_k idx_k * inStride_k]
// for every index vector idx of the iteration shape. transpose, broadcastTo and slice
// iterate over the output; pad and concat iterate over an input written into a region.
// Params: [0] = n, [1] = rank, [2] = inOffset, [3] = outOffset, from 4: shape, inStrides, outStrides.
// dyncopy (dynamicSlice / dynamicUpdateSlice) adds a start index read from a buffer, clamped to
// [0, P(60)], times the axis stride P(61), to the input (P(62) = 0) or the output (1) offset.

@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> inp: array<u32>;

//! kernel copy
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = groupIndex(wid, nwg) * 256u + lid;
  if (i >= P(0u)) { return; }
  let rank = P(1u);
  var rem = i;
  var src = P(2u);
  var dst = P(3u);
  for (var d = rank; d > 0u; d = d - 1u) {
    let k = d - 1u;
    let dim = P(4u + k);
    let c = rem % dim;
    rem = rem / dim;
    src = src + c * P(4u + rank + k);
    dst = dst + c * P(4u + 2u * rank + k);
  }
  out[dst] = inp[src];
}

//! kernel dyncopy
@group(0) @binding(3) var<storage, read> dynIndex: array<i32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = groupIndex(wid, nwg) * 256u + lid;
  if (i >= P(0u)) { return; }
  let rank = P(1u);
  let shift = u32(clamp(dynIndex[0], 0, i32(P(60u)))) * P(61u);
  var rem = i;
  var src = P(2u);
  var dst = P(3u);
  if (P(62u) == 0u) { src = src + shift; } else { dst = dst + shift; }
  for (var d = rank; d > 0u; d = d - 1u) {
    let k = d - 1u;
    let dim = P(4u + k);
    let c = rem % dim;
    rem = rem / dim;
    src = src + c * P(4u + rank + k);
    dst = dst + c * P(4u + 2u * rank + k);
  }
  out[dst] = inp[src];
}

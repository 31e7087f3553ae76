// Elementwise kernels. Buffers hold 32-bit words: f32, i32, or u32 for bool (0/1). The
// per-op functions they use (tanhStable, powF, ...) are in common.wgsl, shared with the
// kernels the fused-kernel code generator writes.
// Params: [0] = element count n; strided kernels add [1] = rank, then from word 4 the output
// shape followed by one stride vector per input (stride 0 on broadcast dimensions).

fn stridedOffsets(i: u32, rank: u32, nIn: u32) -> vec3<u32> {
  var rem = i;
  var off = vec3<u32>(0u, 0u, 0u);
  for (var d = rank; d > 0u; d = d - 1u) {
    let k = d - 1u;
    let dim = P(4u + k);
    let c = rem % dim;
    rem = rem / dim;
    off.x = off.x + c * P(4u + rank + k);
    if (nIn > 1u) { off.y = off.y + c * P(4u + 2u * rank + k); }
    if (nIn > 2u) { off.z = off.z + c * P(4u + 3u * rank + k); }
  }
  return off;
}

//! kernel unary
@group(0) @binding(1) var<storage, read_write> out: array<{{O}}>;
@group(0) @binding(2) var<storage, read> inp: array<{{X}}>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = groupIndex(wid, nwg) * 256u + lid;
  if (i >= P(0u)) { return; }
  let x = inp[i];
  out[i] = {{EXPR}};
}

//! kernel binary
@group(0) @binding(1) var<storage, read_write> out: array<{{O}}>;
@group(0) @binding(2) var<storage, read> inA: array<{{X}}>;
@group(0) @binding(3) var<storage, read> inB: array<{{X}}>;
const STRIDED: bool = {{STRIDED}};

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = groupIndex(wid, nwg) * 256u + lid;
  if (i >= P(0u)) { return; }
  var ia = i; var ib = i;
  if (STRIDED) {
    let off = stridedOffsets(i, P(1u), 2u);
    ia = off.x; ib = off.y;
  }
  let a = inA[ia];
  let b = inB[ib];
  out[i] = {{EXPR}};
}

//! kernel where
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> cond: array<u32>;
@group(0) @binding(3) var<storage, read> inA: array<u32>;
@group(0) @binding(4) var<storage, read> inB: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = groupIndex(wid, nwg) * 256u + lid;
  if (i >= P(0u)) { return; }
  let off = stridedOffsets(i, P(1u), 3u);
  out[i] = select(inB[off.z], inA[off.y], cond[off.x] != 0u);
}

//! kernel fill
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = groupIndex(wid, nwg) * 256u + lid;
  if (i >= P(0u)) { return; }
  out[i] = P(1u);
}

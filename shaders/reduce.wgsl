// Reductions without float atomics: each output's inputs are combined in a fixed order, so
// results are identical run to run. The reduced axes need not be innermost: an output index
// and a reduction index are each decoded against their own (collapsed) dims and strides.
// Params: [0] = outputs, [1] = R (inputs per output), [2] = kept rank kr, [3] = reduced rank rr,
// from 4: kept shape, kept strides, reduced shape, reduced strides (input strides).
// {{T}} element type, {{O}} output type, {{IDENTITY}} the neutral value, {{COMBINE}} the body
// of combine(a, b) (with a holding lower reduction indices when order matters), {{RESULT}}
// the output expression of the final state s.

struct S { v: {{T}}, i: i32 }

@group(0) @binding(1) var<storage, read_write> out: array<{{O}}>;
@group(0) @binding(2) var<storage, read> inp: array<{{T}}>;

fn combine(a: S, b: S) -> S { {{COMBINE}} }

fn outerOffset(o: u32) -> u32 {
  let kr = P(2u);
  var rem = o; var off = 0u;
  for (var d = kr; d > 0u; d = d - 1u) {
    let k = d - 1u;
    let dim = P(4u + k);
    off = off + (rem % dim) * P(4u + kr + k);
    rem = rem / dim;
  }
  return off;
}

fn innerOffset(r: u32) -> u32 {
  let base = 4u + 2u * P(2u);
  let rr = P(3u);
  var rem = r; var off = 0u;
  for (var d = rr; d > 0u; d = d - 1u) {
    let k = d - 1u;
    let dim = P(base + k);
    off = off + (rem % dim) * P(base + rr + k);
    rem = rem / dim;
  }
  return off;
}

//! kernel rows
// One workgroup per output: each thread folds a strided share, then a shared-memory tree.
var<workgroup> partial: array<S, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let o = groupIndex(wid, nwg);
  let inBounds = o < P(0u);
  let R = P(1u);
  var s = S({{IDENTITY}}, -1);
  if (inBounds) {
    let base = outerOffset(o);
    for (var r = lid; r < R; r = r + 256u) {
      s = combine(s, S(inp[base + innerOffset(r)], i32(r)));
    }
  }
  partial[lid] = s;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride = stride >> 1u) {
    if (lid < stride) { partial[lid] = combine(partial[lid], partial[lid + stride]); }
    workgroupBarrier();
  }
  if (lid == 0u && inBounds) {
    let s = partial[0];
    out[o] = {{RESULT}};
  }
}

//! kernel thread
// One thread per output, for short reductions (e.g. a bias gradient summed over a batch).
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let o = groupIndex(wid, nwg) * 256u + lid;
  if (o >= P(0u)) { return; }
  let R = P(1u);
  let base = outerOffset(o);
  var s = S({{IDENTITY}}, -1);
  for (var r = 0u; r < R; r = r + 1u) {
    s = combine(s, S(inp[base + innerOffset(r)], i32(r)));
  }
  out[o] = {{RESULT}};
}

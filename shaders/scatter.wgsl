// scatterAdd, the adjoint of gather, with updates viewed as [pre, J, post] and the output as
// [pre, D, post]: out[p, d, q] = sum over j with indices[j] = d of updates[p, j, q].
// Deterministic without float atomics: each output sums its contributions in increasing j.
// Short index lists use `direct` (every output scans all J indices). Long ones build a
// bucket list on the GPU — count (integer atomics), exclusive scan, fill, sort each bucket
// by j — and `sum` then reads only its own bucket.

//! kernel direct
// Params: [0] = n (= pre*D*post), [1] = D, [2] = J, [3] = post.
@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;
@group(0) @binding(2) var<storage, read> upd: array<{{T}}>;
@group(0) @binding(3) var<storage, read> indices: array<i32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = groupIndex(wid, nwg) * 256u + lid;
  if (i >= P(0u)) { return; }
  let D = P(1u); let J = P(2u); let post = P(3u);
  let q = i % post;
  let t = i / post;
  let d = i32(t % D);
  let p = t / D;
  var acc = {{T}}(0);
  for (var j = 0u; j < J; j = j + 1u) {
    if (indices[j] == d) { acc = acc + upd[(p * J + j) * post + q]; }
  }
  out[i] = acc;
}

//! kernel count
// Params: [0] = J, [1] = D. Out-of-range indices are skipped and recorded in `err`.
@group(0) @binding(1) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> err: array<atomic<u32>, 4>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let j = groupIndex(wid, nwg) * 256u + lid;
  if (j >= P(0u)) { return; }
  let idx = indices[j];
  if (idx < 0 || u32(idx) >= P(1u)) {
    atomicStore(&err[1], bitcast<u32>(idx));
    atomicStore(&err[2], P(1u));
    atomicStore(&err[0], 1u);
    return;
  }
  atomicAdd(&counts[u32(idx)], 1u);
}

//! kernel scan
// Params: [0] = D. One workgroup: offsets[d] = sum of counts[< d], offsets[D] = total; counts
// are zeroed so `fill` can reuse them as per-bucket cursors.
@group(0) @binding(1) var<storage, read_write> offsets: array<u32>;
@group(0) @binding(2) var<storage, read_write> counts: array<u32>;
var<workgroup> chunkTotal: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
  let D = P(0u);
  let chunk = (D + 255u) / 256u;
  let start = min(lid * chunk, D);
  let end = min(start + chunk, D);
  var s = 0u;
  for (var d = start; d < end; d = d + 1u) { s = s + counts[d]; }
  chunkTotal[lid] = s;
  workgroupBarrier();
  if (lid == 0u) {
    var run = 0u;
    for (var t = 0u; t < 256u; t = t + 1u) {
      let c = chunkTotal[t];
      chunkTotal[t] = run;
      run = run + c;
    }
    offsets[D] = run;
  }
  workgroupBarrier();
  var run = chunkTotal[lid];
  for (var d = start; d < end; d = d + 1u) {
    offsets[d] = run;
    run = run + counts[d];
    counts[d] = 0u;
  }
}

//! kernel fill
// Params: [0] = J, [1] = D. Bucket order is arbitrary here; `sort` fixes it.
@group(0) @binding(1) var<storage, read_write> perm: array<u32>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read> offsets: array<u32>;
@group(0) @binding(4) var<storage, read_write> cursor: array<atomic<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let j = groupIndex(wid, nwg) * 256u + lid;
  if (j >= P(0u)) { return; }
  let idx = indices[j];
  if (idx < 0 || u32(idx) >= P(1u)) { return; }
  let d = u32(idx);
  perm[offsets[d] + atomicAdd(&cursor[d], 1u)] = j;
}

//! kernel sort
// Params: [0] = D. Insertion sort per bucket (buckets are short for real index lists).
@group(0) @binding(1) var<storage, read_write> perm: array<u32>;
@group(0) @binding(2) var<storage, read> offsets: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let d = groupIndex(wid, nwg) * 256u + lid;
  if (d >= P(0u)) { return; }
  let lo = offsets[d];
  let hi = offsets[d + 1u];
  for (var s = lo + 1u; s < hi; s = s + 1u) {
    let v = perm[s];
    var t = s;
    loop {
      if (t <= lo) { break; }
      let u = perm[t - 1u];
      if (u <= v) { break; }
      perm[t] = u;
      t = t - 1u;
    }
    perm[t] = v;
  }
}

//! kernel sum
// Params: [0] = n (= pre*D*post), [1] = D, [2] = J, [3] = post.
@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;
@group(0) @binding(2) var<storage, read> upd: array<{{T}}>;
@group(0) @binding(3) var<storage, read> perm: array<u32>;
@group(0) @binding(4) var<storage, read> offsets: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = groupIndex(wid, nwg) * 256u + lid;
  if (i >= P(0u)) { return; }
  let D = P(1u); let J = P(2u); let post = P(3u);
  let q = i % post;
  let t = i / post;
  let d = t % D;
  let p = t / D;
  var acc = {{T}}(0);
  for (var s = offsets[d]; s < offsets[d + 1u]; s = s + 1u) {
    acc = acc + upd[(p * J + perm[s]) * post + q];
  }
  out[i] = acc;
}

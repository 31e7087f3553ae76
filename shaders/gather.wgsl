// numpy take along one axis, with x viewed as [pre, D, post] and indices flattened to J:
//   out[p, j, q] = x[p, indices[j], q]
// An index outside [0, D) is clamped (memory safety) and recorded in `err` — [0] = 1, then the
// index and D — which the backend checks at the next read, since a kernel cannot throw.
// Params: [0] = n (= pre*J*post), [1] = D, [2] = J, [3] = post.

@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read> indices: array<i32>;
@group(0) @binding(4) var<storage, read_write> err: array<atomic<u32>, 4>;

//! kernel take
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = groupIndex(wid, nwg) * 256u + lid;
  if (i >= P(0u)) { return; }
  let D = P(1u); let J = P(2u); let post = P(3u);
  let q = i % post;
  let t = i / post;
  let j = t % J;
  let p = t / J;
  var idx = indices[j];
  if (idx < 0 || u32(idx) >= D) {
    atomicStore(&err[1], bitcast<u32>(idx));
    atomicStore(&err[2], D);
    atomicStore(&err[0], 1u);
    idx = clamp(idx, 0, i32(D) - 1);
  }
  out[i] = x[(p * D + u32(idx)) * post + q];
}

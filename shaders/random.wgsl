// Uniform floats in [0, 1) from Threefry-2x32 (20 rounds), bit for bit the rule documented on
// Backend.randomUniform: pair p = floor(i/2) gives (x0, x1) = threefry(key, (p, 0)); element 2p
// takes x0, element 2p+1 takes x1; value = bitcast<f32>((bits >> 9) | 0x3f800000) - 1.
// Params: [0] = n, [1] = key0, [2] = key1.

@group(0) @binding(1) var<storage, read_write> out: array<f32>;

fn rotl(x: u32, r: u32) -> u32 { return (x << r) | (x >> (32u - r)); }

fn threefry(k0: u32, k1: u32, c0: u32, c1: u32) -> vec2<u32> {
  let ks = array<u32, 3>(k0, k1, k0 ^ k1 ^ 0x1bd11bdau);
  let rot = array<u32, 8>(13u, 15u, 26u, 6u, 17u, 29u, 16u, 24u);
  var a = c0 + ks[0];
  var b = c1 + ks[1];
  for (var block = 0u; block < 5u; block = block + 1u) {
    for (var r = 0u; r < 4u; r = r + 1u) {
      a = a + b;
      b = rotl(b, rot[(block % 2u) * 4u + r]);
      b = b ^ a;
    }
    let s = block + 1u;
    a = a + ks[s % 3u];
    b = b + ks[(s + 1u) % 3u] + s;
  }
  return vec2<u32>(a, b);
}

fn unitFloat(bits: u32) -> f32 { return bitcast<f32>((bits >> 9u) | 0x3f800000u) - 1.0; }

//! kernel uniform
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let p = groupIndex(wid, nwg) * 256u + lid;
  let n = P(0u);
  if (2u * p >= n) { return; }
  let bits = threefry(P(1u), P(2u), p, 0u);
  out[2u * p] = unitFloat(bits.x);
  if (2u * p + 1u < n) { out[2u * p + 1u] = unitFloat(bits.y); }
}

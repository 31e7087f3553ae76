// Prepended to every kernel. Per-dispatch parameters (sizes, shapes, strides) arrive as 64
// uniform u32 words, so one compiled pipeline serves every shape. Templates use double-brace
// placeholders that the backend fills in (element types, op expressions, tile sizes).
struct Params { w: array<vec4<u32>, 16> }
@group(0) @binding(0) var<uniform> params: Params;

fn P(i: u32) -> u32 { return params.w[i >> 2u][i & 3u]; }

// Grids larger than 65535 workgroups are folded into (x, y); this undoes the fold.
fn groupIndex(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.y * nwg.x + wid.x; }

// Bit test rather than x != x: WGSL lets compilers assume NaN never occurs in comparisons.
fn isNan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }

// NaN and infinity as constants are compile errors in WGSL; read through a private variable
// they stay run-time values.
var<private> NAN_BITS: u32 = 0x7fc00000u;
var<private> INF_BITS: u32 = 0x7f800000u;
fn nanF() -> f32 { return bitcast<f32>(NAN_BITS); }
fn infF() -> f32 { return bitcast<f32>(INF_BITS); }

// Per-op functions with the CPU backend's semantics, used by the elementwise kernels and by
// the code generator of fused kernels.
fn tanhStable(x: f32) -> f32 {
  // Drivers' tanh may be (e^2x - 1)/(e^2x + 1): its error near zero is absolute (0.2 % at
  // 5e-5), and large |x| overflows e^2x. Small |x|: the minimax polynomial the WASM backend
  // uses; x == 0 returns x itself so that tanh(-0) stays -0. Large |x|: exp(-2|x|) never overflows.
  let a = abs(x);
  if (a < 0.625) {
    if (x == 0.0) { return x; }
    let z = x * x;
    let p = (((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z - 3.33332819422e-1;
    return x + x * z * p;
  }
  let e = exp(-2.0 * a);
  return sign(x) * (1.0 - e) / (1.0 + e);
}
fn sigmoidStable(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}
fn signF(x: f32) -> f32 {
  if (isNan(x)) { return x; }
  return sign(x);
}
fn maxF(a: f32, b: f32) -> f32 {
  if (isNan(a) || isNan(b)) { return nanF(); }
  return max(a, b);
}
fn minF(a: f32, b: f32) -> f32 {
  if (isNan(a) || isNan(b)) { return nanF(); }
  return min(a, b);
}
// Integer power by squaring with wrapping multiplication (what int32 pow means on the CPU).
fn powI(a: i32, b: i32) -> i32 {
  if (b < 0) {
    if (a == 1) { return 1; }
    if (a == -1) { return select(-1, 1, (b & 1) == 0); }
    return 0;
  }
  var base = a; var e = b; var r = 1;
  loop {
    if (e == 0) { break; }
    if ((e & 1) == 1) { r = r * base; }
    base = base * base;
    e = e >> 1;
  }
  return r;
}
// Math.pow semantics: integral exponents of negative bases keep their sign; x^0 = 1 even for NaN.
fn powF(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (isNan(a) || isNan(b)) { return nanF(); }
  if (a == 0.0) { return select(infF(), 0.0, b > 0.0); }
  let r = pow(abs(a), b);
  if (a > 0.0) { return r; }
  if (floor(b) != b) { return nanF(); }
  let odd = abs(b) < 16777216.0 && (i32(abs(b)) & 1) == 1;
  return select(r, -r, odd);
}
fn divI(a: i32, b: i32) -> i32 {
  if (b == 0) { return 0; }
  return a / b;
}

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

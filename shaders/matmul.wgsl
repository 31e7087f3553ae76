// Batched float32 matmul: out[z] = op(A[z]) · op(B[z]) with op = transpose when TRANS_*,
// read through index math (no transposed copy). Batch dims broadcast through per-dim batch
// strides (0 where a batch dim is broadcast).
// Params: [0] = M, [1] = N, [2] = K, [3] = batch rank br, [4] = first batch index of this
// dispatch (grids cap z at 65535), from 8: batch shape, A batch strides, B batch strides.

@group(0) @binding(1) var<storage, read_write> out: array<f32>;

const TRANS_A: bool = {{TRANS_A}};
const TRANS_B: bool = {{TRANS_B}};

fn batchOffsets(z: u32) -> vec2<u32> {
  let br = P(3u);
  var rem = z;
  var off = vec2<u32>(0u, 0u);
  for (var d = br; d > 0u; d = d - 1u) {
    let k = d - 1u;
    let dim = P(8u + k);
    let c = rem % dim;
    rem = rem / dim;
    off = off + c * vec2<u32>(P(8u + br + k), P(8u + 2u * br + k));
  }
  return off;
}

//! kernel tiled
@group(0) @binding(2) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
// Each thread owns a 4×4 block of outputs held in four vec4 registers; the workgroup stages
// BK-deep slices of A and B in shared memory as vec4 columns, so the inner loop is two vec4
// loads and four vec4 FMAs per k.
const WX = {{WX}}u;
const WY = {{WY}}u;
const BK = {{BK}}u;
const BM = WY * 4u;
const BN = WX * 4u;
const THREADS = WX * WY;

var<workgroup> As: array<vec4<f32>, BK * WY>;
var<workgroup> Bs: array<vec4<f32>, BK * WX>;

@compute @workgroup_size(WX, WY)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let M = P(0u); let N = P(1u); let K = P(2u);
  let z = wid.z + P(4u);
  let offs = batchOffsets(z);
  let row0 = wid.y * BM;
  let col0 = wid.x * BN;
  var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < K; k0 = k0 + BK) {
    // Consecutive threads take consecutive addresses of whichever layout the operand has.
    for (var e = tid; e < BM * BK; e = e + THREADS) {
      var m: u32; var k: u32;
      if (TRANS_A) { m = e % BM; k = e / BM; } else { k = e % BK; m = e / BK; }
      let gm = row0 + m; let gk = k0 + k;
      var v = 0.0;
      if (gm < M && gk < K) { v = A[offs.x + select(gm * K + gk, gk * M + gm, TRANS_A)]; }
      As[k * WY + m / 4u][m % 4u] = v;
    }
    for (var e = tid; e < BN * BK; e = e + THREADS) {
      var n: u32; var k: u32;
      if (TRANS_B) { k = e % BK; n = e / BK; } else { n = e % BN; k = e / BN; }
      let gn = col0 + n; let gk = k0 + k;
      var v = 0.0;
      if (gn < N && gk < K) { v = B[offs.y + select(gk * N + gn, gn * K + gk, TRANS_B)]; }
      Bs[k * WX + n / 4u][n % 4u] = v;
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k = k + 1u) {
      let a = As[k * WY + lid.y];
      let b = Bs[k * WX + lid.x];
      acc0 = fma(vec4<f32>(a.x), b, acc0);
      acc1 = fma(vec4<f32>(a.y), b, acc1);
      acc2 = fma(vec4<f32>(a.z), b, acc2);
      acc3 = fma(vec4<f32>(a.w), b, acc3);
    }
    workgroupBarrier();
  }
  let outBase = z * M * N;
  let col = col0 + lid.x * 4u;
  let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  for (var i = 0u; i < 4u; i = i + 1u) {
    let row = row0 + lid.y * 4u + i;
    if (row >= M) { break; }
    for (var j = 0u; j < 4u; j = j + 1u) {
      if (col + j < N) { out[outBase + row * N + col + j] = acc[i][j]; }
    }
  }
}

//! kernel gemv
@group(0) @binding(2) var<storage, read> A: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
// M = 1 (decoding): one thread per output column; the workgroup shares 256-long slices of
// the vector. A's layout is the same whether or not it is transposed when M = 1.
var<workgroup> av: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let N = P(1u); let K = P(2u);
  let z = wid.z + P(4u);
  let offs = batchOffsets(z);
  let n = wid.x * 256u + lid;
  var acc = 0.0;
  for (var k0 = 0u; k0 < K; k0 = k0 + 256u) {
    var v = 0.0;
    if (k0 + lid < K) { v = A[offs.x + k0 + lid]; }
    av[lid] = v;
    workgroupBarrier();
    if (n < N) {
      let kEnd = min(256u, K - k0);
      for (var kk = 0u; kk < kEnd; kk = kk + 1u) {
        let k = k0 + kk;
        acc = fma(av[kk], B[offs.y + select(k * N + n, n * K + k, TRANS_B)], acc);
      }
    }
    workgroupBarrier();
  }
  if (n < N) { out[z * N + n] = acc; }
}

//! kernel tiled4
// The tiled kernel with vec4 global loads, for when each operand's contiguous dim is a
// multiple of 4 (so batch offsets are too). An operand contiguous along its tile dim (B, or
// A transposed) is copied to shared memory vec4 for vec4; one contiguous along K is read as
// 4×4 blocks and transposed in registers.
@group(0) @binding(2) var<storage, read> A4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> B4: array<vec4<f32>>;
const WX = {{WX}}u;
const WY = {{WY}}u;
const BK = {{BK}}u;
// Rows per thread (4 or 8): 8 halves the shared-memory reads of B per multiply-add.
const TM = {{TM}}u;
const BM = WY * TM;
const BM4 = BM / 4u;
const BN = WX * 4u;
const THREADS = WX * WY;

var<workgroup> As: array<vec4<f32>, BK * BM4>;
var<workgroup> Bs: array<vec4<f32>, BK * WX>;

fn loadA4(base: u32, m: u32, k: u32, M: u32, K: u32) -> vec4<f32> {
  // m (TRANS_A) or k (otherwise) is the first of 4 contiguous elements.
  if (m >= M || k >= K) { return vec4<f32>(0.0); }
  return A4[(base + select(m * K + k, k * M + m, TRANS_A)) / 4u];
}
fn loadB4(base: u32, k: u32, n: u32, K: u32, N: u32) -> vec4<f32> {
  if (n >= N || k >= K) { return vec4<f32>(0.0); }
  return B4[(base + select(k * N + n, n * K + k, TRANS_B)) / 4u];
}

@compute @workgroup_size(WX, WY)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let M = P(0u); let N = P(1u); let K = P(2u);
  let z = wid.z + P(4u);
  let offs = batchOffsets(z);
  let row0 = wid.y * BM;
  let col0 = wid.x * BN;
  var acc: array<vec4<f32>, TM>;
  for (var i = 0u; i < TM; i = i + 1u) { acc[i] = vec4<f32>(0.0); }
  for (var k0 = 0u; k0 < K; k0 = k0 + BK) {
    if (TRANS_A) {
      for (var e = tid; e < BK * BM4; e = e + THREADS) {
        let k = e / BM4; let mb = e % BM4;
        As[e] = loadA4(offs.x, row0 + mb * 4u, k0 + k, M, K);
      }
    } else {
      for (var e = tid; e < BM4 * (BK / 4u); e = e + THREADS) {
        let mb = e / (BK / 4u); let kb = e % (BK / 4u);
        let m = row0 + mb * 4u; let k = k0 + kb * 4u;
        let r0 = loadA4(offs.x, m, k, M, K);
        let r1 = loadA4(offs.x, m + 1u, k, M, K);
        let r2 = loadA4(offs.x, m + 2u, k, M, K);
        let r3 = loadA4(offs.x, m + 3u, k, M, K);
        let s = kb * 4u * BM4 + mb;
        As[s] = vec4<f32>(r0.x, r1.x, r2.x, r3.x);
        As[s + BM4] = vec4<f32>(r0.y, r1.y, r2.y, r3.y);
        As[s + 2u * BM4] = vec4<f32>(r0.z, r1.z, r2.z, r3.z);
        As[s + 3u * BM4] = vec4<f32>(r0.w, r1.w, r2.w, r3.w);
      }
    }
    if (!TRANS_B) {
      for (var e = tid; e < BK * WX; e = e + THREADS) {
        let k = e / WX; let nb = e % WX;
        Bs[e] = loadB4(offs.y, k0 + k, col0 + nb * 4u, K, N);
      }
    } else {
      for (var e = tid; e < WX * (BK / 4u); e = e + THREADS) {
        let nb = e / (BK / 4u); let kb = e % (BK / 4u);
        let n = col0 + nb * 4u; let k = k0 + kb * 4u;
        let c0 = loadB4(offs.y, k, n, K, N);
        let c1 = loadB4(offs.y, k, n + 1u, K, N);
        let c2 = loadB4(offs.y, k, n + 2u, K, N);
        let c3 = loadB4(offs.y, k, n + 3u, K, N);
        let s = kb * 4u * WX + nb;
        Bs[s] = vec4<f32>(c0.x, c1.x, c2.x, c3.x);
        Bs[s + WX] = vec4<f32>(c0.y, c1.y, c2.y, c3.y);
        Bs[s + 2u * WX] = vec4<f32>(c0.z, c1.z, c2.z, c3.z);
        Bs[s + 3u * WX] = vec4<f32>(c0.w, c1.w, c2.w, c3.w);
      }
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k = k + 1u) {
      let b = Bs[k * WX + lid.x];
      for (var r = 0u; r < TM / 4u; r = r + 1u) {
        let a = As[k * BM4 + lid.y * (TM / 4u) + r];
        acc[4u * r] = fma(vec4<f32>(a.x), b, acc[4u * r]);
        acc[4u * r + 1u] = fma(vec4<f32>(a.y), b, acc[4u * r + 1u]);
        acc[4u * r + 2u] = fma(vec4<f32>(a.z), b, acc[4u * r + 2u]);
        acc[4u * r + 3u] = fma(vec4<f32>(a.w), b, acc[4u * r + 3u]);
      }
    }
    workgroupBarrier();
  }
  let outBase = z * M * N;
  let col = col0 + lid.x * 4u;
  for (var i = 0u; i < TM; i = i + 1u) {
    let row = row0 + lid.y * TM + i;
    if (row >= M) { break; }
    for (var j = 0u; j < 4u; j = j + 1u) {
      if (col + j < N) { out[outBase + row * N + col + j] = acc[i][j]; }
    }
  }
}

//! kernel direct4
// The vec4 kernel without workgroup memory, for software adapters: on llvmpipe shared-memory
// reads cost about as much as storage reads, and the staging plus barriers of tiled4 cost
// more than they save. Each thread computes a TM×4 block of outputs reading A and B straight
// from storage as vec4s, four K steps at a time. Same preconditions as tiled4. Indices are
// clamped so every load is in bounds; outputs outside [M, N] are never stored.
@group(0) @binding(2) var<storage, read> A4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> B4: array<vec4<f32>>;
const WX = {{WX}}u;
const WY = {{WY}}u;
// Rows per thread: 4 or 8.
const TM = {{TM}}u;
const TM4 = TM / 4u;

@compute @workgroup_size(WX, WY)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let M = P(0u); let N = P(1u); let K = P(2u);
  let row0 = gid.y * TM;
  let col0 = gid.x * 4u;
  if (row0 >= M || col0 >= N) { return; } // no barriers here, so threads may leave early
  let z = wid.z + P(4u);
  let offs = batchOffsets(z);
  let oA = offs.x / 4u; let oB = offs.y / 4u;
  let K4 = K / 4u; let M4 = M / 4u; let N4 = N / 4u;
  // A's vec4 index for row i at k = 0 (TRANS_A: for rows 4r..4r+3, in units of M4 per k).
  var aIdx: array<u32, TM>;
  for (var i = 0u; i < TM; i = i + 1u) {
    if (TRANS_A) { aIdx[i] = oA + min(row0 + 4u * i, M - 4u) / 4u; } // M % 4 == 0 here
    else { aIdx[i] = oA + min(row0 + i, M - 1u) * K4; }
  }
  // B's vec4 index for column c at k = 0 (TRANS_B), or of the 4 columns (otherwise).
  var bIdx: array<u32, 4>;
  for (var c = 0u; c < 4u; c = c + 1u) {
    if (TRANS_B) { bIdx[c] = oB + min(col0 + c, N - 1u) * K4; } else { bIdx[c] = oB + col0 / 4u; }
  }
  var acc: array<vec4<f32>, TM>;
  for (var i = 0u; i < TM; i = i + 1u) { acc[i] = vec4<f32>(0.0); }
  for (var kb = 0u; kb < K4; kb = kb + 1u) {
    let k = 4u * kb;
    // b[j] = B[k + j, col0 .. col0 + 3]
    var b: array<vec4<f32>, 4>;
    if (TRANS_B) {
      let c0 = B4[bIdx[0] + kb]; let c1 = B4[bIdx[1] + kb];
      let c2 = B4[bIdx[2] + kb]; let c3 = B4[bIdx[3] + kb];
      b[0] = vec4<f32>(c0.x, c1.x, c2.x, c3.x);
      b[1] = vec4<f32>(c0.y, c1.y, c2.y, c3.y);
      b[2] = vec4<f32>(c0.z, c1.z, c2.z, c3.z);
      b[3] = vec4<f32>(c0.w, c1.w, c2.w, c3.w);
    } else {
      for (var j = 0u; j < 4u; j = j + 1u) { b[j] = B4[bIdx[0] + (k + j) * N4]; }
    }
    if (TRANS_A) {
      for (var j = 0u; j < 4u; j = j + 1u) {
        for (var r = 0u; r < TM4; r = r + 1u) {
          let a = A4[aIdx[r] + (k + j) * M4]; // A[k + j, rows 4r .. 4r + 3]
          acc[4u * r] = fma(vec4<f32>(a.x), b[j], acc[4u * r]);
          acc[4u * r + 1u] = fma(vec4<f32>(a.y), b[j], acc[4u * r + 1u]);
          acc[4u * r + 2u] = fma(vec4<f32>(a.z), b[j], acc[4u * r + 2u]);
          acc[4u * r + 3u] = fma(vec4<f32>(a.w), b[j], acc[4u * r + 3u]);
        }
      }
    } else {
      for (var i = 0u; i < TM; i = i + 1u) {
        let a = A4[aIdx[i] + kb]; // A[row i, k .. k + 3]
        var s = fma(vec4<f32>(a.x), b[0], acc[i]);
        s = fma(vec4<f32>(a.y), b[1], s);
        s = fma(vec4<f32>(a.z), b[2], s);
        acc[i] = fma(vec4<f32>(a.w), b[3], s);
      }
    }
  }
  // K % 4 ≠ 0 only when neither operand is contiguous along K (TRANS_A and not TRANS_B).
  if (TRANS_A && !TRANS_B) {
    for (var k = 4u * K4; k < K; k = k + 1u) {
      let b = B4[bIdx[0] + k * N4];
      for (var r = 0u; r < TM4; r = r + 1u) {
        let a = A4[aIdx[r] + k * M4];
        acc[4u * r] = fma(vec4<f32>(a.x), b, acc[4u * r]);
        acc[4u * r + 1u] = fma(vec4<f32>(a.y), b, acc[4u * r + 1u]);
        acc[4u * r + 2u] = fma(vec4<f32>(a.z), b, acc[4u * r + 2u]);
        acc[4u * r + 3u] = fma(vec4<f32>(a.w), b, acc[4u * r + 3u]);
      }
    }
  }
  let outBase = z * M * N;
  for (var i = 0u; i < TM; i = i + 1u) {
    let row = row0 + i;
    if (row >= M) { break; }
    for (var j = 0u; j < 4u; j = j + 1u) {
      if (col0 + j < N) { out[outBase + row * N + col0 + j] = acc[i][j]; }
    }
  }
}

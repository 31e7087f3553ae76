/**
 * f32x4 transcendental functions for the WebAssembly code generator (WebAssembly has only
 * sqrt, min/max and rounding built in). The algorithms are Cephes' single-precision ones
 * (Stephen Moshier's public-domain library): Cody–Waite range reduction and short minimax
 * polynomials, accurate to a few float32 ulps over the full range, with IEEE special values
 * (NaN in → NaN out, ±∞ and 0 where the function has a limit).
 *
 * Every function here pops its operand(s) from locals it is given and leaves one v128 on the
 * stack. Kernels evaluate every lane (also the tail of a loop) with these same vector
 * sequences, so a value never depends on whether it was computed in a full vector or in the
 * tail, nor on how the work was split across threads.
 */
import type { FunctionBuilder, Local } from './emit.js';

const LOG2E = 1.44269504088896341;
const LN2_HI = 0.693359375;
const LN2_LO = -2.12194440e-4;

function splat(f: FunctionBuilder, v: number): FunctionBuilder {
  return f.f32Const(v).f32x4Splat();
}
function isplat(f: FunctionBuilder, v: number): FunctionBuilder {
  return f.i32Const(v).i32x4Splat();
}

/** Horner: ((c0·x + c1)·x + c2)… with x in local `x`; leaves the result on the stack. */
function horner(f: FunctionBuilder, x: Local, coeffs: readonly number[]): void {
  splat(f, coeffs[0]!);
  for (let i = 1; i < coeffs.length; i++) {
    f.get(x).f32x4Mul();
    splat(f, coeffs[i]!).f32x4Add();
  }
}

/** 2^n for n (i32x4) in [-252, 254], as the product of two normal powers of two (pushed on the stack in order). */
function pow2Pair(f: FunctionBuilder, n: Local): void {
  const n1 = f.local('v128');
  f.get(n).i32Const(1).i32x4ShrS().set(n1);
  f.get(n1);
  isplat(f, 127).i32x4Add().i32Const(23).i32x4Shl();
  f.get(n).get(n1).i32x4Sub();
  isplat(f, 127).i32x4Add().i32Const(23).i32x4Shl();
}

/** 1.5·2^23: adding it rounds a float32 below 2^22 in magnitude to an integer (to nearest, ties to even), which its low mantissa bits then hold. */
const ROUNDER = 12582912;

export function expF32x4(f: FunctionBuilder, xIn: Local): void {
  const x = f.local('v128');
  const t = f.local('v128');
  const fx = f.local('v128');
  const r = f.local('v128');
  const z = f.local('v128');
  const n = f.local('v128');
  // Beyond these bounds the result is ∞ or 0 anyway; clamping keeps 2^n representable. pmax
  // and pmin are one instruction each and keep a NaN (a comparison with it is false).
  f.get(xIn);
  splat(f, -104).f32x4Pmax();
  splat(f, 89).f32x4Pmin().set(x);
  // fx = round(x·log2 e) and n = fx as an integer, both from one addition of ROUNDER
  // (as f32x4.nearest and a truncation would give, in two instructions instead of many).
  f.get(x);
  splat(f, LOG2E).f32x4Mul();
  splat(f, ROUNDER).f32x4Add().set(t);
  f.get(t);
  splat(f, ROUNDER).f32x4Sub().set(fx);
  f.get(t);
  splat(f, ROUNDER).i32x4Sub().set(n);
  f.get(x).get(fx);
  splat(f, LN2_HI).f32x4Mul().f32x4Sub();
  f.get(fx);
  splat(f, LN2_LO).f32x4Mul().f32x4Sub().set(r);
  f.get(r).get(r).f32x4Mul().set(z);
  horner(f, r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1]);
  f.get(z).f32x4Mul().get(r).f32x4Add();
  splat(f, 1).f32x4Add();
  pow2Pair(f, n);
  // stack: y, s1, s2 → y·s1·s2 (s1 first so an overflow needs both factors, as the true value does)
  const s2 = f.local('v128');
  f.set(s2).f32x4Mul().get(s2).f32x4Mul();
}

export function logF32x4(f: FunctionBuilder, xIn: Local): void {
  const x = f.local('v128');
  const small = f.local('v128');
  const bits = f.local('v128');
  const e = f.local('v128');
  const m = f.local('v128');
  const lt = f.local('v128');
  const z = f.local('v128');
  const ef = f.local('v128');
  const y = f.local('v128');
  // Subnormals: scale by 2^23 first so the exponent field is meaningful.
  f.get(xIn);
  splat(f, 1.17549435e-38).f32x4Lt().set(small);
  f.get(xIn);
  splat(f, 8388608).f32x4Mul().get(xIn).get(small).v128Bitselect().set(x);
  f.get(x).set(bits);
  f.get(bits).i32Const(23).i32x4ShrU();
  isplat(f, 0xff).v128And();
  isplat(f, 126).i32x4Sub();
  isplat(f, -23).get(small).v128And().i32x4Add().set(e);
  // Mantissa in [0.5, 1).
  f.get(bits);
  isplat(f, 0x007fffff).v128And();
  isplat(f, 0x3f000000).v128Or().set(m);
  f.get(m);
  splat(f, 0.707106781186547524).f32x4Lt().set(lt);
  // e -= 1 where m < √½ (lt is all ones = −1 there)
  f.get(e).get(lt).i32x4Add().f32x4ConvertI32x4S().set(ef);
  // m = m − 1 + (m where lt)
  f.get(m);
  splat(f, 1).f32x4Sub();
  f.get(m).get(lt).v128And().f32x4Add().set(m);
  f.get(m).get(m).f32x4Mul().set(z);
  horner(f, m, [
    7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
    -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1,
  ]);
  f.get(m).f32x4Mul().get(z).f32x4Mul().set(y);
  f.get(y).get(ef);
  splat(f, LN2_LO).f32x4Mul().f32x4Add();
  f.get(z);
  splat(f, 0.5).f32x4Mul().f32x4Sub();
  f.get(m).f32x4Add();
  f.get(ef);
  splat(f, LN2_HI).f32x4Mul().f32x4Add().set(y);
  // Special values: log(0) = −∞, log(x<0) = NaN, log(∞) = ∞, NaN stays NaN.
  splat(f, -Infinity).get(y).get(xIn);
  splat(f, 0).f32x4Eq().v128Bitselect().set(y);
  splat(f, NaN).get(y).get(xIn);
  splat(f, 0).f32x4Lt().v128Bitselect().set(y);
  f.get(xIn).get(y).get(xIn);
  splat(f, Infinity).f32x4Eq().get(xIn).get(xIn).f32x4Ne().v128Or().v128Bitselect();
}

const FOUR_OVER_PI = 1.27323954473516;
const DP1 = 0.78515625;
const DP2 = 2.4187564849853515625e-4;
const DP3 = 3.77489497744594108e-8;

/** sin (which = 'sin') or cos of x, Cephes sinf/cosf. */
export function sinCosF32x4(f: FunctionBuilder, xIn: Local, which: 'sin' | 'cos'): void {
  const ax = f.local('v128');
  const j = f.local('v128');
  const y = f.local('v128');
  const xr = f.local('v128');
  const z = f.local('v128');
  const sp = f.local('v128');
  const cp = f.local('v128');
  const r = f.local('v128');
  f.get(xIn).f32x4Abs().set(ax);
  f.get(ax);
  splat(f, FOUR_OVER_PI).f32x4Mul().i32x4TruncSatF32x4S();
  isplat(f, 1).i32x4Add();
  isplat(f, ~1).v128And().set(j);
  f.get(j).f32x4ConvertI32x4S().set(y);
  f.get(ax).get(y);
  splat(f, DP1).f32x4Mul().f32x4Sub().get(y);
  splat(f, DP2).f32x4Mul().f32x4Sub().get(y);
  splat(f, DP3).f32x4Mul().f32x4Sub().set(xr);
  f.get(xr).get(xr).f32x4Mul().set(z);
  horner(f, z, [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1]);
  f.get(z).f32x4Mul().get(xr).f32x4Mul().get(xr).f32x4Add().set(sp);
  horner(f, z, [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2]);
  f.get(z).f32x4Mul().get(z).f32x4Mul();
  f.get(z);
  splat(f, 0.5).f32x4Mul().f32x4Sub();
  splat(f, 1).f32x4Add().set(cp);
  // Quadrant q = j/2: sin uses cos(xr) for odd q and negates for q in {2,3}; cos uses sin(xr)
  // for odd q and negates for q in {1,2}.
  const useOther = f.local('v128');
  f.get(j);
  isplat(f, 2).v128And();
  isplat(f, 0).i32x4Ne().set(useOther);
  if (which === 'sin') f.get(cp).get(sp).get(useOther).v128Bitselect().set(r);
  else f.get(sp).get(cp).get(useOther).v128Bitselect().set(r);
  // Flip the sign bit where the quadrant says so (and, for sin, where x < 0).
  f.get(r);
  if (which === 'sin') {
    f.get(j);
    isplat(f, 4).v128And().i32Const(29).i32x4Shl();
    f.get(xIn);
    isplat(f, 0x80000000 | 0).v128And().v128Xor();
  } else {
    f.get(j);
    isplat(f, 2).i32x4Add();
    isplat(f, 4).v128And().i32Const(29).i32x4Shl();
  }
  f.v128Xor().set(r);
  // Beyond the reduction's range (and for ±∞, NaN) answer NaN rather than garbage.
  f.get(r);
  splat(f, NaN).get(ax);
  splat(f, 8192).f32x4Le().v128Bitselect();
}

export function tanhF32x4(f: FunctionBuilder, xIn: Local): void {
  const ax = f.local('v128');
  const z = f.local('v128');
  const small = f.local('v128');
  const e = f.local('v128');
  const two = f.local('v128');
  f.get(xIn).f32x4Abs().set(ax);
  f.get(xIn).get(xIn).f32x4Mul().set(z);
  horner(f, z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1]);
  f.get(z).f32x4Mul().get(xIn).f32x4Mul().get(xIn).f32x4Add().set(small);
  f.get(ax).get(ax).f32x4Add().set(two);
  expF32x4(f, two);
  f.set(e);
  // 1 − 2/(e^{2|x|} + 1), with x's sign
  splat(f, 1);
  splat(f, 2).get(e);
  splat(f, 1).f32x4Add().f32x4Div().f32x4Sub();
  isplat(f, 0x7fffffff).v128And();
  f.get(xIn);
  isplat(f, 0x80000000 | 0).v128And().v128Or();
  // stack: large; choose small where |x| < 0.625
  const large = f.local('v128');
  f.set(large);
  f.get(small).get(large).get(ax);
  splat(f, 0.625).f32x4Lt().v128Bitselect();
  // tanh(±0) = ±0 exactly (the polynomial's x + x·p can round −0 to +0).
  const t = f.local('v128');
  f.set(t);
  f.get(xIn).get(t).get(ax);
  splat(f, 0).f32x4Eq().v128Bitselect();
}

export function sigmoidF32x4(f: FunctionBuilder, xIn: Local): void {
  const na = f.local('v128');
  const e = f.local('v128');
  const s = f.local('v128');
  // exp of a non-positive argument only: e = exp(−|x|) never overflows.
  f.get(xIn).f32x4Abs().f32x4Neg().set(na);
  expF32x4(f, na);
  f.set(e);
  splat(f, 1);
  splat(f, 1).get(e).f32x4Add().f32x4Div().set(s);
  f.get(s).get(e).get(s).f32x4Mul().get(xIn);
  splat(f, 0).f32x4Ge().v128Bitselect();
}

/**
 * float32 GEMM in WebAssembly SIMD128, GotoBLAS-style: blocks of B's columns and A's rows are
 * packed into panels (transposes folded into the packing), and a register-blocked MR×NR
 * micro-kernel keeps MR·NR/4 f32x4 accumulators in registers while it walks a KC-long slice
 * of K. Where the runtime has relaxed SIMD, the multiply-adds are fused (relaxed_madd).
 *
 * Exported functions (all sizes in elements, pointers in bytes):
 *   gemm(M, N, K, a, ars, acs, b, brs, bcs, c, ldc, packA, packB, tile, m0, m1, n0, n1)
 *     C[m0:m1, n0:n1] = A·B where A(i, k) = a[i·ars + k·acs], B(k, j) = b[k·brs + j·bcs] and
 *     C is row-major with leading dimension ldc. Each call needs its own packing scratch
 *     (packA: MC·KC floats, packB: NC·KC floats, tile: MR·NR floats), so threads sharing one
 *     product split it by [m0, m1) × [n0, n1) ranges; every element of C is summed in the
 *     same order whatever the split.
 *   gemv(N, K, x, xs, b, brs, bcs, c, n0, n1)
 *     c[j] = Σ_k x[k·xs] · B(k, j) for j in [n0, n1): one-row products (decoding a batch of 1).
 */
import type { FunctionBuilder, Local, ModuleBuilder } from './emit.js';

export interface GemmShape {
  /** Rows of the micro-kernel. */
  mr: number;
  /** f32x4 vectors per micro-kernel row (NR = 4·nv columns). */
  nv: number;
  kc: number;
  mc: number;
  nc: number;
  relaxed: boolean;
}

// 5×8: ten accumulators, two B vectors, the A splat and a product temporary fit the 15 vector
// registers V8 allocates on x64 without spilling (6×8 spills without FMA).
export const DEFAULT_GEMM: Readonly<Omit<GemmShape, 'relaxed'>> = { mr: 5, nv: 2, kc: 256, mc: 60, nc: 256 };

/** Scratch floats one gemm call needs (packA, packB, tile). */
export function gemmScratch(s: Omit<GemmShape, 'relaxed'>): { packA: number; packB: number; tile: number } {
  return { packA: s.mc * s.kc, packB: s.nc * s.kc, tile: s.mr * s.nv * 4 };
}

function min(f: FunctionBuilder, a: () => void, b: () => void): void {
  const x = f.local('i32');
  const y = f.local('i32');
  a();
  f.set(x);
  b();
  f.set(y);
  f.get(x).get(y).get(x).get(y).i32LtS().select();
}

export function emitGemm(m: ModuleBuilder, s: GemmShape): void {
  const NR = s.nv * 4;
  const MR = s.mr;

  /**
   * The micro-kernel: an MR×NR tile of C from kc steps of A and B. B's rows for successive k
   * are bks bytes apart (NR·4 when packed, B's own row stride when used in place). A is read
   * from a packed panel (MR consecutive floats per k) or, `aInPlace`, straight from A through
   * MR row pointers (rows past the matrix repeat its last row; their results are dropped).
   *   packed:   (pa, pb, bks, kc, cptr, ldc, accumulate, rows, cols, tile)
   *   in place: (pa, ars, aks, pb, bks, kc, cptr, ldc, accumulate, rows, cols, tile)  (strides in bytes)
   */
  const emitMicro = (aInPlace: boolean): number => m.func(undefined, new Array(aInPlace ? 12 : 10).fill('i32'), [], (f) => {
    const params = f.params as Local[];
    const [pa0, ars, aks] = aInPlace ? [params[0]!, params[1]!, params[2]!] : [params[0]!, undefined, undefined];
    const [pb0, bks, kc, cptr, ldc, accumulate, rows, cols, tile] = params.slice(aInPlace ? 3 : 1) as Local[];
    const pa = f.local('i32');
    const rowPtr: Local[] = [];
    const pb = f.local('i32');
    const k = f.local('i32');
    const acc: Local[][] = [];
    for (let r = 0; r < MR; r++) {
      acc.push([]);
      for (let v = 0; v < s.nv; v++) {
        const l = f.local('v128');
        f.i32Const(0).i32x4Splat().set(l);
        acc[r]!.push(l);
      }
    }
    const b: Local[] = [];
    for (let v = 0; v < s.nv; v++) b.push(f.local('v128'));
    const a = f.local('v128');
    if (aInPlace) {
      for (let r = 0; r < MR; r++) {
        const pr = f.local('i32');
        // row min(r, rows − 1)
        f.get(pa0).i32Const(r).get(rows!).i32Const(1).i32Sub().i32Const(r).get(rows!).i32Const(1).i32Sub().i32LtS().select().get(ars!).i32Mul().i32Add().set(pr);
        rowPtr.push(pr);
      }
    } else {
      f.get(pa0).set(pa);
    }
    f.get(pb0!).set(pb);
    f.for(k, () => f.i32Const(0), () => f.get(kc!), 1, () => {
      for (let v = 0; v < s.nv; v++) f.get(pb).v128Load(v * 16, 0).set(b[v]!);
      for (let r = 0; r < MR; r++) {
        if (aInPlace) f.get(rowPtr[r]!).v128Load32Splat(0).set(a);
        else f.get(pa).v128Load32Splat(r * 4).set(a);
        for (let v = 0; v < s.nv; v++) {
          const c = acc[r]![v]!;
          if (s.relaxed) f.get(a).get(b[v]!).get(c).f32x4RelaxedMadd().set(c);
          else f.get(c).get(a).get(b[v]!).f32x4Mul().f32x4Add().set(c);
        }
      }
      if (aInPlace) for (const pr of rowPtr) f.get(pr).get(aks!).i32Add().set(pr);
      else f.get(pa).i32Const(MR * 4).i32Add().set(pa);
      f.get(pb).get(bks!).i32Add().set(pb);
    });
    // Whole tiles go straight to C; edge tiles through the scratch tile.
    f.get(rows!).i32Const(MR).i32Eq().get(cols!).i32Const(NR).i32Eq().i32And();
    f.if(() => {
      const p = f.local('i32');
      f.get(ldc!).i32Const(4).i32Mul().set(ldc!);
      f.get(cptr!).set(p);
      for (let r = 0; r < MR; r++) {
        for (let v = 0; v < s.nv; v++) {
          f.get(p);
          f.get(accumulate!);
          f.if(() => {
            f.get(p).v128Load(v * 16, 0).get(acc[r]![v]!).f32x4Add().set(acc[r]![v]!);
          });
          f.get(acc[r]![v]!).v128Store(v * 16, 0);
        }
        if (r < MR - 1) f.get(p).get(ldc!).i32Add().set(p);
      }
    }, () => {
      for (let r = 0; r < MR; r++) {
        for (let v = 0; v < s.nv; v++) f.get(tile!).get(acc[r]![v]!).v128Store((r * NR + v * 4) * 4, 0);
      }
      const i = f.local('i32');
      const j = f.local('i32');
      const src = f.local('i32');
      const dst = f.local('i32');
      f.for(i, () => f.i32Const(0), () => f.get(rows!), 1, () => {
        f.get(tile!).get(i).i32Const(NR * 4).i32Mul().i32Add().set(src);
        f.get(cptr!).get(i).get(ldc!).i32Mul().i32Const(4).i32Mul().i32Add().set(dst);
        f.for(j, () => f.i32Const(0), () => f.get(cols!), 1, () => {
          f.get(dst);
          f.get(src).f32Load();
          f.get(dst).f32Load().f32Const(0).get(accumulate!).select();
          f.f32Add().f32Store();
          f.get(src).i32Const(4).i32Add().set(src);
          f.get(dst).i32Const(4).i32Add().set(dst);
        });
      });
    });
  });
  const micro = emitMicro(false);
  const microInPlace = emitMicro(true);

  // packB(b, brs, bcs, k0, kc, j0, nc, dst): panels of NR columns, zero-padded.
  const packB = m.func(undefined, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f) => {
    const [b, brs, bcs, k0, kc, j0, nc, dst] = f.params as Local[];
    const jp = f.local('i32');
    const k = f.local('i32');
    const t = f.local('i32');
    const w = f.local('i32');
    const out = f.local('i32');
    const row = f.local('i32');
    f.get(dst!).set(out);
    f.for(jp, () => f.i32Const(0), () => f.get(nc!), NR, () => {
      min(f, () => f.i32Const(NR), () => f.get(nc!).get(jp).i32Sub());
      f.set(w);
      f.for(k, () => f.i32Const(0), () => f.get(kc!), 1, () => {
        // row = b + ((k0 + k)·brs + (j0 + jp)·bcs)·4
        f.get(b!).get(k0!).get(k).i32Add().get(brs!).i32Mul().get(j0!).get(jp).i32Add().get(bcs!).i32Mul().i32Add().i32Const(4).i32Mul().i32Add().set(row);
        // Only strided B is packed (contiguous rows are used in place), so this is a gather.
        f.for(t, () => f.i32Const(0), () => f.i32Const(NR), 1, () => {
          f.get(t).get(w).i32LtS();
          f.if(() => {
            f.get(out).get(t).i32Const(4).i32Mul().i32Add();
            f.get(row).get(t).get(bcs!).i32Mul().i32Const(4).i32Mul().i32Add().f32Load().f32Store();
          }, () => {
            f.get(out).get(t).i32Const(4).i32Mul().i32Add().f32Const(0).f32Store();
          });
        });
        f.get(out).i32Const(NR * 4).i32Add().set(out);
      });
    });
  });

  // packA(a, ars, acs, i0, mc, k0, kc, dst): panels of MR rows, zero-padded.
  const packA = m.func(undefined, ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'], [], (f) => {
    const [a, ars, acs, i0, mc, k0, kc, dst] = f.params as Local[];
    const ip = f.local('i32');
    const k = f.local('i32');
    const t = f.local('i32');
    const h = f.local('i32');
    const out = f.local('i32');
    const col = f.local('i32');
    f.get(dst!).set(out);
    f.for(ip, () => f.i32Const(0), () => f.get(mc!), MR, () => {
      min(f, () => f.i32Const(MR), () => f.get(mc!).get(ip).i32Sub());
      f.set(h);
      f.for(k, () => f.i32Const(0), () => f.get(kc!), 1, () => {
        // col = a + ((i0 + ip)·ars + (k0 + k)·acs)·4
        f.get(a!).get(i0!).get(ip).i32Add().get(ars!).i32Mul().get(k0!).get(k).i32Add().get(acs!).i32Mul().i32Add().i32Const(4).i32Mul().i32Add().set(col);
        f.for(t, () => f.i32Const(0), () => f.i32Const(MR), 1, () => {
          f.get(t).get(h).i32LtS();
          f.if(() => {
            f.get(out).get(t).i32Const(4).i32Mul().i32Add();
            f.get(col).get(t).get(ars!).i32Mul().i32Const(4).i32Mul().i32Add().f32Load().f32Store();
          }, () => {
            f.get(out).get(t).i32Const(4).i32Mul().i32Add().f32Const(0).f32Store();
          });
        });
        f.get(out).i32Const(MR * 4).i32Add().set(out);
      });
    });
  });

  const gemm = m.nextFunctionIndex;
  m.func('gemm', new Array(18).fill('i32'), [], (f) => {
    const [M, N, K, a, ars, acs, b, brs, bcs, c, ldc, pA, pB, tile, m0, m1, n0, n1] = f.params as Local[];
    void M;
    void N;
    const jc = f.local('i32');
    const nc = f.local('i32');
    const pc = f.local('i32');
    const kc = f.local('i32');
    const ic = f.local('i32');
    const mc = f.local('i32');
    const jr = f.local('i32');
    const ir = f.local('i32');
    const bp = f.local('i32');
    const bk = f.local('i32');
    f.for(jc, () => f.get(n0!), () => f.get(n1!), s.nc, () => {
      min(f, () => f.i32Const(s.nc), () => f.get(n1!).get(jc).i32Sub());
      f.set(nc);
      f.for(pc, () => f.i32Const(0), () => f.get(K!), s.kc, () => {
        min(f, () => f.i32Const(s.kc), () => f.get(K!).get(pc).i32Sub());
        f.set(kc);
        // B used in place when its rows are contiguous along j (bcs = 1): no copy at all, the
        // micro-kernel steps through B's own rows; otherwise packed into NR-wide panels.
        f.get(bcs!).i32Const(1).i32Ne();
        f.if(() => {
          f.get(b!).get(brs!).get(bcs!).get(pc).get(kc).get(jc).get(nc).get(pB!).call(packB);
        });
        f.for(ic, () => f.get(m0!), () => f.get(m1!), s.mc, () => {
          min(f, () => f.i32Const(s.mc), () => f.get(m1!).get(ic).i32Sub());
          f.set(mc);
          // A packed panel is reused once per B panel: with one or two panels, packing costs
          // more than it saves, and the micro-kernel reads A in place.
          f.get(nc).i32Const(2 * NR).i32GtS();
          f.if(() => {
            f.get(a!).get(ars!).get(acs!).get(ic).get(mc).get(pc).get(kc).get(pA!).call(packA);
          });
          f.for(jr, () => f.i32Const(0), () => f.get(nc), NR, () => {
            f.for(ir, () => f.i32Const(0), () => f.get(mc), MR, () => {
              f.get(bcs!).i32Const(1).i32Eq();
              f.if(() => {
                // in place: B(pc, jc + jr)
                f.get(b!).get(pc).get(brs!).i32Mul().get(jc).i32Add().get(jr).i32Add().i32Const(4).i32Mul().i32Add().set(bp);
                f.get(brs!).i32Const(4).i32Mul().set(bk);
              }, () => {
                f.get(pB!).get(jr).get(kc).i32Mul().i32Const(4).i32Mul().i32Add().set(bp);
                f.i32Const(NR * 4).set(bk);
              });
              const tail = () => {
                f.get(bp).get(bk);
                f.get(kc);
                f.get(c!).get(ic).get(ir).i32Add().get(ldc!).i32Mul().get(jc).get(jr).i32Add().i32Add().i32Const(4).i32Mul().i32Add();
                f.get(ldc!);
                f.get(pc).i32Const(0).i32GtS();
                min(f, () => f.i32Const(MR), () => f.get(mc).get(ir).i32Sub());
                min(f, () => f.i32Const(NR), () => f.get(nc).get(jr).i32Sub());
                f.get(tile!);
              };
              f.get(nc).i32Const(2 * NR).i32GtS();
              f.if(() => {
                // micro(pa, pb, bks, kc, cptr, ldc, accumulate, rows, cols, tile)
                f.get(pA!).get(ir).get(kc).i32Mul().i32Const(4).i32Mul().i32Add();
                tail();
                f.call(micro);
              }, () => {
                // microInPlace(pa = A(ic + ir, pc), ars·4, acs·4, ...)
                f.get(a!).get(ic).get(ir).i32Add().get(ars!).i32Mul().get(pc).get(acs!).i32Mul().i32Add().i32Const(4).i32Mul().i32Add();
                f.get(ars!).i32Const(4).i32Mul().get(acs!).i32Const(4).i32Mul();
                tail();
                f.call(microInPlace);
              });
            });
          });
        });
      });
    });
  });

  // gemmBatched(M, N, K, ars, acs, brs, bcs, table, packA, packB, tile, i0, i1): for each item
  // t in [i0, i1) of `table` (three i32 per item: a, b, c pointers), C_t = A_t·B_t.
  m.func('gemmBatched', new Array(13).fill('i32'), [], (f) => {
    const [M, N, K, ars, acs, brs, bcs, table, pA, pB, tile, i0, i1] = f.params as Local[];
    const t = f.local('i32');
    const e = f.local('i32');
    f.for(t, () => f.get(i0!), () => f.get(i1!), 1, () => {
      f.get(table!).get(t).i32Const(12).i32Mul().i32Add().set(e);
      f.get(M!).get(N!).get(K!);
      f.get(e).i32Load(0).get(ars!).get(acs!);
      f.get(e).i32Load(4).get(brs!).get(bcs!);
      f.get(e).i32Load(8).get(N!);
      f.get(pA!).get(pB!).get(tile!);
      f.i32Const(0).get(M!).i32Const(0).get(N!);
      f.call(gemm);
    });
  });

  // gemv(N, K, x, xs, b, brs, bcs, c, n0, n1)
  m.func('gemv', new Array(10).fill('i32'), [], (f) => {
    const [N, K, x, xs, b, brs, bcs, c, n0, n1] = f.params as Local[];
    void N;
    const j = f.local('i32');
    const k = f.local('i32');
    const acc = f.local('v128');
    const xk = f.local('v128');
    const p = f.local('i32');
    const s1 = f.local('f32');
    // Rows of B contiguous along j (bcs = 1): c[j..j+4] += x[k]·B[k, j..j+4], four columns at a time.
    f.get(bcs!).i32Const(1).i32Eq();
    f.if(() => {
      f.get(n0!).set(j);
      f.block(() => {
        f.get(j).i32Const(4).i32Add().get(n1!).i32GtS().brIf(0);
        f.loop(() => {
          f.i32Const(0).i32x4Splat().set(acc);
          f.get(b!).get(j).i32Const(4).i32Mul().i32Add().set(p);
          f.for(k, () => f.i32Const(0), () => f.get(K!), 1, () => {
            f.get(x!).get(k).get(xs!).i32Mul().i32Const(4).i32Mul().i32Add().v128Load32Splat().set(xk);
            f.get(acc).get(xk).get(p).v128Load(0, 0).f32x4Mul().f32x4Add().set(acc);
            f.get(p).get(brs!).i32Const(4).i32Mul().i32Add().set(p);
          });
          f.get(c!).get(j).i32Const(4).i32Mul().i32Add().get(acc).v128Store(0, 0);
          f.get(j).i32Const(4).i32Add().tee(j).i32Const(4).i32Add().get(n1!).i32LeS().brIf(0);
        });
      });
      // Remaining columns one at a time.
      f.block(() => {
        f.get(j).get(n1!).i32GeS().brIf(0);
        f.loop(() => {
          f.f32Const(0).set(s1);
          f.get(b!).get(j).i32Const(4).i32Mul().i32Add().set(p);
          f.for(k, () => f.i32Const(0), () => f.get(K!), 1, () => {
            f.get(s1).get(x!).get(k).get(xs!).i32Mul().i32Const(4).i32Mul().i32Add().f32Load().get(p).f32Load().f32Mul().f32Add().set(s1);
            f.get(p).get(brs!).i32Const(4).i32Mul().i32Add().set(p);
          });
          f.get(c!).get(j).i32Const(4).i32Mul().i32Add().get(s1).f32Store();
          f.get(j).i32Const(1).i32Add().tee(j).get(n1!).i32LtS().brIf(0);
        });
      });
    }, () => {
      // Columns of B contiguous along k (brs = 1, and x contiguous): dot products, four lanes of k.
      const px = f.local('i32');
      f.for(j, () => f.get(n0!), () => f.get(n1!), 1, () => {
        f.i32Const(0).i32x4Splat().set(acc);
        f.f32Const(0).set(s1);
        f.get(b!).get(j).get(bcs!).i32Mul().i32Const(4).i32Mul().i32Add().set(p);
        f.get(x!).set(px);
        f.i32Const(0).set(k);
        f.get(brs!).i32Const(1).i32Eq().get(xs!).i32Const(1).i32Eq().i32And();
        f.if(() => {
          f.block(() => {
            f.get(k).i32Const(4).i32Add().get(K!).i32GtS().brIf(0);
            f.loop(() => {
              f.get(acc).get(px).v128Load(0, 0).get(p).v128Load(0, 0).f32x4Mul().f32x4Add().set(acc);
              f.get(px).i32Const(16).i32Add().set(px);
              f.get(p).i32Const(16).i32Add().set(p);
              f.get(k).i32Const(4).i32Add().tee(k).i32Const(4).i32Add().get(K!).i32LeS().brIf(0);
            });
          });
        });
        f.block(() => {
          f.get(k).get(K!).i32GeS().brIf(0);
          f.loop(() => {
            f.get(s1).get(px).f32Load().get(p).f32Load().f32Mul().f32Add().set(s1);
            f.get(px).get(xs!).i32Const(4).i32Mul().i32Add().set(px);
            f.get(p).get(brs!).i32Const(4).i32Mul().i32Add().set(p);
            f.get(k).i32Const(1).i32Add().tee(k).get(K!).i32LtS().brIf(0);
          });
        });
        f.get(c!).get(j).i32Const(4).i32Mul().i32Add();
        f.get(acc).f32x4ExtractLane(0).get(acc).f32x4ExtractLane(1).f32Add();
        f.get(acc).f32x4ExtractLane(2).get(acc).f32x4ExtractLane(3).f32Add().f32Add();
        f.get(s1).f32Add().f32Store();
      });
    });
  });
}

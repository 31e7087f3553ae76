/**
 * scatterAdd of float32 rows, a static kernel: acc[a, idx[j], :] += u[a, j, :] in index order,
 * in float64 so that each output element rounds once however many updates it gets (what the
 * JS kernels do), then out = float32(acc). The backward of every row gather (embeddings,
 * attention groups) comes here; the JS loop it replaces cost a millisecond per call.
 */
import type { Local, ModuleBuilder } from './emit.js';

/**
 * Exports scatterAddF32(acc, u, idx, outer, d, nIdx, inner, out): byte pointers to a float64
 * scratch of outer·d·inner elements (plus 16 bytes), the float32 updates [outer, nIdx, inner],
 * the int32 indices (already checked to lie in [0, d)) and the float32 result [outer, d, inner].
 */
export function emitScatterAdd(m: ModuleBuilder): void {
  m.func('scatterAddF32', new Array(8).fill('i32'), [], (f) => {
    const [acc, u, idx, outer, d, nIdx, inner, out] = f.params as [Local, Local, Local, Local, Local, Local, Local, Local];
    const n = f.local('i32');
    const p = f.local('i32');
    const end = f.local('i32');
    f.get(outer).get(d).i32Mul().get(inner).i32Mul().set(n);
    // Zero the accumulator, two doubles at a time (the scratch has room for a last odd one).
    f.get(acc).get(n).i32Const(8).i32Mul().i32Add().set(end);
    f.get(acc).set(p);
    f.block(() => {
      f.get(p).get(end).i32GeU().brIf(0);
      f.loop(() => {
        f.get(p).f64Const(0).f64x2Splat().v128Store(0, 0);
        f.get(p).i32Const(16).i32Add().tee(p).get(end).i32LtU().brIf(0);
      });
    });
    // Rows in index order.
    const a = f.local('i32');
    const j = f.local('i32');
    const t = f.local('i32');
    const src = f.local('i32');
    const dst = f.local('i32');
    const rowBytes = f.local('i32');
    f.get(inner).i32Const(8).i32Mul().set(rowBytes);
    f.get(u).set(src);
    f.for(a, () => f.i32Const(0), () => f.get(outer), 1, () => {
      f.for(j, () => f.i32Const(0), () => f.get(nIdx), 1, () => {
        // dst = acc + ((a·d + idx[j])·inner)·8
        f.get(acc);
        f.get(a).get(d).i32Mul().get(idx).get(j).i32Const(4).i32Mul().i32Add().i32Load().i32Add();
        f.get(rowBytes).i32Mul().i32Add().set(dst);
        f.i32Const(0).set(t);
        f.block(() => {
          f.get(t).i32Const(2).i32Add().get(inner).i32GtS().brIf(0);
          f.loop(() => {
            f.get(dst).get(dst).v128Load(0, 0).get(src).v128Load64Zero().f64x2PromoteLowF32x4().f64x2Add().v128Store(0, 0);
            f.get(dst).i32Const(16).i32Add().set(dst);
            f.get(src).i32Const(8).i32Add().set(src);
            f.get(t).i32Const(2).i32Add().tee(t).i32Const(2).i32Add().get(inner).i32LeS().brIf(0);
          });
        });
        f.get(t).get(inner).i32LtS();
        f.if(() => {
          f.get(dst).get(dst).f64Load().get(src).f32Load().f64PromoteF32().f64Add().f64Store();
          f.get(src).i32Const(4).i32Add().set(src);
        });
      });
    });
    // out = float32(acc), four at a time, then one at a time.
    const i = f.local('i32');
    f.i32Const(0).set(i);
    f.block(() => {
      f.get(i).i32Const(4).i32Add().get(n).i32GtS().brIf(0);
      f.loop(() => {
        f.get(out).get(i).i32Const(4).i32Mul().i32Add();
        f.get(acc).get(i).i32Const(8).i32Mul().i32Add().set(p);
        f.get(p).v128Load(0, 0).f32x4DemoteF64x2Zero();
        f.get(p).v128Load(16, 0).f32x4DemoteF64x2Zero();
        f.i8x16Shuffle([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]);
        f.v128Store(0, 0);
        f.get(i).i32Const(4).i32Add().tee(i).i32Const(4).i32Add().get(n).i32LeS().brIf(0);
      });
    });
    f.block(() => {
      f.get(i).get(n).i32GeS().brIf(0);
      f.loop(() => {
        f.get(out).get(i).i32Const(4).i32Mul().i32Add();
        f.get(acc).get(i).i32Const(8).i32Mul().i32Add().f64Load().f32DemoteF64().f32Store();
        f.get(i).i32Const(1).i32Add().tee(i).get(n).i32LtS().brIf(0);
      });
    });
  });
}

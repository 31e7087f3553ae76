/**
 * Pytrees: nested arrays and plain objects whose leaves are tensors. Other values (numbers,
 * strings, null, ...) are kept as static data and are not transformed.
 */
import { Tensor } from './tensor.js';

export type Pytree = Tensor | readonly Pytree[] | { readonly [k: string]: Pytree } | number | string | boolean | null | undefined;

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== 'object') return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/** Tensor leaves in a deterministic order (arrays by index, objects by sorted key). */
export function treeLeaves(tree: unknown): Tensor[] {
  const out: Tensor[] = [];
  const rec = (x: unknown): void => {
    if (x instanceof Tensor) out.push(x);
    else if (Array.isArray(x)) x.forEach(rec);
    else if (isPlainObject(x)) for (const k of Object.keys(x).sort()) rec(x[k]);
  };
  rec(tree);
  return out;
}

/** Rebuild `tree` with each tensor leaf replaced by f(leaf, index) in treeLeaves order. */
export function treeMap<T>(tree: T, f: (leaf: Tensor, index: number) => unknown): T {
  let i = 0;
  const rec = (x: unknown): unknown => {
    if (x instanceof Tensor) return f(x, i++);
    if (Array.isArray(x)) return x.map(rec);
    if (isPlainObject(x)) {
      const o: Record<string, unknown> = {};
      for (const k of Object.keys(x).sort()) o[k] = rec(x[k]);
      return o;
    }
    return x;
  };
  return rec(tree) as T;
}

/** Map over matching leaves of several trees with the same structure. */
export function treeZipMap<T>(trees: readonly T[], f: (leaves: Tensor[], index: number) => Tensor): T {
  const all = trees.map(treeLeaves);
  const n = all[0]?.length ?? 0;
  for (const [j, l] of all.entries()) {
    if (l.length !== n) throw new Error(`treeZipMap: tree ${j} has ${l.length} tensor leaves, tree 0 has ${n}`);
  }
  return treeMap(trees[0]!, (_, i) => f(all.map((l) => l[i]!), i));
}

/** Dispose every tensor in a tree. */
export function treeDispose(tree: unknown): void {
  for (const t of treeLeaves(tree)) t.dispose();
}

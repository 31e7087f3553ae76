import { closeScope, openScope } from './tensor.js';
import { treeLeaves } from './pytree.js';

/**
 * Run a synchronous function and dispose every tensor it created except those in its
 * result (any pytree). Scopes nest. Async functions are refused: a scope cannot span an
 * `await`, which is what makes scopes safe (nothing from other async work lands in them).
 */
export function scope<T>(fn: () => T): T {
  const frame = openScope();
  let result: T;
  try {
    result = fn();
  } catch (e) {
    closeScope(frame, []);
    throw e;
  }
  if (result && typeof (result as { then?: unknown }).then === 'function') {
    closeScope(frame, []);
    throw new Error('scope: the function returned a Promise; scopes take synchronous functions (dispose across awaits explicitly)');
  }
  closeScope(frame, treeLeaves(result));
  return result;
}

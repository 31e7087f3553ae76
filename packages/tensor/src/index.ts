/**
 * @softgrad/tensor — immutable tensors, functional autodiff over pytrees, a float64-capable
 * CPU backend (the oracle), and the backend interface other backends (WebGPU) implement.
 */
import { createDefaultCpuBackend } from './default-backend.js';
import { setDefaultBackendFactory } from './tensor.js';

setDefaultBackendFactory(createDefaultCpuBackend);

export type {
  Backend, BackendBuffer, BackendStats, BinaryOp, BufferView, CompareOp, HorizontalMember, LogicalOp, ReduceOp, TracingBackend, UnaryOp,
} from './backend.js';
export { AllocationError, DTYPES, bytesPerElement, isFloat, type DType, type TypedArray } from './dtype.js';
export { MAX_AXIS, broadcastStrides, collapseDims, fmtShape, shapesEqual, sizeOf, stridesOf, tryBroadcastShapes, type Collapsed, type Shape } from './shape.js';
export { threefry2x32, randomBitsAt, bitsToUnitFloat } from './threefry.js';
export { Tensor, getDefaultBackend, setDefaultBackend, keep, type NestedArray } from './tensor.js';
export { tensor, full, zeros, ones, scalar, fullLike, zerosLike, onesLike, arange, eye, toBackend, type CreateOptions, type NarrowIntArray, type TensorData } from './creation.js';
export {
  neg, exp, log, sqrt, rsqrt, abs, tanh, sigmoid, sin, cos, sign, logicalNot, reciprocal, square,
  add, sub, mul, div, pow, maximum, minimum, less, lessEqual, greater, greaterEqual, equal, notEqual, logicalAnd, logicalOr,
  where, sum, max, min, argmax, argmin, mean, matmul, matrixTranspose, reshape, transpose, broadcastTo, slice, pad, concat,
  expandDims, squeeze, stack, gather, scatterAdd, dynamicSlice, dynamicUpdateSlice, cast, stopGradient, sumToShape,
  type MatmulOptions, type TensorLike,
} from './ops.js';
export { clearJitCaches, jit, type JitOptions, type JitStats, type Jitted } from './jit/jit.js';
export {
  fusedIntoKey, fusedKernelKey, fusedOutputSize, phaseAsKernel, phasedKernelKey, phasedOutputSize, phaseOutputIsRow, validateFusedKernel,
  type FusedInput, type FusedInto, type FusedKernel, type FusedNode, type FusedOutput, type FusedPhase, type PhaseNode, type PhasedKernel,
} from './fused.js';
export { runFusedReference, runPhasedReference } from './fused-reference.js';
export { logsumexp, logSoftmax, softmax, oneHot, takeAlongLastAxis, crossEntropy, silu, rmsNorm, type Reduction } from './nn.js';
export { grad, valueAndGrad, vjp, jvp, type GradOptions, type VjpFn } from './autodiff.js';
export { bind, traceDepth, type Primitive } from './trace.js';
export { scope } from './scope.js';
export { treeLeaves, treeMap, treeZipMap, treeDispose, type Pytree } from './pytree.js';
export { PRNGKey, key, split, foldIn, uniform, normal, gumbel, categorical, type KeyExpr, type RandomOptions } from './random.js';
export { createCpuBackend, CpuBackend } from './cpu/index.js';
export { createWasmBackend, WasmBackend, type WasmBackendOptions, type WasmBackendStats } from './wasm/backend.js';
export { createDefaultCpuBackend, defaultCpuBackendKind } from './default-backend.js';
export { checkGrads, mulberry32, type CheckGradsOptions } from './testing.js';

/** @softgrad/transformer — Llama/Qwen decoder, KV cache, checkpoints, config.json, tokenizers. */
export * from './atomic.js';
export * from './crash-testing.js';
export * from './json.js';
export * from './config.js';
export * from './safetensors.js';
export * from './weights.js';
export * from './tokenizer.js';
export * from './model.js';
export * from './checkpoint.js';
export { randomWeight, writeRandomCheckpoint, type RandomCheckpointOptions } from './synthetic.js';

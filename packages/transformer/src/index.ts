/** @softgrad/transformer — Llama/Qwen decoder, KV cache, checkpoints, config.json, tokenizers. */
export {
  appendFileDurableSync, type DirectoryOps, NODE_DIRECTORY_OPS, recoverDirectory, type RecoveryAction,
  removeStaleTemporaries, splitLogLines, swapDirectory, swapNames, syncDirectory, syncDirectorySync, writeFileAtomic,
  writeFileAtomicSync,
} from './atomic.js';
export { CrashingDirectoryOps, SimulatedCrash } from './crash-testing.js';
export { findDuplicateKey, lineAndColumn, parseJsonStrict } from './json.js';
export {
  type ConfigLimits, configParameterCount, configToJson, type LinearRopeScaling, type Llama3RopeScaling,
  MAX_TENSOR_COUNT, MAX_VOCAB_SIZE, type ModelType, parseConfig, readConfig, ropeInverseFrequencies, type RopeScaling,
  SUPPORTED_MODEL_TYPES, type TransformerConfig, writeConfig,
} from './config.js';
export {
  bf16BitsToFloat, type CheckpointEntry, type CheckpointReader, DIGEST_METADATA_KEY, floatToBf16Bits, halfBitsToFloat,
  type HostDtype, type HostTensor, INDEX_FILE_NAME, MAX_ARRAY_BYTES, MAX_HEADER_BYTES, openCheckpointDir,
  parseHeaderLength, parseSafetensors, parseSafetensorsHeader, readCheckpointDir, readSafetensorsFile,
  readSafetensorsHeader, type RowPiece, SAFETENSORS_DTYPE_BYTES, type SafetensorsDtype, type SafetensorsEntry, type SafetensorsFile,
  type SafetensorsHeader, SafetensorsReader, type SerializeOptions, serializeSafetensors, shapeSize, SINGLE_FILE_NAME,
  storedByteLength, type TensorProducer, type TensorSpec, writeCheckpointDir, writeCheckpointDirFrom,
  type WriteCheckpointOptions, type WriteFloatDtype, writeSafetensorsFile, writeSafetensorsFileFrom,
} from './safetensors.js';
export { checkTiedCopy, type ExpectedTensor, expectedTensorNames, validateCheckpointTensors } from './weights.js';
export {
  type CharSpecialTokens, CharTokenizer, type CharTokenizerOptions, createCharTokenizer, type DecodeOptions,
  DEFAULT_CHAR_SPECIAL_TOKENS, describeCharacter, type EncodeOptions, hfTokenizerFromJson, loadHfTokenizer,
  type Tokenizer, type TokenizerOptions,
} from './tokenizer.js';
export {
  createDecodeState, type DecodeParams, type DecodeState, decodeStep, disposeCache, disposeDecodeParams,
  disposeDecodeState, embedTokens, emptyCache, forward, type ForwardInput, type ForwardOutput, forwardPacked,
  type InitOptions, initParams, keepCache, type KVCache, type LayerParams, type ModelParams, outputMatrix,
  type PackedGroup, type PackedLayout, packLayout, type PackLayoutOptions, parameterCount, prepareDecodeParams,
  type SharedPrefixes, type LeadingTokens,
} from './model.js';
export {
  DEFAULT_LOAD_PIECE_BYTES, type LoadedModel, loadModel, type LoadOptions, loadParams, paramsFromHost, paramsToHost, paramsToNamed, saveModel,
  type SaveOptions,
} from './checkpoint.js';
export { randomWeight, type RandomCheckpointOptions, writeRandomCheckpoint } from './synthetic.js';

import * as T from '@softgrad/tensor';
import { forward, loadHfTokenizer, loadModel } from '@softgrad/transformer';
import { builtinBaseModelDir } from '@softgrad/softtokens';

// A Hugging Face model directory: config.json, model.safetensors (or shards with an index),
// tokenizer.json. Any Llama / Qwen2 / SmolLM checkpoint directory loads the same way.
const dir = builtinBaseModelDir();
const { config, params } = await loadModel(dir); // names, shapes and dtypes checked before a weight is read
const tokenizer = await loadHfTokenizer(dir); // strict: a character it cannot encode is an error naming it

const ids = tokenizer.encode('Tom has 3 apples.', { addSpecialTokens: true });
const input = T.tensor([ids], { dtype: 'int32' });
const out = forward(config, params, { ids: input }); // logits [1, tokens, vocab]
const next = T.scope(() => T.argmax(T.slice(out.logits, [0, ids.length - 1, 0], [1, 1, config.vocab_size]), -1));
console.log(`next token: ${JSON.stringify(tokenizer.decode(Array.from(await next.data())))}`);
T.treeDispose([input, out, next, params]);

/**
 * A whole transformer forward and backward (tiny Llama with GQA and Qwen-style biases) on the
 * WebGPU backend matches the CPU backend in float32: logits, loss and every parameter's gradient.
 */
import { afterAll, describe, it } from 'vitest';
import * as T from '@softgrad/tensor';
import { forward, paramsFromHost, paramsToHost, initParams, parseConfig, type ModelParams } from '@softgrad/transformer';
import { acquireTestBackend, expectClose } from '../packages/webgpu/test/gpu-setup.js';

const gpu = await acquireTestBackend();
afterAll(() => gpu?.destroy());

describe.skipIf(!gpu)('transformer on WebGPU', () => {
  it('forward logits, loss and all parameter gradients match the CPU backend', async () => {
    const config = parseConfig({
      model_type: 'qwen2', vocab_size: 23, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, tie_word_embeddings: false,
    }, 'tiny');
    const cpuParams = initParams(config, 3, { std: 0.3 });
    const host = await paramsToHost(cpuParams);
    const gpuParams = paramsFromHost(config, host, 'test', { backend: gpu! });
    const ids = [[1, 5, 7, 2, 9, 11], [0, 0, 3, 4, 8, 6]];
    const mask = [[true, true, true, true, true, true], [false, false, true, true, true, true]];
    const labels = [[5, 7, 2, 9, 11, 1], [0, 0, 4, 8, 6, 3]];
    const run = async (params: ModelParams, backend: T.Backend) => {
      const idT = T.tensor(ids, { dtype: 'int32', backend });
      const labT = T.tensor(labels, { dtype: 'int32', backend });
      const loss = (p: ModelParams) => T.crossEntropy(forward(config, p, { ids: idT, mask }).logits, labT);
      const [value, grads] = T.valueAndGrad(loss)(params);
      const logits = forward(config, params, { ids: idT, mask });
      const out = {
        loss: await value.data(),
        logits: await logits.logits.data(),
        grads: await Promise.all(T.treeLeaves(grads).map((g) => g.data())),
      };
      T.treeDispose([value, grads, logits.logits, logits.hidden, idT, labT]);
      return out;
    };
    const want = await run(cpuParams, T.getDefaultBackend());
    const got = await run(gpuParams, gpu!);
    expectClose(got.logits, want.logits, 1e-4, 1e-5, 'logits');
    expectClose(got.loss, want.loss, 1e-4, 1e-6, 'loss');
    got.grads.forEach((g, i) => expectClose(g, want.grads[i]!, 2e-3, 2e-5, `gradient leaf ${i}`));
    T.treeDispose([cpuParams, gpuParams]);
  });
});

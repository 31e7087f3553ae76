import * as T from '@softgrad/tensor';
import { loadHfTokenizer, loadModel, type ModelParams } from '@softgrad/transformer';
import {
  builtinBaseModelDir, builtinProblems, disposeRolloutBatch, formatPrompt, reward, rlooAdvantages, rlooLoss, rollout,
  trainingCotSettings,
} from '@softgrad/softtokens';

const dir = builtinBaseModelDir();
const { config, params } = await loadModel(dir);
const tokenizer = await loadHfTokenizer(dir);

// One RLOO gradient with soft chain of thought: B = 2 prompts × G = 4 samples each.
const problems = builtinProblems('train', 2, 0);
const G = 4;
const cot = trainingCotSettings('soft'); // τ = 0.5, noise γ = 0.33
const batch = await rollout({
  config, params, tokenizer, prompts: problems.map((p) => formatPrompt(p.question)), samples: G,
  cot, maxCot: 32, answerSample: true, key: T.key(0),
});
const rewards = problems.map((p, b) => batch.rollouts.slice(b * G, (b + 1) * G).map((r) => reward(r.answerText, p.reference)));
// τ, σ and the CoT kind come from the batch; its soft inputs h̃ stay on the device until disposed.
const lossOf = (p: ModelParams) => rlooLoss(config, p, batch, rlooAdvantages(rewards));
const [loss, grads] = T.valueAndGrad(lossOf)(params);
console.log(`rewards ${JSON.stringify(rewards)}, loss ${await (loss as T.Tensor).item()}`);
disposeRolloutBatch(batch);
T.treeDispose([loss, grads, params]);

/**
 * The training page: reads the settings form, loads the model over fetch onto WebGPU (or the
 * CPU backend), runs RL steps, and draws the reward / validation / entropy curves and the
 * traced sample's chain of thought as it is generated.
 *
 * The page's state is mirrored in `document.body.dataset.state` (idle, loading, training,
 * done, stopped, error) and each plot's `data-points`, so a browser test can follow it.
 */
import * as T from '@softgrad/tensor';
import { createWebGpuBackend } from '@softgrad/webgpu';
import { COT_KINDS, DEFAULT_TAU, lineChartSvg, type CotKind, type CotStepTrace } from '@softgrad/softtokens/browser';
import type { Tokenizer } from '@softgrad/transformer';
import { fetchModelDir } from './fetch-model.js';
import { trainInPage, type PageTrainingSettings, type StepPoint } from './page-training.js';

type PageState = 'idle' | 'loading' | 'training' | 'done' | 'stopped' | 'error';

function element<E extends HTMLElement>(id: string): E {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page: no element #${id}`);
  return el as E;
}

const form = element<HTMLFormElement>('settings');
const startButton = element<HTMLButtonElement>('start');
const stopButton = element<HTMLButtonElement>('stop');
const statusLine = element('status');
const deviceLine = element('device');
const summaryLine = element('summary');
const rewardPlot = element('plot-reward');
const validationPlot = element('plot-validation');
const entropyPlot = element('plot-entropy');
const cotQuestion = element('cot-question');
const cotText = element('cot-text');
const cotAnswer = element('cot-answer');
const cotTokens = element('cot-tokens');

function setState(state: PageState, status: string): void {
  document.body.dataset.state = state;
  statusLine.textContent = status;
  const running = state === 'loading' || state === 'training';
  startButton.disabled = running;
  stopButton.disabled = !running;
  for (const el of Array.from(form.elements)) if (el !== startButton && el !== stopButton) (el as HTMLInputElement).disabled = running;
}

function field(name: string): HTMLInputElement | HTMLSelectElement {
  const el = form.elements.namedItem(name);
  if (!(el instanceof HTMLInputElement) && !(el instanceof HTMLSelectElement)) throw new Error(`page: no form field ${name}`);
  return el;
}

function numberField(name: string, integer: boolean): number {
  const raw = field(name).value.trim();
  const v = Number(raw);
  if (raw === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) throw new Error(`${name}: expected ${integer ? 'an integer' : 'a number'}, got "${raw}"`);
  return v;
}

function readSettings(): PageTrainingSettings {
  const kind = field('kind').value as CotKind;
  if (!COT_KINDS.includes(kind)) throw new Error(`unknown CoT kind ${kind}`);
  return {
    kind,
    tau: numberField('tau', false),
    noiseScale: numberField('noiseScale', false),
    lr: numberField('lr', false),
    warmup: numberField('warmup', true),
    steps: numberField('steps', true),
    batchPrompts: numberField('batchPrompts', true),
    samples: numberField('samples', true),
    maxCot: numberField('maxCot', true),
    maxAnswer: numberField('maxAnswer', true),
    evalEvery: numberField('evalEvery', true),
    valCount: numberField('valCount', true),
    seed: numberField('seed', true),
  };
}

// The learning rates the demo's sweep chose for the shipped model (docs/demo.md#learning-rates):
// soft and fuzzy RL collapse at rates hard RL survives.
const SWEPT_LEARNING_RATES: Record<CotKind, number> = { hard: 5e-5, soft: 1e-5, fuzzy: 3e-5 };

// A new kind starts from the paper's temperature for it (docs/method.md) and the swept learning
// rate; both stay editable.
field('kind').addEventListener('change', () => {
  const kind = field('kind').value as CotKind;
  field('tau').value = String(DEFAULT_TAU[kind]);
  field('lr').value = String(SWEPT_LEARNING_RATES[kind]);
});

// ---------------------------------------------------------------------------------------
// Plots

interface Curves {
  reward: [number, number][];
  accuracy: [number, number][];
  validation: [number, number][];
  entropy: [number, number][];
}

function drawPlot(target: HTMLElement, title: string, yLabel: string, series: { name: string; points: [number, number][] }[], yRange?: [number, number]): void {
  target.innerHTML = lineChartSvg({ title, xLabel: 'RL step', yLabel, series, width: 560, height: 300, yRange, markers: true });
  target.dataset.points = String(series[0]!.points.length);
}

function drawCurves(c: Curves): void {
  drawPlot(rewardPlot, 'Mean reward per step', 'reward (0–100)', [{ name: 'reward', points: c.reward }, { name: 'correct %', points: c.accuracy }], [0, 100]);
  drawPlot(validationPlot, 'Greedy validation accuracy', 'accuracy %', [{ name: 'validation', points: c.validation }], [0, 100]);
  drawPlot(entropyPlot, 'Mean CoT next-token entropy', 'nats', [{ name: 'entropy', points: c.entropy }]);
}

// ---------------------------------------------------------------------------------------
// The traced sample's chain of thought

/** A token's text for display: visible whitespace, never empty. */
function shown(tokenizer: Tokenizer, id: number): string {
  const text = tokenizer.decode([id]).replace(/ /g, '·').replace(/\n/g, '⏎');
  return text === '' ? `#${id}` : text;
}

class CotView {
  private ids: number[] = [];
  constructor(private readonly tokenizer: Tokenizer) {}

  start(step: number, question: string): void {
    this.ids = [];
    cotQuestion.textContent = `Step ${step + 1} — Q: ${question}`;
    cotText.textContent = '';
    cotAnswer.textContent = '';
    cotTokens.replaceChildren();
    cotTokens.dataset.steps = '0';
  }

  add(trace: CotStepTrace): void {
    const id = trace.tokens[0]!;
    if (id < 0) return;
    this.ids.push(id);
    cotText.textContent = this.tokenizer.decode(this.ids);
    const chip = document.createElement('span');
    chip.className = trace.stopped[0] ? 'token stop' : 'token';
    const shadow = document.createElement('span');
    shadow.className = 'shadow';
    shadow.textContent = shown(this.tokenizer, id);
    chip.append(shadow);
    if (trace.topMixture) {
      // Soft/fuzzy: the mixture the input was made of (the shadow token is its largest weight).
      const list = document.createElement('ol');
      list.className = 'mixture';
      for (const { id: mid, weight } of trace.topMixture) {
        const item = document.createElement('li');
        item.textContent = `${shown(this.tokenizer, mid)} ${(100 * weight).toFixed(weight >= 0.995 ? 0 : 1)}%`;
        list.append(item);
      }
      chip.append(list);
    }
    cotTokens.append(chip);
    cotTokens.dataset.steps = String(this.ids.length);
  }

  finish(sample: StepPoint['sample']): void {
    cotAnswer.textContent = `${sample.stoppedEarly ? 'stopped on the phrase' : 'reached the CoT limit'} → answer "${sample.answerText}" (reward ${sample.reward})`;
  }
}

// ---------------------------------------------------------------------------------------
// Running

let backendPromise: Promise<T.Backend> | undefined;
let backendName = '';
let stopRequested = false;

async function backendFor(name: string): Promise<T.Backend> {
  if (name === 'cpu') return T.createCpuBackend();
  if (!backendPromise || backendName !== name) {
    backendName = name;
    backendPromise = createWebGpuBackend().then((b) => {
      const info = b.adapterInfo;
      deviceLine.textContent = `WebGPU adapter: ${[info.vendor, info.architecture, info.description].filter(Boolean).join(' / ') || 'unnamed'}${info.isFallbackAdapter ? ' (fallback adapter)' : ''}`;
      document.body.dataset.adapter = `${info.vendor}/${info.architecture}`;
      return b;
    });
    backendPromise.catch(() => (backendPromise = undefined));
  }
  return backendPromise;
}

async function run(): Promise<void> {
  stopRequested = false;
  const settings = readSettings();
  setState('loading', 'loading the model…');
  const backendChoice = field('backend').value;
  const backend = await backendFor(backendChoice);
  if (backendChoice === 'cpu') deviceLine.textContent = 'CPU backend (float32)';
  T.setDefaultBackend(backend);
  const liveBefore = backend.stats().liveBuffers;
  const model = await fetchModelDir(field('model').value, backend);
  summaryLine.textContent = `${model.url}: ${model.config.num_hidden_layers} layers, width ${model.config.hidden_size}, vocabulary ${model.config.vocab_size}, ${(model.weightBytes / 1024).toFixed(0)} KiB of weights`;
  const curves: Curves = { reward: [], accuracy: [], validation: [], entropy: [] };
  drawCurves(curves);
  const view = new CotView(model.tokenizer);
  const t0 = performance.now();
  let lastStep: StepPoint | undefined;
  setState('training', `training ${settings.kind}: step 1 of ${settings.steps}…`);
  let result;
  try {
    result = await trainInPage(model, settings, {
      onStepStart: (step, question) => {
        view.start(step, question);
        if (!stopRequested) setState('training', `training ${settings.kind}: step ${step + 1} of ${settings.steps}…`);
      },
      onCotStep: (_step, trace) => view.add(trace),
      onStep: (p) => {
        lastStep = p;
        view.finish(p.sample);
        curves.reward.push([p.step + 1, p.reward]);
        curves.accuracy.push([p.step + 1, 100 * p.accuracy]);
        curves.entropy.push([p.step + 1, p.entropy]);
        drawCurves(curves);
      },
      onValidation: (step, accuracy) => {
        curves.validation.push([step, 100 * accuracy]);
        drawCurves(curves);
      },
    }, () => stopRequested);
  } finally {
    T.treeDispose(model.params);
    // The run's compiled programs (and their constants) go too; the next run traces again.
    T.clearJitCaches();
  }
  const seconds = (performance.now() - t0) / 1000;
  // Every tensor of the run is freed: a second run starts from the same memory.
  document.body.dataset.leakedBuffers = String(backend.stats().liveBuffers - liveBefore);
  const last = lastStep ? `; last step: reward ${lastStep.reward.toFixed(1)}, loss ${lastStep.loss.toExponential(2)}, ${lastStep.seconds.toFixed(2)} s` : '';
  const verdict = `${result.stepsDone} RL step${result.stepsDone === 1 ? '' : 's'} of ${settings.kind} in ${seconds.toFixed(1)} s${last}`;
  setState(result.stopped ? 'stopped' : 'done', result.stopped ? `stopped after ${verdict}` : `done: ${verdict}`);
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  run().catch((e: unknown) => {
    console.error(e);
    setState('error', `error: ${e instanceof Error ? e.message : String(e)}`);
  });
});

stopButton.addEventListener('click', () => {
  stopRequested = true;
  statusLine.textContent = 'stopping after the step under way…';
});

setState('idle', navigator.gpu ? 'idle — choose settings and press Start' : 'idle — this browser has no navigator.gpu: choose the CPU backend');

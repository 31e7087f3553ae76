/**
 * A Hugging Face style model directory loaded over HTTP: config.json, tokenizer.json (+
 * tokenizer_config.json when present) and the safetensors weights, single file or sharded
 * with model.safetensors.index.json. The Node loaders read files; this helper fetches bytes and
 * hands them to the same in-memory parsers (parseConfig, hfTokenizerFromJson,
 * parseSafetensors, paramsFromHost), so a page loads exactly what the CLI would.
 */
import type * as T from '@softgrad/tensor';
import {
  hfTokenizerFromJson, paramsFromHost, parseConfig, parseSafetensors,
  type HostTensor, type ModelParams, type Tokenizer, type TransformerConfig,
} from '@softgrad/transformer';

export interface FetchedModel {
  /** The directory's absolute URL, ending in '/'. */
  url: string;
  config: TransformerConfig;
  params: ModelParams;
  tokenizer: Tokenizer;
  /** Bytes of weights downloaded. */
  weightBytes: number;
}

const SINGLE_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';

async function fetchOrNull(url: string): Promise<Response | null> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: cannot fetch: ${(e as Error).message}`, { cause: e });
  }
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
  return res;
}

async function fetchJson(url: string, optional: boolean): Promise<unknown> {
  const res = await fetchOrNull(url);
  if (!res) {
    if (optional) return undefined;
    throw new Error(`${url}: not found`);
  }
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${url}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

async function fetchSafetensors(url: string): Promise<{ tensors: Record<string, HostTensor>; bytes: number } | null> {
  const res = await fetchOrNull(url);
  if (!res) return null;
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { tensors: parseSafetensors(bytes, url).tensors, bytes: bytes.length };
}

/** The shards an index names; like the file loader, only plain file names in the same directory. */
function shardNames(index: unknown, url: string): string[] {
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error(`${url}: expected an object with a "weight_map" object`);
  const files = new Set<string>();
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== 'string' || file === '' || file === '.' || file === '..' || /[/\\?#]/.test(file)) {
      throw new Error(`${url}: weight_map entry for ${JSON.stringify(name)} must be a file name in the same directory, got ${JSON.stringify(file)}`);
    }
    files.add(file);
  }
  return [...files];
}

async function fetchWeights(base: string): Promise<{ tensors: Record<string, HostTensor>; bytes: number }> {
  const single = await fetchSafetensors(new URL(SINGLE_FILE, base).href);
  if (single) return single;
  const indexUrl = new URL(INDEX_FILE, base).href;
  const index = await fetchJson(indexUrl, true);
  if (index === undefined) throw new Error(`${base}: no checkpoint found (neither ${SINGLE_FILE} nor ${INDEX_FILE})`);
  const tensors: Record<string, HostTensor> = Object.create(null);
  let bytes = 0;
  for (const file of shardNames(index, indexUrl)) {
    const shardUrl = new URL(file, base).href;
    const shard = await fetchSafetensors(shardUrl);
    if (!shard) throw new Error(`${indexUrl}: names shard ${JSON.stringify(file)}, which does not exist`);
    Object.assign(tensors, shard.tensors);
    bytes += shard.bytes;
  }
  return { tensors, bytes };
}

/** Fetches and loads a model directory; `dirUrl` may be relative to the page. Weights are float32 on `backend`. */
export async function fetchModelDir(dirUrl: string, backend: T.Backend): Promise<FetchedModel> {
  const url = new URL(dirUrl.endsWith('/') ? dirUrl : `${dirUrl}/`, globalThis.location?.href).href;
  const configUrl = new URL('config.json', url).href;
  const tokenizerUrl = new URL('tokenizer.json', url).href;
  const [configJson, tokenizerJson, tokenizerConfig, weights] = await Promise.all([
    fetchJson(configUrl, false),
    fetchJson(tokenizerUrl, false),
    fetchJson(new URL('tokenizer_config.json', url).href, true),
    fetchWeights(url),
  ]);
  const config = parseConfig(configJson, configUrl);
  const tokenizer = hfTokenizerFromJson(tokenizerJson, tokenizerConfig, tokenizerUrl);
  if (tokenizer.vocabSize > config.vocab_size) {
    throw new Error(`${url}: the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${config.vocab_size}`);
  }
  const params = paramsFromHost(config, weights.tensors, url, { backend, dtype: 'float32' });
  return { url, config, params, tokenizer, weightBytes: weights.bytes };
}

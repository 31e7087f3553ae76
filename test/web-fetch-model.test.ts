/**
 * The training page's model loader (web/src/fetch-model.ts) over a local HTTP server: it loads
 * a model directory, single-file or sharded, to the same parameters and tokenizer as the Node
 * loaders, and names the URL when something is missing or unsafe.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, normalize, sep } from 'node:path';
import * as T from '@softgrad/tensor';
import { loadHfTokenizer, loadModel, paramsToHost, saveModel } from '@softgrad/transformer';
import { builtinBaseModelDir } from '@softgrad/softtokens';
import { fetchModelDir } from '../web/src/fetch-model.js';

let root = '';
let server: Server | undefined;
let base = '';
const builtin = builtinBaseModelDir();

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'softgrad-fetch-'));
  server = createServer((req, res) => {
    const file = normalize(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200).end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  // The shipped model in one file, in three shards with an index, and without its tokenizer.
  const { config, params } = await loadModel(builtin);
  await saveModel(join(root, 'single'), config, params);
  await saveModel(join(root, 'sharded'), config, params, { maxShardBytes: 256 * 1024 });
  await saveModel(join(root, 'no-tokenizer'), config, params);
  T.treeDispose(params);
  for (const dir of ['single', 'sharded']) {
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(builtin, f), join(root, dir, f));
  }
});

afterAll(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('fetchModelDir', () => {
  it('loads single-file and sharded directories to the parameters and tokenizer the Node loaders give', async () => {
    const expected = await loadModel(builtin);
    const expectedHost = await paramsToHost(expected.params);
    const tokenizer = await loadHfTokenizer(builtin);
    const text = ' Tom has 3 + 4 = 7 apples. The final answer is: \\boxed{7}.';
    expect(existsSync(join(root, 'sharded', 'model.safetensors.index.json'))).toBe(true);
    for (const dir of ['single', 'sharded']) {
      const fetched = await fetchModelDir(`${base}${dir}`, T.getDefaultBackend());
      expect(fetched.url).toBe(`${base}${dir}/`);
      expect(fetched.config).toEqual(expected.config);
      expect(await paramsToHost(fetched.params)).toEqual(expectedHost);
      expect(fetched.weightBytes).toBeGreaterThan(4 * 150_000);
      expect(fetched.tokenizer.encode(text)).toEqual(tokenizer.encode(text));
      expect(fetched.tokenizer.eosId).toBe(tokenizer.eosId);
      T.treeDispose(fetched.params);
    }
    T.treeDispose(expected.params);
  });

  it('names the URL of what is missing, and refuses shards outside the directory', async () => {
    await expect(fetchModelDir(`${base}no-tokenizer/`, T.getDefaultBackend())).rejects.toThrow(`${base}no-tokenizer/tokenizer.json: not found`);
    await expect(fetchModelDir(`${base}nothing/`, T.getDefaultBackend())).rejects.toThrow(/nothing\/(config|tokenizer)\.json: not found|no checkpoint found/);
    const index = JSON.parse(readFileSync(join(root, 'sharded', 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    const first = Object.keys(index.weight_map)[0]!;
    index.weight_map[first] = '../single/model.safetensors';
    writeFileSync(join(root, 'sharded', 'model.safetensors.index.json'), JSON.stringify(index));
    await expect(fetchModelDir(`${base}sharded/`, T.getDefaultBackend())).rejects.toThrow(/must be a file name in the same directory, got "\.\.\/single\/model\.safetensors"/);
  });
});

#!/usr/bin/env python3
"""The PyTorch peer of benchmarks/engine-vs-torch.bench.run.ts.

It does exactly the work softgrad does in the same benchmark, on the same CPU, and reports
wall times. It reads one JSON command per line on stdin and answers one JSON line on stdout,
so the benchmark can interleave rounds of ours and of the peer in one run.

Commands:
  {"cmd": "info"}                                  torch version, the BLAS library really loaded
  {"cmd": "threads", "n": k}                       intra-op threads of torch and of OpenBLAS
  {"cmd": "matmul", "n": 512, "reps": r}           r float32 n×n·n×n products, seconds each
  {"cmd": "model", "config": {...}, "seed": s}     build the Llama of a softgrad config.json
  {"cmd": "train", "batch": b, "seq": s, "reps": r}
                                                   r steps of next-token cross-entropy,
                                                   forward + backward + AdamW, seconds each
  {"cmd": "load", "dir": path}                     build the model of path/config.json with the weights of its
                                                   safetensors (one file or shards with an index; F32/BF16/F16)
  {"cmd": "logits", "ids": [[...], ...]}           the last position's logits of each row (float32), for
                                                   checking softgrad's forward against this one
  {"cmd": "rope", "config": {...}}                 RoPE inverse frequencies as transformers computes them
                                                   (default / linear / llama3 scaling), in float32
  {"cmd": "prefill", "batch": b, "seq": s, "reps": r}
                                                   r forward passes over b×s tokens (no gradient); seconds each
  {"cmd": "free"}                                  drop the model and optimiser
  {"cmd": "decode", "batch": b, "prompt": p, "steps": n, "reps": r}
                                                   r greedy decodes of n tokens after a prompt of
                                                   p tokens, KV cache preallocated, the argmax
                                                   read back to the host every step; seconds each
"""
import ctypes
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F


def loaded_blas():
    """The shared libraries this process really mapped whose name says BLAS."""
    libs = set()
    with open('/proc/self/maps') as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ''
            name = path.rsplit('/', 1)[-1].lower()
            if 'blas' in name or 'mkl' in name or 'lapack' in name:
                libs.add(path)
    return sorted(libs)


def openblas():
    for path in loaded_blas():
        if 'openblas' in path:
            try:
                lib = ctypes.CDLL(path)
                lib.openblas_set_num_threads
                return lib
            except (OSError, AttributeError):
                pass
    return None


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_inverse_frequencies(c):
    """transformers' ROPE_INIT_FUNCTIONS (default, linear, llama3), float32 as there."""
    base, dim = c['rope_theta'], c['head_dim']
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    s = c.get('rope_scaling')
    kind = None if not s else s.get('rope_type', s.get('type'))
    if kind in (None, 'default'):
        return inv_freq
    if kind == 'linear':
        return inv_freq / s['factor']
    if kind != 'llama3':
        raise ValueError(f'rope_scaling {kind} is not implemented by the peer')
    factor, low, high = s['factor'], s['low_freq_factor'], s['high_freq_factor']
    old = s['original_max_position_embeddings']
    low_freq_wavelen = old / low
    high_freq_wavelen = old / high
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def read_safetensors_dir(path):
    """name -> float32 tensor, from model.safetensors or the shards an index names."""
    import numpy as np
    single = os.path.join(path, 'model.safetensors')
    if os.path.exists(single):
        files = [single]
    else:
        with open(os.path.join(path, 'model.safetensors.index.json')) as f:
            files = [os.path.join(path, n) for n in sorted(set(json.load(f)['weight_map'].values()))]
    out = {}
    for file in files:
        with open(file, 'rb') as f:
            n = int.from_bytes(f.read(8), 'little')
            header = json.loads(f.read(n))
        start = 8 + n
        for name, e in header.items():
            if name == '__metadata__':
                continue
            begin, end = e['data_offsets']
            kind = {'F32': np.float32, 'BF16': np.uint16, 'F16': np.float16}[e['dtype']]
            a = np.fromfile(file, dtype=kind, count=(end - begin) // np.dtype(kind).itemsize, offset=start + begin)
            if e['dtype'] == 'BF16':
                a = (a.astype(np.uint32) << 16).view(np.float32)
            out[name] = torch.from_numpy(a.astype(np.float32).reshape(e['shape']))
    return out


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Llama(torch.nn.Module):
    """Llama 3 / Qwen2 decoder as softgrad's model.ts computes it (GQA, RoPE, SwiGLU, tied head)."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        d, h, kv, hd, f = c['hidden_size'], c['num_attention_heads'], c['num_key_value_heads'], c['head_dim'], c['intermediate_size']
        self.embed = torch.nn.Embedding(c['vocab_size'], d)
        self.layers = torch.nn.ModuleList()
        for _ in range(c['num_hidden_layers']):
            layer = torch.nn.Module()
            layer.norm1 = RMSNorm(d, c['rms_norm_eps'])
            layer.q = torch.nn.Linear(d, h * hd, bias=c.get('attention_bias', False))
            layer.k = torch.nn.Linear(d, kv * hd, bias=c.get('attention_bias', False))
            layer.v = torch.nn.Linear(d, kv * hd, bias=c.get('attention_bias', False))
            layer.o = torch.nn.Linear(h * hd, d, bias=False)
            layer.norm2 = RMSNorm(d, c['rms_norm_eps'])
            layer.gate = torch.nn.Linear(d, f, bias=False)
            layer.up = torch.nn.Linear(d, f, bias=False)
            layer.down = torch.nn.Linear(f, d, bias=False)
            self.layers.append(layer)
        self.norm = RMSNorm(d, c['rms_norm_eps'])
        tied = c.get('tie_word_embeddings', False)
        self.lm_head = None if tied else torch.nn.Parameter(torch.empty(c['vocab_size'], d))
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)
        inv = rope_inverse_frequencies(c).double()
        pos = torch.arange(min(c['max_position_embeddings'], 8192), dtype=torch.float64)
        ang = torch.outer(pos, inv)
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer('cos', ang.cos().float(), persistent=False)
        self.register_buffer('sin', ang.sin().float(), persistent=False)

    def attention(self, layer, x, positions, cache=None, at=0):
        b, s, _ = x.shape
        c = self.c
        h, kv, hd = c['num_attention_heads'], c['num_key_value_heads'], c['head_dim']
        q = layer.q(x).view(b, s, h, hd).transpose(1, 2)
        k = layer.k(x).view(b, s, kv, hd).transpose(1, 2)
        v = layer.v(x).view(b, s, kv, hd).transpose(1, 2)
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            kc, vc = cache
            kc[:, :, at:at + s] = k
            vc[:, :, at:at + s] = v
            k, v = kc[:, :, :at + s], vc[:, :, :at + s]
        t = k.shape[2]
        g = h // kv
        qg = q.reshape(b, kv, g * s, hd)
        scores = (qg @ k.transpose(-1, -2)).view(b, kv, g, s, t) / math.sqrt(hd)
        causal = torch.ones(s, t, dtype=torch.bool).tril(t - s)
        scores = scores.masked_fill(~causal, float('-inf'))
        probs = scores.softmax(-1).view(b, kv, g * s, t)
        ctx = (probs @ v).view(b, h, s, hd).transpose(1, 2).reshape(b, s, h * hd)
        return layer.o(ctx)

    def forward(self, ids, caches=None, at=0):
        b, s = ids.shape
        positions = torch.arange(at, at + s).expand(b, s)
        x = self.embed(ids)
        for i, layer in enumerate(self.layers):
            x = x + self.attention(layer, layer.norm1(x), positions, None if caches is None else caches[i], at)
            y = layer.norm2(x)
            x = x + layer.down(F.silu(layer.gate(y)) * layer.up(y))
        return self.norm(x) @ (self.embed.weight if self.lm_head is None else self.lm_head).t()

    def load(self, tensors):
        """Weights under Hugging Face names (model.layers.i.self_attn.q_proj.weight, ...)."""
        names = {'self_attn.q_proj': 'q', 'self_attn.k_proj': 'k', 'self_attn.v_proj': 'v', 'self_attn.o_proj': 'o',
                 'mlp.gate_proj': 'gate', 'mlp.up_proj': 'up', 'mlp.down_proj': 'down',
                 'input_layernorm': 'norm1', 'post_attention_layernorm': 'norm2'}
        with torch.no_grad():
            self.embed.weight.copy_(tensors['model.embed_tokens.weight'])
            self.norm.weight.copy_(tensors['model.norm.weight'])
            if self.lm_head is not None:
                self.lm_head.copy_(tensors['lm_head.weight'])
            for i, layer in enumerate(self.layers):
                for hf, ours in names.items():
                    mod = getattr(layer, ours)
                    mod.weight.copy_(tensors[f'model.layers.{i}.{hf}.weight'])
                    bias = tensors.get(f'model.layers.{i}.{hf}.bias')
                    if bias is not None:
                        mod.bias.copy_(bias)


state = {}


def timed(fn, reps):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def handle(cmd):
    kind = cmd['cmd']
    if kind == 'info':
        return {
            'torch': torch.__version__, 'python': sys.version.split()[0], 'blas': loaded_blas(),
            'openblas': openblas() is not None, 'threads': torch.get_num_threads(),
        }
    if kind == 'threads':
        n = int(cmd['n'])
        torch.set_num_threads(n)
        lib = openblas()
        if lib is not None:
            lib.openblas_set_num_threads(n)
        return {'threads': n, 'openblas': lib is not None}
    if kind == 'matmul':
        n = int(cmd['n'])
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        return {'seconds': timed(lambda: a @ b, int(cmd['reps']))}
    if kind == 'model':
        torch.manual_seed(int(cmd.get('seed', 0)))
        state['model'] = Llama(cmd['config'])
        state['opt'] = torch.optim.AdamW(state['model'].parameters(), lr=1e-3, weight_decay=0.0)
        return {'parameters': sum(p.numel() for p in state['model'].parameters())}
    if kind == 'train':
        model, opt = state['model'], state['opt']
        b, s = int(cmd['batch']), int(cmd['seq'])
        v = model.c['vocab_size']
        ids = (torch.arange(b * s) * 7 % v).view(b, s)
        labels = (torch.arange(b * s) * 7 + 3) % v

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(ids).view(b * s, v), labels)
            loss.backward()
            opt.step()
            loss.item()

        step()
        return {'seconds': timed(step, int(cmd['reps']))}
    if kind == 'rope':
        return {'inv_freq': rope_inverse_frequencies(cmd['config']).tolist()}
    if kind == 'load':
        with open(os.path.join(cmd['dir'], 'config.json')) as f:
            c = json.load(f)
        c.setdefault('head_dim', c['hidden_size'] // c['num_attention_heads'])
        c.setdefault('num_key_value_heads', c['num_attention_heads'])
        if c.get('model_type') == 'qwen2':
            c['attention_bias'] = True
        state.pop('model', None)
        state.pop('opt', None)
        model = Llama(c)
        model.load(read_safetensors_dir(cmd['dir']))
        state['model'] = model
        state['opt'] = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
        return {'parameters': sum(p.numel() for p in model.parameters())}
    if kind == 'logits':
        with torch.no_grad():
            z = state['model'](torch.tensor(cmd['ids']))[:, -1]
        return {'logits': z.tolist()}
    if kind == 'prefill':
        model = state['model']
        b, s = int(cmd['batch']), int(cmd['seq'])
        ids = (torch.arange(b * s) * 5 % model.c['vocab_size']).view(b, s)

        @torch.no_grad()
        def prefill():
            model(ids)[:, -1].sum().item()

        prefill()
        return {'seconds': timed(prefill, int(cmd['reps']))}
    if kind == 'free':
        state.clear()
        return {}
    if kind == 'decode':
        model = state['model']
        b, p, n = int(cmd['batch']), int(cmd['prompt']), int(cmd['steps'])
        c = model.c
        shape = (b, c['num_key_value_heads'], p + n, c['head_dim'])
        prompt = (torch.arange(b * p) * 5 % c['vocab_size']).view(b, p)

        @torch.no_grad()
        def decode():
            caches = [(torch.zeros(shape), torch.zeros(shape)) for _ in model.layers]
            z = model(prompt, caches, 0)[:, -1]
            for t in range(n):
                y = z.argmax(-1)
                y.tolist()  # the host reads each step's tokens, as a stop test would
                z = model(y[:, None], caches, p + t)[:, -1]

        decode()
        return {'seconds': timed(decode, int(cmd['reps']))}
    raise ValueError(f'unknown command {kind}')


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        reply = handle(json.loads(line))
    except Exception as e:  # a peer failure is reported, not hidden
        reply = {'error': f'{type(e).__name__}: {e}'}
    sys.stdout.write(json.dumps(reply) + '\n')
    sys.stdout.flush()

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
  {"cmd": "decode", "batch": b, "prompt": p, "steps": n, "reps": r}
                                                   r greedy decodes of n tokens after a prompt of
                                                   p tokens, KV cache preallocated, the argmax
                                                   read back to the host every step; seconds each
"""
import ctypes
import json
import math
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
        for p in self.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=0.02)
        inv = 1.0 / (c['rope_theta'] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        pos = torch.arange(c['max_position_embeddings'], dtype=torch.float64)
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
        return self.norm(x) @ self.embed.weight.t()


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

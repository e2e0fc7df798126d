#!/usr/bin/python3
# Policy: the CPU side-by-side of issue 9. The same GPT-NeoX model (written here in plain PyTorch, from the architecture's
# description, not from Whittle code: fused qkv with rows per head [H, 3, D], partial rotary (rotate-half on the first
# rotary_pct·D dims of q and k), causal attention with scale 1/sqrt(D), exact GELU, parallel residual, untied output
# head without bias; init N(0, 0.02), the two residual-writing projections N(0, 0.02/sqrt(2L)), biases 0, layernorms 1/0)
# on the `small` config (V 4096, d 256, L 4, H 8, MLP 1024, ≈5.3M parameters), B × T = 8 × 256 random tokens, same
# thread count on both sides. Measured: train step (zero grads, forward, cross-entropy, backward, clip to norm 1, AdamW
# lr 1e-4 betas (0.9, 0.95) eps 1e-8 weight decay 0.1 on matrices only: what `whittle bench train` does) and eval
# (no_grad forward + loss), each the median of --steps timed steps after --warmup untimed ones.
# With --whittle CMD the rounds are interleaved (torch train, whittle train, torch eval, whittle eval, per round), so
# load from other processes hits both sides alike; per side the median over rounds is reported, with the ratio
# ours / PyTorch in tokens/s (> 1: Whittle is faster).
#
# PyTorch must run on an optimised BLAS: Debian's torch links libblas.so.3, which the alternatives system points at
# libopenblas0-pthread when that is installed (else at reference BLAS, ~2 GFLOP/s). The script prints the BLAS mapped
# into the process and a 1024³ matmul's GFLOP/s, and refuses to compare below --min-gflops.
#   /usr/bin/python3 bench/pytorch/cpu_compare.py --threads 2 --whittle "dotnet src/Whittle.Cli/bin/Release/net10.0/whittle.dll"
import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time

CONFIG = {"vocab": 4096, "d": 256, "layers": 4, "heads": 8, "mlp": 1024, "rotary_pct": 0.25, "eps": 1e-5}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__ if __doc__ else "PyTorch CPU vs whittle bench")
    p.add_argument("--threads", type=int, default=2, help="threads for both sides (torch.set_num_threads, OpenBLAS, DOTNET_PROCESSOR_COUNT)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median over rounds)")
    p.add_argument("--whittle", default=None, help="command that runs whittle (e.g. 'dotnet .../whittle.dll'); omit for PyTorch only")
    p.add_argument("--gemm", default=None, help="whittle --gemm (ours | openblas | auto)")
    p.add_argument("--min-gflops", type=float, default=20.0, help="refuse to compare when torch's 1024^3 matmul is slower (reference BLAS)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p.parse_args()


ARGS = parse_args()
# Thread counts must be fixed before torch (and its BLAS) start their pools.
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.h = c["d"], c["heads"]
        self.hd = d // self.h
        self.rot = int(self.hd * c["rotary_pct"])
        self.ln1 = nn.LayerNorm(d, eps=c["eps"])
        self.ln2 = nn.LayerNorm(d, eps=c["eps"])
        self.qkv = nn.Linear(d, 3 * d)
        self.dense = nn.Linear(d, d)
        self.up = nn.Linear(d, c["mlp"])
        self.down = nn.Linear(c["mlp"], d)

    def attention(self, x, cos, sin):
        B, T, d = x.shape
        qkv = self.qkv(x).view(B, T, self.h, 3 * self.hd)                 # rows per head: [q, k, v]
        q, k, v = [t.permute(0, 2, 1, 3) for t in qkv.split(self.hd, dim=-1)]   # (B, H, T, D)
        q = rotate(q, cos, sin, self.rot)
        k = rotate(k, cos, sin, self.rot)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.hd)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        att = scores.masked_fill(mask, float("-inf")).softmax(dim=-1)
        out = torch.matmul(att, v).permute(0, 2, 1, 3).reshape(B, T, d)
        return self.dense(out)

    def forward(self, x, cos, sin):
        # Parallel residual: x + attn(ln1 x) + mlp(ln2 x).
        return x + self.attention(self.ln1(x), cos, sin) + self.down(F.gelu(self.up(self.ln2(x))))


def rotate(x, cos, sin, r):
    """Rotate-half rotary embedding on the first r dims of the head (cos, sin: (T, r/2))."""
    rot, rest = x[..., :r], x[..., r:]
    x1, x2 = rot[..., : r // 2], rot[..., r // 2:]
    c, s = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    rotated = rot * c + torch.cat([-x2, x1], -1) * s
    return torch.cat([rotated, rest], -1)


class GptNeoX(nn.Module):
    def __init__(self, c, max_t):
        super().__init__()
        self.embed_in = nn.Embedding(c["vocab"], c["d"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["layers"]))
        self.final_ln = nn.LayerNorm(c["d"], eps=c["eps"])
        self.embed_out = nn.Linear(c["d"], c["vocab"], bias=False)
        r = self.layers[0].rot
        inv = 1.0 / (10000.0 ** (torch.arange(0, r, 2, dtype=torch.float64) / r))
        ang = torch.arange(max_t, dtype=torch.float64)[:, None] * inv[None, :]
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        residual_std = 0.02 / math.sqrt(2 * c["layers"])
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 1:
                    p.fill_(1.0 if name.endswith("ln1.weight") or name.endswith("ln2.weight") or name == "final_ln.weight" else 0.0)
                else:
                    p.normal_(0, residual_std if name.endswith("dense.weight") or name.endswith("down.weight") else 0.02)

    def forward(self, ids, targets):
        T = ids.shape[1]
        x = self.embed_in(ids)
        for layer in self.layers:
            x = layer(x, self.cos[:T], self.sin[:T])
        logits = self.embed_out(self.final_ln(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def median_seconds(step, n, warmup):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def blas_check():
    """The BLAS libraries mapped into this process, and a 1024^3 matmul's GFLOP/s."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "blas" in os.path.basename(path).lower():
                libs.add(os.path.realpath(path))
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    s = median_seconds(lambda: a @ b, 7, 0)
    return sorted(libs), 2 * 1024 ** 3 / s / 1e9


class Torch:
    def __init__(self):
        torch.manual_seed(1)
        B, T = ARGS.batch_size, ARGS.seq_len
        self.tokens = B * T
        self.model = GptNeoX(CONFIG, T)
        self.params = sum(p.numel() for p in self.model.parameters())
        decay = [p for p in self.model.parameters() if p.dim() == 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                     lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
        g = torch.Generator().manual_seed(2)
        self.ids = torch.randint(0, CONFIG["vocab"], (B, T), generator=g)
        self.targets = torch.randint(0, CONFIG["vocab"], (B, T), generator=g)

    def train_step(self):
        self.opt.zero_grad()
        loss = self.model(self.ids, self.targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()

    def eval_step(self):
        with torch.no_grad():
            self.model(self.ids, self.targets)

    def measure(self, mode):
        step = self.train_step if mode == "train" else self.eval_step
        return self.tokens / median_seconds(step, ARGS.steps, ARGS.warmup)


def whittle(mode):
    cmd = shlex.split(ARGS.whittle) + ["bench", mode, "--config", "small", "--device", "cpu", "--batch-size", str(ARGS.batch_size),
                                       "--seq-len", str(ARGS.seq_len), "--steps", str(ARGS.steps), "--warmup", str(ARGS.warmup), "--json"]
    if ARGS.gemm:
        cmd += ["--gemm", ARGS.gemm]
    env = dict(os.environ, DOTNET_PROCESSOR_COUNT=str(ARGS.threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"whittle failed ({' '.join(cmd)}):\n{out.stderr}")
    r = json.loads(out.stdout)
    if r["threads"] != ARGS.threads:
        sys.exit(f"whittle ran on {r['threads']} threads, expected {ARGS.threads}")
    return r


def main():
    torch.set_num_threads(ARGS.threads)
    libs, gflops = blas_check()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, BLAS: {', '.join(libs) or 'none mapped'}; "
          f"1024^3 sgemm {gflops:.1f} GFLOP/s", file=sys.stderr)
    if gflops < ARGS.min_gflops:
        sys.exit(f"torch's matmul runs at {gflops:.1f} GFLOP/s: reference BLAS? Install libopenblas0-pthread "
                 "(update-alternatives --display libblas.so.3-x86_64-linux-gnu should point at openblas-pthread).")
    t = Torch()
    results = {m: {"pytorch": [], "whittle": []} for m in ("train", "eval")}
    info = {}
    for r in range(ARGS.rounds):
        for mode in ("train", "eval"):
            results[mode]["pytorch"].append(t.measure(mode))
            if ARGS.whittle:
                w = whittle(mode)
                if w["parameters"] != t.params:
                    sys.exit(f"parameter counts differ: whittle {w['parameters']}, pytorch {t.params}")
                results[mode]["whittle"].append(w["tokens_per_second"])
                info = {k: w.get(k) for k in ("device", "gemm", "openblas", "threads")}
        print(f"round {r + 1}/{ARGS.rounds}: " + ", ".join(
            f"{m} torch {results[m]['pytorch'][-1]:.0f}" + (f" whittle {results[m]['whittle'][-1]:.0f}" if ARGS.whittle else "")
            + " tok/s" for m in results), file=sys.stderr)

    summary = {"config": dict(CONFIG, batch=ARGS.batch_size, seq_len=ARGS.seq_len, parameters=t.params), "threads": ARGS.threads,
               "torch": torch.__version__, "torch_blas": libs, "torch_sgemm_1024_gflops": round(gflops, 1), "whittle": info, "modes": {}}
    for mode, sides in results.items():
        row = {}
        for side, values in sides.items():
            if values:
                row[side] = {"median_tokens_per_second": round(statistics.median(values), 1),
                             "min": round(min(values), 1), "max": round(max(values), 1)}
        if "whittle" in row:
            row["ratio_whittle_over_pytorch"] = round(row["whittle"]["median_tokens_per_second"] / row["pytorch"]["median_tokens_per_second"], 3)
        summary["modes"][mode] = row
    if ARGS.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"\nsmall config ({t.params:,} parameters), B×T = {ARGS.batch_size}×{ARGS.seq_len}, {ARGS.threads} threads, "
          f"{ARGS.rounds} interleaved rounds (median tokens/s, min–max)")
    print(f"{'mode':<6} {'PyTorch':>22} {'Whittle':>22} {'Whittle/PyTorch':>16}")
    for mode, row in summary["modes"].items():
        def cell(side):
            s = row.get(side)
            return f"{s['median_tokens_per_second']:.0f} ({s['min']:.0f}–{s['max']:.0f})" if s else "-"
        ratio = row.get("ratio_whittle_over_pytorch")
        print(f"{mode:<6} {cell('pytorch'):>22} {cell('whittle'):>22} {(f'{ratio:.2f}×' if ratio else '-'):>16}")


if __name__ == "__main__":
    main()

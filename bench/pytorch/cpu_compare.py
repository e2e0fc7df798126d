#!/usr/bin/python3
# Policy: the CPU side-by-side of issues 9 and 18. The same GPT-NeoX model (written here in plain PyTorch, from the
# architecture's description, not from Whittle code: fused qkv with rows per head [H, 3, D], partial rotary (rotate-half on
# the first rotary_pct·D dims of q and k), causal attention with scale 1/sqrt(D), exact GELU, parallel residual, untied
# output head without bias; init N(0, 0.02), the two residual-writing projections N(0, 0.02/sqrt(2L)), biases 0, layernorms
# 1/0) on the `small` config (V 4096, d 256, L 4, H 8, MLP 1024, ≈5.3M parameters), random tokens, the same thread count
# on both sides. Cases: train step and eval at B × T = 8 × 256, eval at one long sequence 1 × 512, 1 × 1024, 1 × 2048.
# Train step: zero grads, forward, cross-entropy, backward, clip to norm 1, AdamW (lr 1e-4, betas (0.9, 0.95), eps 1e-8,
# weight decay 0.1 on matrices only: what `whittle bench train` does); eval: no_grad forward + loss. Each measurement is
# the median of --steps timed steps after --warmup untimed ones, in a process of its own (PyTorch: this script in
# --worker mode; Whittle: `whittle bench`), so its peak resident set (VmHWM, reported by the process) is that case's alone.
# Interleaving: per round, the GEMM ceiling (`whittle bench gemm`), then every case PyTorch then Whittle, so load from
# other processes hits both sides alike; per side the median over rounds is reported with its range.
# The ceiling: the f32 GEMM rate this machine sustains, measured each round through the GEMM both sides run (OpenBLAS:
# Whittle's `auto`, and Debian torch's libblas.so.3): the larger of a 2048³ square sgemm and the `small` 8×256 step's
# linear-layer GEMMs taken together (`whittle bench gemm`, KernelBench.MeasureGemmCeiling); the median over rounds is used.
# A case's fraction of it = tokens/s × FLOPs per token / ceiling, FLOPs per token as `whittle bench` counts them (and
# bench/RESULTS.md): 6N + 6·L·T·d for a train step, 2N + 2·L·T·d for eval, N = non-embedding + output-head parameters.
# The output is a markdown table (pasteable into bench/RESULTS.md) with the date, CPU model and load averages.
#
# PyTorch must run on an optimised BLAS: Debian's torch links libblas.so.3, which the alternatives system points at
# libopenblas0-pthread when that is installed (else at reference BLAS, ~2 GFLOP/s). The script prints the BLAS mapped
# into the process and a 1024³ matmul's GFLOP/s, and refuses to compare below --min-gflops.
#   /usr/bin/python3 bench/pytorch/cpu_compare.py --threads 2 --whittle "dotnet src/Whittle.Cli/bin/Release/net10.0/whittle.dll"
import argparse
import datetime
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import textwrap
import time

CONFIG = {"vocab": 4096, "d": 256, "layers": 4, "heads": 8, "mlp": 1024, "rotary_pct": 0.25, "eps": 1e-5}
# (mode, B, T): the `small` 8×256 train step and eval, and eval at one long sequence of growing T (memory must grow
# linearly in T on Whittle's side; tokens/s at 1×2048 is compared with 8×256's).
CASES = [("train", 8, 256), ("eval", 8, 256), ("eval", 1, 512), ("eval", 1, 1024), ("eval", 1, 2048)]


def parse_args():
    p = argparse.ArgumentParser(description="PyTorch CPU vs whittle bench, interleaved, with the GEMM ceiling and peak memory")
    p.add_argument("--threads", type=int, default=2,
                   help="threads for both sides (torch.set_num_threads, OpenBLAS, DOTNET_PROCESSOR_COUNT)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per 8×256 measurement (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--long-steps", type=int, default=3, help="timed steps per long-context (1×T) measurement")
    p.add_argument("--long-warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median over rounds)")
    p.add_argument("--whittle", default=None, help="command that runs whittle (e.g. 'dotnet .../whittle.dll'); omit for PyTorch only")
    p.add_argument("--gemm", default=None, help="whittle --gemm (ours | openblas | auto)")
    p.add_argument("--min-gflops", type=float, default=20.0, help="refuse to compare when torch's 1024^3 matmul is slower (reference BLAS)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--worker", nargs=3, metavar=("MODE", "B", "T"), help=argparse.SUPPRESS)   # one PyTorch measurement, as JSON
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


def worker(mode, b, t):
    """One PyTorch measurement in this process: tokens/s of the median step, printed as JSON."""
    torch.set_num_threads(ARGS.threads)
    torch.manual_seed(1)
    model = GptNeoX(CONFIG, t)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, CONFIG["vocab"], (b, t), generator=g)
    targets = torch.randint(0, CONFIG["vocab"], (b, t), generator=g)

    def train_step():
        opt.zero_grad()
        loss = model(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    def eval_step():
        with torch.no_grad():
            model(ids, targets)

    n, w = steps_for(b, t)
    seconds = median_seconds(train_step if mode == "train" else eval_step, n, w)
    print(json.dumps({"tokens_per_second": b * t / seconds, "parameters": params, "peak_rss_bytes": peak_rss_bytes()}))


def peak_rss_bytes():
    """This process's peak resident set since its exec (VmHWM; ru_maxrss would also count the forked driver's pages)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def steps_for(b, t):
    return (ARGS.steps, ARGS.warmup) if (b, t) == (8, 256) else (ARGS.long_steps, ARGS.long_warmup)


def run_measured(cmd, env):
    """Runs cmd, which prints one JSON object with peak_rss_bytes (its VmHWM); that object and the peak in MiB."""
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed ({' '.join(cmd)}), exit {out.returncode}:\n{out.stderr}")
    r = json.loads(out.stdout)
    return r, r.get("peak_rss_bytes", 0) / 2 ** 20


def whittle_cmd(*args):
    cmd = shlex.split(ARGS.whittle) + ["bench", *args, "--config", "small", "--device", "cpu", "--json"]
    return cmd + (["--gemm", ARGS.gemm] if ARGS.gemm else [])


def whittle_env():
    return dict(os.environ, DOTNET_PROCESSOR_COUNT=str(ARGS.threads))


def measure_whittle(mode, b, t):
    n, w = steps_for(b, t)
    r, rss = run_measured(whittle_cmd(mode, "--batch-size", str(b), "--seq-len", str(t), "--steps", str(n), "--warmup", str(w)),
                          whittle_env())
    if r["threads"] != ARGS.threads:
        sys.exit(f"whittle ran on {r['threads']} threads, expected {ARGS.threads}")
    return r, rss


def measure_torch(mode, b, t):
    return run_measured([sys.executable, os.path.abspath(__file__), "--threads", str(ARGS.threads), "--steps", str(ARGS.steps),
                         "--warmup", str(ARGS.warmup), "--long-steps", str(ARGS.long_steps), "--long-warmup",
                         str(ARGS.long_warmup), "--worker", mode, str(b), str(t)], dict(os.environ))


def measure_ceiling():
    r, _ = run_measured(whittle_cmd("gemm", "--batch-size", "8", "--seq-len", "256"), whittle_env())
    return r["gemm_ceiling"]


def stats(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None


def load_average():
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next((l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name")), "unknown")
    except OSError:
        return "unknown"


def main():
    if ARGS.worker:
        mode, b, t = ARGS.worker
        return worker(mode, int(b), int(t))
    torch.set_num_threads(ARGS.threads)
    libs, gflops = blas_check()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, BLAS: {', '.join(libs) or 'none mapped'}; "
          f"1024^3 sgemm {gflops:.1f} GFLOP/s", file=sys.stderr)
    if gflops < ARGS.min_gflops:
        sys.exit(f"torch's matmul runs at {gflops:.1f} GFLOP/s: reference BLAS? Install libopenblas0-pthread "
                 "(update-alternatives --display libblas.so.3-x86_64-linux-gnu should point at openblas-pthread).")
    started, load_start = datetime.datetime.now(datetime.timezone.utc), load_average()
    keys = [f"{m} {b}x{t}" for m, b, t in CASES]
    res = {k: {"pytorch": [], "whittle": [], "pytorch_rss": [], "whittle_rss": [], "whittle_tensor_peak": []} for k in keys}
    ceilings, flops, info = [], {}, {}
    for r in range(ARGS.rounds):
        if ARGS.whittle:
            ceilings.append(measure_ceiling())
        for key, (mode, b, t) in zip(keys, CASES):
            tr, rss = measure_torch(mode, b, t)
            res[key]["pytorch"].append(tr["tokens_per_second"]); res[key]["pytorch_rss"].append(rss)
            if ARGS.whittle:
                w, rss = measure_whittle(mode, b, t)
                if w["parameters"] != tr["parameters"]:
                    sys.exit(f"parameter counts differ: whittle {w['parameters']}, pytorch {tr['parameters']}")
                res[key]["whittle"].append(w["tokens_per_second"]); res[key]["whittle_rss"].append(rss)
                res[key]["whittle_tensor_peak"].append(w["peak_bytes"] / 2 ** 20)
                flops[key] = w["flops_per_token"]
                info = {k: w.get(k) for k in ("device", "gemm", "openblas", "threads")}
        ceiling_text = f": ceiling {ceilings[-1]['gflops']:.1f} GFLOP/s" if ceilings else ""
        print(f"round {r + 1}/{ARGS.rounds}{ceiling_text}; " + ", ".join(
            f"{k} torch {res[k]['pytorch'][-1]:.0f}" + (f" whittle {res[k]['whittle'][-1]:.0f}" if ARGS.whittle else "")
            for k in keys) + " tok/s", file=sys.stderr)

    ceiling = stats([c["gflops"] for c in ceilings])
    summary = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu_model(), "load_average_start": load_start,
               "load_average_end": load_average(), "threads": ARGS.threads, "rounds": ARGS.rounds, "torch": torch.__version__,
               "torch_blas": libs, "torch_sgemm_1024_gflops": round(gflops, 1), "whittle": info, "gemm_ceiling_gflops": ceiling,
               "gemm_ceiling_rounds": ceilings, "cases": {}}
    for key in keys:
        row = {side: stats(res[key][side]) for side in res[key]}
        if ARGS.whittle:
            row["flops_per_token"] = flops[key]
            row["ratio_whittle_over_pytorch"] = row["whittle"]["median"] / row["pytorch"]["median"]
            for side in ("pytorch", "whittle"):
                row[f"{side}_fraction_of_ceiling"] = row[side]["median"] * flops[key] / (ceiling["median"] * 1e9)
        summary["cases"][key] = row
    if ARGS.json:
        print(json.dumps(summary, indent=2))
        return
    print_markdown(summary)


def say(text):
    """Prose lines of the report, wrapped at 120 columns (the tables are not)."""
    print("\n".join(textwrap.fill(part, 120) for part in text.split("\n")))


def print_markdown(s):
    c = s["gemm_ceiling_gflops"]
    say(f"\n{s['date']}, `{s['cpu']}`, {s['threads']} threads, {s['rounds']} interleaved rounds, load average (1/5/15 min) "
          f"{s['load_average_start']} at the start, {s['load_average_end']} at the end; torch {s['torch']}, Whittle GEMM "
          f"{s['whittle'].get('gemm') if s['whittle'] else '-'}.")
    if c:
        last = s["gemm_ceiling_rounds"][-1]
        say(f"GEMM ceiling (median of rounds, range): **{c['median']:.1f} GFLOP/s** ({c['min']:.1f}–{c['max']:.1f}); last round: "
              f"square {last['square_size']}³ {last['square_gflops']:.1f}, "
              f"the 8×256 step's linear GEMMs {last['model_shapes_gflops']:.1f}, "
              f"ceiling = {last['source']}.\n")
    print("| case | PyTorch tok/s (range) | Whittle tok/s (range) | Whittle / PyTorch | PyTorch of ceiling | Whittle of ceiling "
          "| PyTorch peak RSS MiB | Whittle peak RSS MiB | Whittle peak tensor MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def cell(x, fmt="{:,.0f}"):
        return f"{fmt.format(x['median'])} ({fmt.format(x['min'])}–{fmt.format(x['max'])})" if x else "-"

    for key, row in s["cases"].items():
        ratio = row.get("ratio_whittle_over_pytorch")
        frac = [f"{row[f'{side}_fraction_of_ceiling']:.0%}" if ratio else "-" for side in ("pytorch", "whittle")]
        print(f"| {key} | {cell(row['pytorch'])} | {cell(row['whittle'])} | {f'**{ratio:.2f}×**' if ratio else '-'} | {frac[0]} | "
              f"{frac[1]} | {cell(row['pytorch_rss'], '{:.0f}')} | {cell(row['whittle_rss'], '{:.0f}')} | "
              f"{cell(row['whittle_tensor_peak'], '{:.1f}')} |")
    long = {t: s["cases"].get(f"eval 1x{t}") for t in (512, 1024, 2048)}
    short = s["cases"].get("eval 8x256")
    if all(long.values()) and short and short.get("whittle"):
        for side in ("pytorch", "whittle"):
            rss = [long[t][f"{side}_rss"]["median"] for t in (512, 1024, 2048)]
            say(f"\n{side}: peak RSS +{rss[1] - rss[0]:.0f} MiB from T 512 to 1024, +{rss[2] - rss[1]:.0f} MiB from 1024 to 2048 "
                f"(linear in T makes the second step twice the first); eval tok/s at 1×2048 = "
                f"{long[2048][side]['median'] / short[side]['median']:.0%} of 8×256.")
        tp = [long[t]["whittle_tensor_peak"]["median"] for t in (512, 1024, 2048)]
        say(f"whittle peak tensor memory +{tp[1] - tp[0]:.1f} MiB, then +{tp[2] - tp[1]:.1f} MiB.")


if __name__ == "__main__":
    main()

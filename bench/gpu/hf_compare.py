#!/usr/bin/env python3
# Policy: one run on one GPU machine measures Hugging Face transformers' GPTNeoXForCausalLM, LlamaForCausalLM and
# Qwen3ForCausalLM and this engine (`whittle bench`) on identical shapes, so every ratio compares two programs on the same
# device in the same session.
#  - Models are built from a config with random weights (no download, no network): Pythia-70M/160M/410M-shaped
#    GPTNeoXConfig objects, and SmolLM2-135M (LlamaForCausalLM) and Qwen3-0.6B (Qwen3ForCausalLM) with Hugging Face's
#    published shapes (the same values as `whittle bench --config smollm2-135m|qwen3-0.6b`).
#  - HF eval: bf16 weights, eval mode, inference_mode, SDPA attention; logits then cross-entropy over all B*T rows
#    (what `whittle bench eval` computes). HF train: fp32 master weights, bf16 autocast, cross-entropy, backward,
#    gradient-norm clipping at 1, fused AdamW (lr 1e-4, betas (0.9, 0.95), weight decay 0.1), as `whittle bench train`.
#    HF KD: the 410M teacher (bf16, no grad) forward + the 160M student's train step with loss
#    0.5 CE + 0.5 tau^2 KL(teacher || student), tau 1 (as `whittle bench kd`).
#  - Each mode also runs under torch.compile where it works; a failure is recorded, never fatal. An OOM is recorded
#    as such and the run goes on.
#  - Results survive a cut-off: ours (`whittle bench`, the number that matters most) runs first for each (model,
#    mode), then HF eager, then HF compiled; the JSON is rewritten atomically after every run, so a run killed by the
#    session's timeout leaves everything finished before it. --deadline N stops starting new runs (and bounds ours'
#    timeout) N seconds after the start; what was not run is recorded as skipped, with the reason. Without torch or
#    transformers (the CPU machine) the HF runs are recorded as skipped and ours still runs.
#  - Times are CUDA-event medians after warm-up; tokens/s = B*T / median step time. Peak memory is
#    torch.cuda.max_memory_allocated (and _reserved) from before the model is built; ours reports its caching
#    allocator's reserved bytes (peak_bytes), which is comparable to max_memory_reserved.
#  - FLOPs per token (MFU): train 6N + 6*L*T*a, eval 2N + 2*L*T*a, N = non-embedding + output-projection parameters,
#    a = heads * head size (d, except Qwen3-0.6B's 2d), the formula `whittle bench` uses. MFU is given against the
#    datasheet dense bf16 peak (989 TFLOP/s for H100/H200 SXM, ours uses the same number) and against the bf16 GEMM
#    rate measured here (8192^3, torch.matmul).
#
#   python3 bench/gpu/hf_compare.py [--models pythia-160m] [--modes eval,train,kd] [--no-compile | --compile-only]
#                                   [--skip-ours] [--deadline S] [--out DIR] [--tag T] [--no-markdown]
#
# Writes hf_compare[-TAG].json (and .md unless --no-markdown) to --out (default $OUT, else bench/gpu/out) and prints
# the ratio table last.
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# A shape without model_type is GPT-NeoX. The Llama-family shapes are Hugging Face's config.json values (the sources are
# cited where whittle bench defines the same names, src/Whittle.Cli/Commands/BenchCommand.cs).
SHAPES = {
    "pythia-70m": dict(vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048),
    "pythia-160m": dict(vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "pythia-410m": dict(vocab_size=50304, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "smollm2-135m": dict(model_type="llama", vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, intermediate_size=1536, tie_word_embeddings=True,
                         rope_theta=100000.0, rms_norm_eps=1e-5, max_position_embeddings=8192),
    "qwen3-0.6b": dict(model_type="qwen3", vocab_size=151936, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, intermediate_size=3072, tie_word_embeddings=True,
                       rope_theta=1000000.0, rms_norm_eps=1e-6, max_position_embeddings=40960),
    # whittle bench's small shapes, for trying the kit end to end on the software GPU
    "small": dict(vocab_size=4096, hidden_size=256, num_hidden_layers=4, num_attention_heads=8, intermediate_size=1024),
    "tiny": dict(vocab_size=4096, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    "tiny-llama": dict(model_type="llama", vocab_size=4096, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, intermediate_size=176, tie_word_embeddings=True, rope_theta=10000.0,
                       rms_norm_eps=1e-6, max_position_embeddings=2048),
}
COMMON = dict(rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=2048, use_parallel_residual=True,
              hidden_act="gelu", layer_norm_eps=1e-5, tie_word_embeddings=False, attention_dropout=0.0, hidden_dropout=0.0)
# What each family's config adds to a shape: no biases, no dropout, SwiGLU; Qwen3 without its sliding window.
FAMILY_COMMON = {
    "gpt_neox": COMMON,
    "llama": dict(hidden_act="silu", attention_bias=False, mlp_bias=False, attention_dropout=0.0),
    "qwen3": dict(hidden_act="silu", attention_bias=False, attention_dropout=0.0, use_sliding_window=False, sliding_window=None),
}
DATASHEET_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12}
KD_TEACHER, KD_STUDENT = "pythia-410m", "pythia-160m"


# ---------------------------------------------------------------- pure helpers (no torch; tested by test_hf_compare.py)

def family(shape):
    return shape.get("model_type", "gpt_neox")


def attention_width(shape):
    """Query heads * head size: hidden_size for GPT-NeoX and most Llamas, 2 * hidden_size for Qwen3-0.6B."""
    heads = shape["num_attention_heads"]
    return heads * shape.get("head_dim", shape["hidden_size"] // heads)


def param_counts(shape):
    """(embedding, non_embedding) parameters, as whittle's ParameterCount / LlamaConfig.CountParameters.
    GPT-NeoX: embedding = embed_in + embed_out (V*d each); non-embedding = the layers (two layernorms, qkv, dense, MLP, all
    with biases) + final layernorm. Llama family (no biases): embedding = embed_tokens (+ lm_head when untied); the layers
    are two RMSNorms, q (d x H*D), k and v (d x KV*D each), o (H*D x d), gate, up, down (3 * m * d) and, for Qwen3, the
    per-head q_norm and k_norm (D each); plus the final norm."""
    V, d, L, m = shape["vocab_size"], shape["hidden_size"], shape["num_hidden_layers"], shape["intermediate_size"]
    if family(shape) == "gpt_neox":
        per_layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (m * d + m + d * m + d)
        return 2 * V * d, L * per_layer + 2 * d
    a = attention_width(shape)
    head = a // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * head
    per_layer = 2 * d + d * a + 2 * d * kv + a * d + 3 * m * d + (2 * head if family(shape) == "qwen3" else 0)
    return (1 if shape["tie_word_embeddings"] else 2) * V * d, L * per_layer + d


def flops_per_token(shape, seq_len, train):
    """Training 6N + 6*L*T*a, evaluation 2N + 2*L*T*a; N = non-embedding + output projection (V*d), a = heads * head size."""
    _, non_embedding = param_counts(shape)
    n = non_embedding + shape["vocab_size"] * shape["hidden_size"]
    attention = shape["num_hidden_layers"] * seq_len * attention_width(shape)
    return (6 if train else 2) * (n + attention)


def hf_config_args(name):
    """(model_type, keyword arguments) of the transformers config for a shape: AutoConfig.for_model(model_type, **kwargs)."""
    shape = dict(SHAPES[name])
    model_type = shape.pop("model_type", "gpt_neox")
    return model_type, {**FAMILY_COMMON[model_type], **shape}


def kd_flops_per_token(seq_len, student=KD_STUDENT, teacher=KD_TEACHER):
    """A KD step: the student's training FLOPs plus the teacher's forward FLOPs (whittle bench kd's count)."""
    return flops_per_token(SHAPES[student], seq_len, True) + flops_per_token(SHAPES[teacher], seq_len, False)


def step_flops_per_token(model, mode, seq_len, teacher=KD_TEACHER):
    if mode == "kd":
        return kd_flops_per_token(seq_len, model, teacher)
    return flops_per_token(SHAPES[model], seq_len, mode == "train")


def datasheet_peak(device_name):
    for key, value in DATASHEET_BF16.items():
        if key in device_name:
            return value
    return None


def mfu(tokens_per_second, flops_token, peak):
    if not tokens_per_second or not peak:
        return None
    return tokens_per_second * flops_token / peak


def parse_ours(stdout):
    """The JSON object `whittle bench ... --json` prints (from the first line that opens an object)."""
    for i, line in enumerate(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads("\n".join(stdout.splitlines()[i:]))
    raise ValueError("no JSON object in whittle's output")


def tail(text, lines=30):
    """The last lines of a process's output: enough for a stack trace, bounded for the JSON."""
    return "\n".join((text or "").strip().splitlines()[-lines:])


def write_atomic(path, text):
    """Writes text to path through a temporary name and a rename: a reader (or a kill) never sees half a file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Deadline:
    """Seconds left of --deadline (None: no deadline); clock is injectable for the tests."""

    def __init__(self, seconds, clock=time.monotonic):
        self.clock, self.end = clock, (clock() + seconds if seconds else None)

    def left(self):
        return None if self.end is None else self.end - self.clock()


def plan(modes, models, kd_student):
    """The (model, mode) pairs in run order, model by model: a deadline cuts the later models (the Llama one after
    GPT-NeoX in the session), never an earlier model's runs. kd runs once, for the KD student, right after that model's
    other modes (after the first model's when the student is not among the models)."""
    pairs = []
    anchor = kd_student if kd_student in models else (models[0] if models else None)
    for name in models:
        pairs += [(name, mode) for mode in modes if mode != "kd"]
        if name == anchor and "kd" in modes:
            pairs.append((kd_student, "kd"))
    if not models and "kd" in modes:
        pairs.append((kd_student, "kd"))
    return pairs


def run_pairs(pairs, runners, save, deadline, min_seconds=None):
    """
    Runs every (label, fn) of runners(model, mode) for each pair, in order, and calls save(results) after each run, so
    the file on disk is always the newest complete state. A run is skipped (recorded with the reason) when the deadline
    has less than min_seconds[label] left (default 1 s). fn may return a dict or raise; an exception is recorded as the
    run's error, never fatal.
    """
    results = {}
    min_seconds = min_seconds or {}
    for name, mode in pairs:
        key = f"{name}/{mode}"
        r = results.setdefault(key, {})
        for label, fn in runners(name, mode):
            left = deadline.left()
            if left is not None and left < min_seconds.get(label, 1):
                r[label] = {"skipped": f"deadline: {max(left, 0):.0f} s left"}
            else:
                # on disk while it runs: a run killed by the session's timeout is named in the file, not just absent
                r[label] = {"running": "started; cut off by a timeout if this is what the file holds"}
                save(results)
                try:
                    r[label] = fn()
                except Exception as e:  # recorded, never fatal
                    r[label] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
            save(results)
    return results


def hf_problem():
    """None when torch and transformers import and a CUDA device exists, else why the HF runs are skipped."""
    try:
        import torch
        import transformers  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return f"torch/transformers not importable ({type(e).__name__}: {e})"
    if not torch.cuda.is_available():
        return "no CUDA device for torch"
    return None


def ratio(a, b):
    return a / b if a and b else None


def table_rows(results):
    """One row per (model, mode): HF eager and compiled, ours, the ratios ours/HF, MFU and peak memory."""
    rows = []
    for key, r in results.items():
        model, mode = key.split("/")
        hf, hfc, ours = r.get("hf_eager", {}), r.get("hf_compile", {}), r.get("ours", {})
        rows.append({
            "model": model, "mode": mode,
            "hf_tok_s": hf.get("tokens_per_second"), "hf_compile_tok_s": hfc.get("tokens_per_second"),
            "ours_tok_s": ours.get("tokens_per_second"),
            "ours_over_hf": ratio(ours.get("tokens_per_second"), hf.get("tokens_per_second")),
            "ours_over_hf_compile": ratio(ours.get("tokens_per_second"), hfc.get("tokens_per_second")),
            "hf_mfu": hf.get("mfu"), "hf_compile_mfu": hfc.get("mfu"), "ours_mfu": ours.get("mfu"),
            "hf_peak_gib": _gib(hf.get("max_memory_reserved")), "ours_peak_gib": _gib(ours.get("peak_bytes")),
            "ours_loss": ours.get("loss"),
            "notes": "; ".join(x for x in (hf.get("error"), hfc.get("error"), ours.get("error"), hf.get("skipped"), hfc.get("skipped"), ours.get("skipped")) if x),
        })
    return rows


def _gib(b):
    return b / 2**30 if b else None


def _fmt(x, spec):
    return "—" if x is None else format(x, spec)


def markdown(rows, meta):
    lines = [f"Device: {meta.get('device')}; torch {meta.get('torch')}, transformers {meta.get('transformers')}; "
             f"B×T = {meta.get('batch')}×{meta.get('seq_len')}; measured bf16 GEMM {_fmt(meta.get('bf16_gemm_tflops'), '.0f')} TFLOP/s; "
             f"MFU against {_fmt((meta.get('peak_flops') or 0) / 1e12 or None, '.0f')} TFLOP/s.", "",
             "| model | mode | HF eager tok/s | HF compile tok/s | ours tok/s | ours/HF | ours/HF compile | MFU HF | MFU HF compile | MFU ours | peak GiB HF (reserved) | peak GiB ours | notes |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['mode']} | {_fmt(r['hf_tok_s'], ',.0f')} | {_fmt(r['hf_compile_tok_s'], ',.0f')} | "
                     f"{_fmt(r['ours_tok_s'], ',.0f')} | {_fmt(r['ours_over_hf'], '.2f')} | {_fmt(r['ours_over_hf_compile'], '.2f')} | "
                     f"{_fmt(r['hf_mfu'], '.1%')} | {_fmt(r['hf_compile_mfu'], '.1%')} | {_fmt(r['ours_mfu'], '.1%')} | "
                     f"{_fmt(r['hf_peak_gib'], '.1f')} | {_fmt(r['ours_peak_gib'], '.1f')} | {r['notes']} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- torch side (GPU machine)

def _torch():
    import torch  # noqa: imported late so the helpers above run without torch
    return torch


def build(name, dtype, device):
    """GPTNeoXForCausalLM, LlamaForCausalLM or Qwen3ForCausalLM of the shape, with transformers' own random init."""
    torch = _torch()
    from transformers import AutoConfig, AutoModelForCausalLM
    model_type, kwargs = hf_config_args(name)
    cfg = AutoConfig.for_model(model_type, **kwargs)
    with torch.device(device):
        try:
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", torch_dtype=dtype)
        except TypeError:  # signatures moved between transformers versions
            cfg._attn_implementation = "sdpa"
            model = AutoModelForCausalLM.from_config(cfg).to(dtype)
    return model.to(device=device, dtype=dtype)


def median_ms(step, warmup, steps):
    torch = _torch()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure(label, fn):
    """Runs fn() -> dict; an OOM or any other failure becomes {'error': ...} so the run goes on."""
    torch = _torch()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    try:
        r = fn()
        r["max_memory_allocated"] = torch.cuda.max_memory_allocated()
        r["max_memory_reserved"] = torch.cuda.max_memory_reserved()
    except torch.cuda.OutOfMemoryError as e:
        r = {"error": f"OOM ({str(e).splitlines()[0][:120]})"}
    except Exception as e:  # torch.compile failures come in many types
        r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    r["wall_seconds"] = round(time.time() - t0, 1)
    print(f"  {label:<34} {json.dumps({k: v for k, v in r.items() if k in ('tokens_per_second', 'mfu', 'error', 'wall_seconds')})}", flush=True)
    torch.cuda.empty_cache()
    return r


def hf_run(model_name, mode, args, compiled, peak):
    kd_student, kd_teacher = args.kd_student, args.kd_teacher
    torch = _torch()
    import torch.nn.functional as F
    B, T = args.batch, args.seq_len
    V = SHAPES[model_name]["vocab_size"]
    gen = torch.Generator(device="cuda").manual_seed(2)
    ids = torch.randint(0, V, (B, T), device="cuda", generator=gen)
    targets = torch.randint(0, V, (B * T,), device="cuda", generator=gen)

    def maybe_compile(m):
        return torch.compile(m) if compiled else m

    if mode == "eval":
        model = build(model_name, torch.bfloat16, "cuda").eval()
        fwd = maybe_compile(model)

        def step():
            with torch.inference_mode():
                logits = fwd(input_ids=ids, use_cache=False).logits
                F.cross_entropy(logits.float().view(-1, V), targets)
    else:
        student_name = kd_student if mode == "kd" else model_name
        model = build(student_name, torch.float32, "cuda").train()
        fwd = maybe_compile(model)
        try:
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
        except (TypeError, RuntimeError):
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
        teacher = None
        if mode == "kd":
            teacher = maybe_compile(build(kd_teacher, torch.bfloat16, "cuda").eval())

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = fwd(input_ids=ids, use_cache=False).logits.float().view(-1, V)
            loss = F.cross_entropy(logits, targets)
            if teacher is not None:
                with torch.inference_mode():
                    t = teacher(input_ids=ids, use_cache=False).logits.float().view(-1, V)
                t = t.clone()  # an inference tensor cannot enter autograd
                kd = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")
                loss = 0.5 * loss + 0.5 * kd
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    ms = median_ms(step, args.warmup + (2 if compiled else 0), args.steps)
    tps = B * T / (ms / 1e3)
    fpt = step_flops_per_token(model_name, mode, T, kd_teacher)
    return {"step_ms": ms, "tokens_per_second": tps, "flops_per_token": fpt, "mfu": mfu(tps, fpt, peak)}


def bf16_gemm_tflops(n=8192):
    torch = _torch()
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = median_ms(lambda: torch.matmul(a, b), 3, 10)
    del a, b
    return 2 * n ** 3 / (ms / 1e3) / 1e12


def ours_command(model_name, mode, args):
    cmd = [args.whittle, "bench", mode, "--config", args.kd_student if mode == "kd" else model_name, "--batch-size", str(args.batch),
           "--seq-len", str(args.seq_len), "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", "cuda", "--json",
           "--verbose", "--precision", args.whittle_precision] + (["--loss-chunk-rows", str(args.loss_chunk_rows)] if args.loss_chunk_rows else [])
    if mode == "kd":
        cmd += ["--teacher-config", args.kd_teacher]
    return cmd


def ours_run(model_name, mode, args, timeout):
    """whittle bench on the same shape; its stderr (progress, stack traces with --verbose) goes to our stderr (the
    session log) whole, and its last lines into the result when it fails."""
    exe = args.whittle
    if not os.path.exists(exe):
        return {"error": f"{exe} not found (bash tools/publish.sh, carry publish/)"}
    cmd = ours_command(model_name, mode, args)
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        sys.stderr.write(err)
        return {"error": f"timed out after {timeout:.0f} s", "command": " ".join(cmd), "stderr_tail": tail(err)}
    sys.stderr.write(p.stderr)
    r = None
    try:
        r = parse_ours(p.stdout)
    except ValueError:
        pass
    if p.returncode != 0 or r is None:
        r = r or {}
        r.update({"error": f"exit {p.returncode}: {tail(p.stderr or p.stdout, 1)[:200]}", "command": " ".join(cmd), "stderr_tail": tail(p.stderr or p.stdout)})
        return r
    r["command"] = " ".join(cmd)
    r["wall_seconds"] = round(time.time() - t0, 1)
    print(f"  {'ours':<34} {json.dumps({k: r.get(k) for k in ('tokens_per_second', 'mfu', 'peak_bytes', 'loss', 'loss_check')})}", flush=True)
    return r


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Hugging Face transformers vs whittle on the same GPU, same shapes.")
    ap.add_argument("--models", default="pythia-70m,pythia-160m,pythia-410m,smollm2-135m,qwen3-0.6b")
    ap.add_argument("--modes", default="eval,train,kd", help="eval, train, kd (kd: --kd-teacher -> --kd-student)")
    ap.add_argument("--kd-teacher", default=KD_TEACHER, choices=sorted(SHAPES))
    ap.add_argument("--kd-student", default=KD_STUDENT, choices=sorted(SHAPES))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    ap.add_argument("--compile-only", action="store_true", help="only the torch.compile runs (after an earlier call ran eager and ours)")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--whittle", default="./publish/whittle")
    ap.add_argument("--ours-timeout", type=int, default=300)
    ap.add_argument("--deadline", type=float, default=0, help="seconds from the start after which no run starts (0: none)")
    ap.add_argument("--whittle-precision", default="bf16", choices=["bf16", "fp32"],
                    help="whittle bench --precision: bf16 (the like-for-like comparison with HF's bf16 autocast) or fp32")
    ap.add_argument("--loss-chunk-rows", type=int, default=0, help="whittle bench --loss-chunk-rows (0: off)")
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    ap.add_argument("--tag", default="", help="suffix of the output files, for runs split over several calls")
    ap.add_argument("--no-markdown", action="store_true", help="write the JSON only (the GPU session returns at most 8 files)")
    args = ap.parse_args(argv)
    unknown = [m for m in args.models.split(",") if m and m not in SHAPES]
    if unknown:
        ap.error(f"--models: unknown {', '.join(unknown)} (known: {', '.join(SHAPES)})")
    if "kd" in args.modes.split(",") and SHAPES[args.kd_teacher]["vocab_size"] != SHAPES[args.kd_student]["vocab_size"]:
        ap.error(f"--kd-teacher {args.kd_teacher} and --kd-student {args.kd_student} have different vocabularies")
    return args


def main(argv=None, clock=time.monotonic):
    args = parse_args(argv)
    deadline = Deadline(args.deadline, clock)
    os.makedirs(args.out, exist_ok=True)
    suffix = f"-{args.tag}" if args.tag else ""
    json_path = os.path.join(args.out, f"hf_compare{suffix}.json")
    meta = {"batch": args.batch, "seq_len": args.seq_len, "steps": args.steps, "warmup": args.warmup, "deadline_s": args.deadline,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "complete": False}

    def save(results):
        write_atomic(json_path, json.dumps({"meta": meta, "results": results, "rows": table_rows(results)}, indent=2))

    save({})   # a file exists from the start: a kill before the first run still leaves the meta
    problem = None if args.skip_hf else hf_problem()
    torch = None
    if problem is None and not args.skip_hf:
        torch = _torch()
        import transformers
        device = torch.cuda.get_device_name(0)
        meta.update({"device": device, "torch": torch.__version__, "transformers": transformers.__version__, "peak_flops": datasheet_peak(device)})
        save({})
        meta["bf16_gemm_tflops"] = bf16_gemm_tflops()
        print(f"{device}: torch {torch.__version__}, transformers {transformers.__version__}, bf16 GEMM {meta['bf16_gemm_tflops']:.0f} TFLOP/s", flush=True)
    elif problem:
        meta["hf_skipped"] = problem
        print(f"HF runs skipped: {problem}", flush=True)

    def runners(name, mode):
        print(f"{name}/{mode}", flush=True)
        out = []
        if not args.skip_ours and not args.compile_only:
            def ours():
                left = deadline.left()
                return ours_run(name, mode, args, args.ours_timeout if left is None else max(1, min(args.ours_timeout, left)))
            out.append(("ours", ours))
        if args.skip_hf:
            return out
        if problem:
            return out + [("hf_eager", lambda: {"skipped": problem})] * (not args.compile_only) + [("hf_compile", lambda: {"skipped": problem})] * (not args.no_compile)
        if not args.compile_only:
            out.append(("hf_eager", lambda: measure("HF eager (sdpa, bf16)", lambda: hf_run(name, mode, args, False, meta.get("peak_flops")))))
        if not args.no_compile:
            def compiled():
                r = measure("HF torch.compile", lambda: hf_run(name, mode, args, True, meta.get("peak_flops")))
                torch._dynamo.reset()
                return r
            out.append(("hf_compile", compiled))
        return out

    pairs = plan([m for m in args.modes.split(",") if m], [m for m in args.models.split(",") if m], args.kd_student)
    # a cold torch.compile takes 1-4 minutes: not worth starting with less than a minute left
    results = run_pairs(pairs, runners, save, deadline, {"hf_compile": 60, "hf_eager": 10, "ours": 5})
    meta["complete"] = True
    save(results)
    rows = table_rows(results)
    md = markdown(rows, meta)
    if not args.no_markdown:
        write_atomic(os.path.join(args.out, f"hf_compare{suffix}.md"), md)
    print()
    print(md)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# The pure helpers of hf_compare.py (no torch, no GPU): parameter counts against Pythia's published totals, the
# FLOPs-per-token formula worked by hand, output parsing and the ratio table.
#   /usr/bin/python3 -m unittest discover -s bench/gpu -p 'test_*.py'
import json
import os
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_compare as h  # noqa: E402


class Helpers(unittest.TestCase):
    def test_parameter_totals_match_pythia(self):
        # num_parameters() of EleutherAI/pythia-70m-deduped, -160m, -410m (vocab padded to 50304)
        for name, total in (("pythia-70m", 70_426_624), ("pythia-160m", 162_322_944), ("pythia-410m", 405_334_016)):
            self.assertEqual(sum(h.param_counts(h.SHAPES[name])), total, name)

    def test_flops_per_token_by_hand(self):
        s = h.SHAPES["pythia-160m"]
        n = 85_056_000 + 50304 * 768      # non-embedding + output projection
        att = 12 * 2048 * 768
        self.assertEqual(h.flops_per_token(s, 2048, True), 6 * n + 6 * att)
        self.assertEqual(h.flops_per_token(s, 2048, False), 2 * n + 2 * att)
        self.assertEqual(h.kd_flops_per_token(2048), 6 * n + 6 * att + h.flops_per_token(h.SHAPES["pythia-410m"], 2048, False))

    def test_llama_family_parameter_counts(self):
        # SmolLM2-135M: 134,515,008 (the "135M" of its name); Qwen3-0.6B: 0.44B non-embedding, 0.6B in all (its model card)
        emb, non = h.param_counts(h.SHAPES["smollm2-135m"])
        self.assertEqual((emb, non), (49152 * 576, 30 * (2 * 576 + 576 * 576 * 2 + 2 * 576 * 192 + 3 * 1536 * 576) + 576))
        self.assertEqual(emb + non, 134_515_008)
        emb, non = h.param_counts(h.SHAPES["qwen3-0.6b"])
        self.assertEqual(non, 28 * (2 * 1024 + 2 * 1024 * 2048 + 2 * 1024 * 1024 + 3 * 3072 * 1024 + 2 * 128) + 1024)
        self.assertEqual((round(non / 1e9, 2), round((emb + non) / 1e9, 1)), (0.44, 0.6))
        self.assertEqual(emb, 151936 * 1024, "tied: the head is the embedding, counted once")

    def test_llama_flops_use_the_attention_width(self):
        s = h.SHAPES["qwen3-0.6b"]
        n = h.param_counts(s)[1] + 151936 * 1024
        self.assertEqual(h.flops_per_token(s, 2048, True), 6 * n + 6 * 28 * 2048 * 2048, "16 heads x 128 = 2048 = 2d")
        s = h.SHAPES["smollm2-135m"]
        self.assertEqual(h.flops_per_token(s, 1024, False), 2 * (h.param_counts(s)[1] + 49152 * 576) + 2 * 30 * 1024 * 576)

    def test_hf_config_args_per_family(self):
        model_type, kw = h.hf_config_args("smollm2-135m")
        self.assertEqual(model_type, "llama")
        self.assertEqual((kw["num_key_value_heads"], kw["tie_word_embeddings"], kw["hidden_act"], kw["rope_theta"]),
                         (3, True, "silu", 100000.0))
        self.assertNotIn("rotary_pct", kw)
        model_type, kw = h.hf_config_args("qwen3-0.6b")
        self.assertEqual((model_type, kw["head_dim"], kw["use_sliding_window"]), ("qwen3", 128, False))
        model_type, kw = h.hf_config_args("pythia-160m")
        self.assertEqual((model_type, kw["rotary_pct"], kw["tie_word_embeddings"]), ("gpt_neox", 0.25, False))

    def test_kd_pairs_must_share_the_vocabulary(self):
        with self.assertRaises(SystemExit):
            h.parse_args(["--modes", "kd", "--kd-teacher", "qwen3-0.6b", "--kd-student", "smollm2-135m"])
        with self.assertRaises(SystemExit):
            h.parse_args(["--models", "llama-7b"])
        args = h.parse_args(["--models", "tiny-llama", "--modes", "kd", "--kd-teacher", "tiny", "--kd-student", "tiny-llama"])
        self.assertEqual(h.ours_command("tiny-llama", "kd", args)[3:5], ["--config", "tiny-llama"])

    def test_plan_runs_model_by_model_with_kd_after_its_student(self):
        self.assertEqual(h.plan(["train", "kd"], ["pythia-160m", "smollm2-135m"], "pythia-160m"),
                         [("pythia-160m", "train"), ("pythia-160m", "kd"), ("smollm2-135m", "train")])
        self.assertEqual(h.plan(["eval", "train", "kd"], ["tiny", "tiny-llama"], "small"),
                         [("tiny", "eval"), ("tiny", "train"), ("small", "kd"), ("tiny-llama", "eval"), ("tiny-llama", "train")])
        self.assertEqual(h.plan(["kd"], [], "tiny"), [("tiny", "kd")])

    def test_mfu_and_peaks(self):
        self.assertEqual(h.datasheet_peak("NVIDIA H100 80GB HBM3"), 989e12)
        self.assertIsNone(h.datasheet_peak("Tesla T4"))
        self.assertAlmostEqual(h.mfu(1000.0, 2e9, 4e12), 0.5)
        self.assertIsNone(h.mfu(None, 2e9, 4e12))

    def test_parse_ours_skips_leading_lines(self):
        out = 'compiling kernels...\n{\n  "mode": "eval",\n  "tokens_per_second": 123.5\n}\n'
        self.assertEqual(h.parse_ours(out)["tokens_per_second"], 123.5)
        with self.assertRaises(ValueError):
            h.parse_ours("no json here")

    def test_table_ratios_and_missing_values(self):
        results = {"pythia-160m/eval": {"hf_eager": {"tokens_per_second": 100.0, "mfu": 0.2, "max_memory_reserved": 2**31},
                                        "hf_compile": {"error": "OOM (x)"},
                                        "ours": {"tokens_per_second": 150.0, "mfu": 0.3, "peak_bytes": 2**30}}}
        rows = h.table_rows(results)
        self.assertEqual(len(rows), 1)
        r = rows[0]
        self.assertEqual((r["model"], r["mode"]), ("pythia-160m", "eval"))
        self.assertAlmostEqual(r["ours_over_hf"], 1.5)
        self.assertIsNone(r["ours_over_hf_compile"])
        self.assertEqual((r["hf_peak_gib"], r["ours_peak_gib"]), (2.0, 1.0))
        self.assertIn("OOM", r["notes"])
        md = h.markdown(rows, {"device": "X", "peak_flops": 989e12, "bf16_gemm_tflops": 790.0})
        self.assertIn("| pythia-160m | eval | 100 | — | 150 | 1.50 | — |", md)



class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class PartialResults(unittest.TestCase):
    """The JSON on disk after every run: what a session's timeout leaves behind."""

    def test_ours_runs_first_and_every_run_is_saved_at_once(self):
        saved = []
        order = []

        def runners(name, mode):
            return [(label, (lambda label=label: order.append((name, mode, label)) or {"tokens_per_second": 1.0}))
                    for label in ("ours", "hf_eager", "hf_compile")]

        h.run_pairs([("m", "eval"), ("m", "train")], runners, lambda r: saved.append(json.loads(json.dumps(r))), h.Deadline(0))
        self.assertEqual(order[0][2], "ours")
        self.assertEqual(len(saved), 12, "a save as each run starts and one as it ends")
        self.assertIn("running", saved[0]["m/eval"]["ours"], "a run in progress is on disk as such")
        self.assertEqual(list(saved[1]["m/eval"]), ["ours"], "then ours alone, finished")
        self.assertEqual(saved[1]["m/eval"]["ours"], {"tokens_per_second": 1.0})
        self.assertEqual(list(saved[7]["m/train"]), ["ours"])

    def test_a_kill_mid_run_leaves_the_finished_pairs_on_disk(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.json")

            def runners(name, mode):
                def boom():
                    raise KeyboardInterrupt  # what SIGINT/a kill looks like to Python: not caught by run_pairs
                return [("ours", lambda: {"tokens_per_second": 5.0}), ("hf_eager", boom if mode == "train" else (lambda: {"tokens_per_second": 4.0}))]

            with self.assertRaises(KeyboardInterrupt):
                h.run_pairs([("m", "eval"), ("m", "train")], runners, lambda r: h.write_atomic(path, json.dumps(r)), h.Deadline(0))
            with open(path) as f:
                on_disk = json.load(f)
            self.assertEqual(on_disk["m/eval"]["hf_eager"]["tokens_per_second"], 4.0)
            self.assertEqual(on_disk["m/train"]["ours"]["tokens_per_second"], 5.0, "ours of the cut pair survives")
            self.assertIn("running", on_disk["m/train"]["hf_eager"], "the run that was cut is named")
            self.assertEqual([f for f in os.listdir(d)], ["r.json"], "no temporary file left")

    def test_an_exception_is_recorded_and_the_next_run_goes_on(self):
        def runners(name, mode):
            return [("ours", lambda: 1 / 0), ("hf_eager", lambda: {"tokens_per_second": 2.0})]
        r = h.run_pairs([("m", "eval")], runners, lambda r: None, h.Deadline(0))
        self.assertIn("ZeroDivisionError", r["m/eval"]["ours"]["error"])
        self.assertEqual(r["m/eval"]["hf_eager"]["tokens_per_second"], 2.0)

    def test_the_deadline_skips_runs_that_no_longer_fit(self):
        clock = FakeClock()
        deadline = h.Deadline(100, clock)

        def runners(name, mode):
            def slow():
                clock.t += 50
                return {"tokens_per_second": 1.0}
            return [("ours", slow), ("hf_eager", slow), ("hf_compile", slow)]

        r = h.run_pairs([("m", "eval")], runners, lambda r: None, deadline, {"hf_compile": 60})
        self.assertIn("tokens_per_second", r["m/eval"]["ours"])
        self.assertIn("tokens_per_second", r["m/eval"]["hf_eager"])
        self.assertEqual(r["m/eval"]["hf_compile"], {"skipped": "deadline: 0 s left"})

    def test_without_torch_hf_is_skipped_with_the_reason_and_ours_still_runs(self):
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "whittle")
            with open(fake, "w") as f:   # a whittle that prints bench JSON and echoes its arguments
                f.write('#!/bin/sh\necho "args: $*" >&2\necho \'{"mode": "eval", "tokens_per_second": 7.5, "loss": 8.3, "loss_check": "ok"}\'\n')
            os.chmod(fake, os.stat(fake).st_mode | stat.S_IEXEC)
            saved_problem = h.hf_problem
            h.hf_problem = lambda: "torch/transformers not importable (ImportError: no torch)"
            try:
                h.main(["--out", d, "--tag", "t", "--models", "tiny", "--modes", "eval", "--whittle", fake, "--no-markdown"])
            finally:
                h.hf_problem = saved_problem
            with open(os.path.join(d, "hf_compare-t.json")) as f:
                out = json.load(f)
            self.assertTrue(out["meta"]["complete"])
            self.assertIn("no torch", out["meta"]["hf_skipped"])
            r = out["results"]["tiny/eval"]
            self.assertEqual(r["ours"]["tokens_per_second"], 7.5)
            self.assertIn("--verbose", r["ours"]["command"], "every whittle call runs with --verbose")
            self.assertIn("no torch", r["hf_eager"]["skipped"])
            self.assertIn("no torch", r["hf_compile"]["skipped"])
            self.assertFalse(os.path.exists(os.path.join(d, "hf_compare-t.md")))

    def test_a_failing_whittle_leaves_its_stack_trace_tail(self):
        with tempfile.TemporaryDirectory() as d:
            fake = os.path.join(d, "whittle")
            with open(fake, "w") as f:
                f.write("#!/bin/sh\necho 'System.Exception: boom' >&2\necho '   at Whittle.Cuda.Launch()' >&2\necho 'error: the last line' >&2\nexit 2\n")
            os.chmod(fake, os.stat(fake).st_mode | stat.S_IEXEC)
            args = h.parse_args(["--whittle", fake])
            devnull = open(os.devnull, "w")
            saved, sys.stderr = sys.stderr, devnull
            try:
                r = h.ours_run("tiny", "eval", args, 30)
            finally:
                sys.stderr = saved
                devnull.close()
            self.assertIn("exit 2: error: the last line", r["error"])
            self.assertIn("at Whittle.Cuda.Launch()", r["stderr_tail"], "more than the last line is kept")


if __name__ == "__main__":
    unittest.main()

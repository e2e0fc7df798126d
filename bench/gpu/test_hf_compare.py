#!/usr/bin/env python3
# The pure helpers of hf_compare.py (no torch, no GPU): parameter counts against Pythia's published totals, the
# FLOPs-per-token formula worked by hand, output parsing and the ratio table.
#   /usr/bin/python3 -m unittest discover -s bench/gpu -p 'test_*.py'
import os
import sys
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


if __name__ == "__main__":
    unittest.main()

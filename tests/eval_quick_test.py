"""The evaluation suite in --quick mode (part of `make test`): builds a small
ResNet-20 bundle, runs bench/eval's gati_eval on every workload and system,
writes the report with bench/report.py, and checks what must hold whatever
the machine's speed.

Environment: GATI, GATI_EVAL (binaries), GATI_SOURCE_DIR.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ["GATI_SOURCE_DIR"]
SYSTEMS = ["base", "gati", "online", "confidence", "knn", "exact", "oracle"]
WORKLOADS = ["iid", "skewed", "video", "mixed"]


class EvalQuickTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="gati_eval_test_")
        bundle = os.path.join(cls.work, "bundle")
        subprocess.run(
            [os.environ["GATI"], "build", "--model", os.path.join(SOURCE, "models", "resnet20.pt"),
             "--out", bundle, "--taps", "5,7,8", "--variants", "gap:linear,gap:mlp64",
             "--limit", "4000", "--epochs", "20", "--threads", "2", "--epsilon", "0.05",
             "--tail-budget", "0"],  # Every system needs planned caches to compare.
            check=True, stdout=subprocess.DEVNULL)
        out = os.path.join(cls.work, "out")
        subprocess.run([os.environ["GATI_EVAL"], bundle, "--quick", "--out", out], check=True)
        subprocess.run([sys.executable, os.path.join(SOURCE, "bench", "report.py"),
                        os.path.join(out, "results.json"), out], check=True)
        with open(os.path.join(out, "results.json")) as f:
            cls.results = json.load(f)
        with open(os.path.join(out, "report.md")) as f:
            cls.report = f.read()
        cls.out = out

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_every_system_ran_every_workload(self):
        self.assertEqual(sorted(self.results["workloads"]), sorted(WORKLOADS))
        for workload in WORKLOADS:
            data = self.results["workloads"][workload]
            self.assertEqual(data["requests"], 300)
            self.assertEqual(sorted(data["systems"]), sorted(SYSTEMS))
            for name, system in data["systems"].items():
                with self.subTest(workload=workload, system=name):
                    self.assertEqual(len(system["latencies_ms"]), 300)
                    self.assertAlmostEqual(sum(system["exit_share"].values()), 1.0, places=9)
                    self.assertGreater(system["throughput_c1"], 0)
                    self.assertGreater(system["throughput_saturation"], 0)
                    self.assertLessEqual(system["p50_ms"], system["p99_ms"])

    def test_systems_that_cannot_disagree_agree(self):
        for workload in WORKLOADS:
            systems = self.results["workloads"][workload]["systems"]
            for name in ("base", "exact", "oracle"):
                self.assertEqual(systems[name]["agreement"], 1.0, f"{workload} {name}")
            self.assertEqual(systems["base"]["hit_rate"], 0.0)
            self.assertAlmostEqual(systems["base"]["speedup"], 1.0)
            # The oracle exits wherever some planned predictor is right.
            self.assertGreater(systems["oracle"]["hit_rate"], 0.5)

    def test_baselines_report_their_settings(self):
        for workload in WORKLOADS:
            data = self.results["workloads"][workload]
            knn = data["systems"]["knn"]["extra"]
            self.assertIn(knn["tap"], self.results["planned_taps"])
            self.assertEqual(knn["capacity"], 4096)
            self.assertGreater(data["systems"]["knn"]["memory_bytes"], 0)
            self.assertEqual([p["capacity"] for p in data["knn_sweep"]], [64, 256, 1024, 4096, 16384])
            self.assertIn("updates_accepted", data["systems"]["online"]["extra"])
        self.assertEqual(len(self.results["confidence_thresholds"]),
                         len(self.results["planned_taps"]))

    def test_report_has_tables_targets_and_plots(self):
        for heading in ("## Speedup per workload", "## iid", "## video", "## Targets"):
            self.assertIn(heading, self.report)
        for name in ("(e) kNN cache (FAISS)", "(g) oracle", "(d) confidence exit"):
            self.assertIn(name, self.report)
        for plot in ("latency_cdf.png", "speedup.png", "hits_over_time.png", "exit_taps.png",
                     "knn_memory.png"):
            self.assertIn(plot, self.report)
            self.assertGreater(os.path.getsize(os.path.join(self.out, plot)), 1000)


if __name__ == "__main__":
    unittest.main(verbosity=2)

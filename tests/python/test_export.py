"""Tests of tools/gati_export.py: torchvision ResNet, plain Sequential, a
--stages model, and the refusals (run by ctest with Debian's python3)."""

import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
import zipfile

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "tools")
EXPORT = os.path.join(TOOLS, "gati_export.py")
sys.path.insert(0, TOOLS)
import gati_export  # noqa: E402

USER_MODELS = '''
import torch
from torch import nn

def plain_cnn():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(1),
                         nn.Linear(4 * 6 * 6, 5))

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 3)
    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))

def net():
    return Net()

class Residual(Net):
    """Adds the input back across stages: no stage list reproduces it."""
    def forward(self, x):
        h = self.features(x)
        return self.fc(torch.flatten(self.pool(h + x.mean()), 1))

def residual():
    return Residual()

class Blocks(nn.Module):
    """A user's own module with skip connections: cuts only between blocks."""
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.a1 = nn.Conv2d(8, 8, 3, padding=1)
        self.a2 = nn.Conv2d(8, 8, 3, padding=1)
        self.b1 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = x + self.a2(torch.relu(self.a1(x)))   # No cut inside: x is live.
        x = torch.relu(x + self.b1(x))
        return self.fc(x.mean(dim=(2, 3)))

def blocks():
    return Blocks()

class Gate(nn.Module):
    """Control flow on a value inside a block: fx cannot trace the block."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
    def forward(self, x):
        if x.mean() > 0:
            return torch.relu(self.conv(x))
        return x

class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.gate = Gate()
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
    def forward(self, x):
        x = self.gate(torch.relu(self.stem(x)))
        return self.fc(torch.relu(self.mid(x)).mean(dim=(2, 3)))

def gated():
    return Gated()

class Branchy(Net):
    """Control flow on a tensor's value: torch.fx cannot trace it."""
    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return super().forward(x)

def branchy():
    return Branchy()
'''


def run_export(*args):
    # As on a user's machine: Python writes bytecode caches unless told not
    # to (this machine's environment tells it not to).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run([sys.executable, EXPORT, *args],
                          capture_output=True, text=True, timeout=240, env=env)


def read_metadata(path):
    with zipfile.ZipFile(path) as archive:
        name = [n for n in archive.namelist()
                if n.endswith("extra/gati.json")][0]
        return json.loads(archive.read(name))


class ExportTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.user = os.path.join(self.dir, "user_models.py")
        with open(self.user, "w") as f:
            f.write(USER_MODELS)

    def tearDown(self):
        self.tmp.cleanup()

    def test_torchvision_resnet18_on_3x32x32(self):
        out = os.path.join(self.dir, "r18.pt")
        result = run_export("--torchvision", "resnet18", "--num-classes",
                            "10", "--input-shape", "3,32,32", "--out", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        meta = read_metadata(out)
        self.assertEqual(meta["format_version"], 1)
        self.assertEqual(meta["input"], {"shape": [3, 32, 32],
                                         "dtype": "float32"})
        self.assertEqual(meta["stage_names"][0], "stem")
        self.assertEqual(meta["stage_names"][1:9],
                         [f"layer{l}.{b}" for l in range(1, 5)
                          for b in range(2)])
        self.assertEqual(meta["stage_names"][-1], "head")
        self.assertEqual(len(meta["class_names"]), 10)
        self.assertEqual(meta["normalization"]["mean"], [0.0, 0.0, 0.0])
        staged = torch.jit.load(out)
        self.assertEqual(len(list(staged.children())), 10)

    def test_resize_rule_goes_in_the_metadata(self):
        out = os.path.join(self.dir, "r18r.pt")
        result = run_export("--torchvision", "resnet18", "--num-classes",
                            "3", "--input-shape", "3,32,32", "--resize", "36",
                            "--out", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(read_metadata(out)["input"]["resize"],
                         {"shorter_side": 36})
        bad = run_export("--torchvision", "resnet18", "--input-shape",
                         "3,32,32", "--resize", "0", "--out", out + ".bad")
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("--resize must be a positive number", bad.stderr)

    def test_auto_stages_torchvision_models_without_a_stage_list(self):
        for arch, want in (("resnet18", None), ("vgg11", None),
                           ("mobilenet_v2", None)):
            out = os.path.join(self.dir, arch + ".pt")
            result = run_export("--torchvision", arch, "--num-classes", "10",
                                "--input-shape", "3,32,32", "--auto",
                                "--out", out)
            self.assertEqual(result.returncode, 0, arch + result.stderr)
            self.assertIn("taps (after each stage but the last): 0:",
                          result.stdout)
            names = read_metadata(out)["stage_names"]
            self.assertGreaterEqual(len(names), 5, (arch, names))
            self.assertEqual(len(names), len(set(names)), names)
        # ResNet-18: a cut after every residual block, none inside one.
        names = read_metadata(os.path.join(self.dir, "resnet18.pt"))["stage_names"]
        blocks = [f"layer{l}.{b}" for l in range(1, 5) for b in range(2)]
        for block in blocks[:-1]:
            self.assertIn(block, names)
        self.assertFalse(any(n.startswith("layer1.0.") for n in names), names)

    def auto_export(self, factory):
        """Exports the user module's `factory` with --auto and no merging;
        returns (the tool's result, the stage names, the file)."""
        out = os.path.join(self.dir, factory + ".pt")
        result = run_export("--module", self.user + ":" + factory, "--auto",
                            "--min-stage-share", "0", "--input-shape",
                            "1,8,8", "--out", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result, read_metadata(out)["stage_names"], out

    def user_module(self):
        import importlib.util
        spec = importlib.util.spec_from_file_location("user_models", self.user)
        user = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(user)
        return user

    def test_auto_cuts_a_users_module_only_where_one_tensor_flows(self):
        result, names, out = self.auto_export("blocks")
        # Cuts after the stem, its relu and each block, never between a1 and
        # a2 or between b1 and its add (the skip connections keep x alive
        # there); stages are named by their last submodule or function.
        self.assertEqual(names, ["stem", "relu", "a2", "b1", "relu_2", "mean", "fc"])
        staged = torch.jit.load(out)
        x = torch.randn(3, 1, 8, 8)
        self.assertTrue(torch.allclose(staged(x), self.user_module().blocks()(x), atol=1e-5))
        # A larger --min-stage-share merges stages.
        merged = os.path.join(self.dir, "merged.pt")
        result = run_export("--module", self.user + ":blocks", "--auto",
                            "--min-stage-share", "0.4", "--input-shape",
                            "1,8,8", "--out", merged)
        if result.returncode == 0:
            self.assertLess(len(read_metadata(merged)["stage_names"]),
                            len(names))
        else:
            self.assertIn("lower --min-stage-share", result.stderr)

    def test_auto_names_what_fx_cannot_trace(self):
        out = os.path.join(self.dir, "branchy.pt")
        result = run_export("--module", self.user + ":branchy", "--auto",
                            "--input-shape", "1,8,8", "--out", out)
        self.assertEqual(result.returncode, 3)
        self.assertIn("torch.fx cannot trace Branchy", result.stderr)
        self.assertIn("--stages", result.stderr)
        self.assertFalse(os.path.exists(out))
        both = run_export("--module", self.user + ":blocks", "--auto",
                          "--stages", "stem,fc", "--input-shape", "1,8,8",
                          "--out", out)
        self.assertIn("--auto and --stages exclude each other", both.stderr)

    def test_auto_keeps_a_block_that_fx_cannot_trace_whole(self):
        result, names, out = self.auto_export("gated")
        self.assertIn("cannot trace inside 1 submodule(s), kept whole: gate",
                      result.stderr)
        self.assertIn("gate", names)
        self.assertIn("mid", names)
        # The staged model answers as the original.
        staged, original = torch.jit.load(out), self.user_module().gated()
        for seed in (1, 2):
            x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
            self.assertTrue(torch.allclose(staged(x), original(x), atol=1e-5))

    def test_plain_sequential_cnn_keeps_its_outputs(self):
        out = os.path.join(self.dir, "cnn.pt")
        result = run_export("--module", f"{self.user}:plain_cnn",
                            "--input-shape", "1,8,8", "--mean", "0.3",
                            "--std", "0.2", "--class-names", "a,b,c,d,e",
                            "--out", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        meta = read_metadata(out)
        self.assertEqual(meta["stage_names"], ["0", "1", "2", "3"])
        self.assertEqual(meta["class_names"], ["a", "b", "c", "d", "e"])
        self.assertAlmostEqual(meta["normalization"]["std"][0], 0.2)
        torch.manual_seed(1)
        original = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(1),
                                 nn.Linear(4 * 6 * 6, 5)).eval()
        x = torch.randn(4, 1, 8, 8)
        self.assertTrue(torch.allclose(torch.jit.load(out)(x), original(x),
                                       atol=1e-6))

    def test_stage_list_with_flatten_placement(self):
        out = os.path.join(self.dir, "net.pt")
        result = run_export("--module", f"{self.user}:net", "--stages",
                            "features,pool,fc", "--flatten-before", "fc",
                            "--input-shape", "1,10,10", "--out", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(read_metadata(out)["stage_names"],
                         ["features", "pool", "fc"])

    def test_refuses_when_staged_outputs_differ(self):
        out = os.path.join(self.dir, "residual.pt")
        result = run_export("--module", f"{self.user}:residual", "--stages",
                            "features,pool,fc", "--flatten-before", "fc",
                            "--input-shape", "1,10,10", "--out", out)
        self.assertEqual(result.returncode, 3)
        self.assertIn("differs from the original", result.stderr)
        self.assertFalse(os.path.exists(out))
        self.assertEqual(os.listdir(self.dir), ["user_models.py"])

    def test_refuses_missing_flatten(self):
        out = os.path.join(self.dir, "net.pt")
        result = run_export("--module", f"{self.user}:net", "--stages",
                            "features,pool,fc", "--input-shape", "1,10,10",
                            "--out", out)
        self.assertEqual(result.returncode, 3)
        self.assertIn("staged model fails on a random [2, 1, 10, 10] input",
                      result.stderr)
        self.assertFalse(os.path.exists(out))

    def test_bad_arguments_are_clear_errors(self):
        out = os.path.join(self.dir, "x.pt")
        cases = [
            (["--torchvision", "resnet18", "--input-shape", "3,x,32"],
             "--input-shape"),
            (["--torchvision", "nosuchnet", "--input-shape", "3,32,32"],
             "unknown model 'nosuchnet'"),
            (["--module", f"{self.user}:nothing", "--input-shape", "1,8,8"],
             "has no function 'nothing'"),
            (["--module", f"{self.user}:net", "--stages", "features,bogus",
              "--input-shape", "1,10,10"], "no submodule named 'bogus'"),
            (["--module", f"{self.user}:net", "--input-shape", "1,10,10"],
             "pass --auto or --stages"),
            (["--module", f"{self.user}:plain_cnn", "--input-shape", "1,8,8",
              "--class-names", "a,b"], "2 class names for 5 model outputs"),
            (["--module", f"{self.user}:plain_cnn", "--input-shape", "1,8,8",
              "--std", "0"], "std must be > 0"),
            (["--module", f"{self.user}:plain_cnn", "--input-shape", "1,8,8",
              "--weights", "/nonexistent/w.pth"], "--weights: cannot load"),
            (["--module", f"{self.user}:plain_cnn", "--input-shape",
              "3,8,8"], "the original model fails on a random [2, 3, 8, 8]"),
        ]
        for args, message in cases:
            with self.subTest(message=message):
                result = run_export(*args, "--out", out)
                self.assertEqual(result.returncode, 3, result.stderr)
                self.assertIn(message, result.stderr)
                self.assertFalse(os.path.exists(out))

    def test_library_refuses_fewer_than_two_stages(self):
        with self.assertRaises(gati_export.ExportError):
            gati_export.export_staged([("only", nn.Flatten(1))], None,
                                      (1, 2, 2), os.path.join(self.dir, "o.pt"),
                                      "o")


if __name__ == "__main__":
    unittest.main()

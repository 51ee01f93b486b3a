"""The README's "Your own model" walkthrough, end to end and small: a
torchvision ResNet-18 with its own weights, exported with --auto, built on a
folder of PNG and JPEG photos, replayed, served next to a ViT and an MLP on
feature vectors (with traffic recording), queried with curl and with the
Python client, then rebuilt on what the server recorded. Answers are
checked against Engine::Infer, and the recording against what was sent.

Environment: GATI, ENGINE_ANSWERS, GATI_SOURCE_DIR, GATI_FIXTURES_DIR.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import warnings

import numpy as np
from PIL import Image

SOURCE = os.environ["GATI_SOURCE_DIR"]
GATI = os.environ["GATI"]
ENGINE_ANSWERS = os.environ["ENGINE_ANSWERS"]
FIXTURES = os.environ["GATI_FIXTURES_DIR"]
PYTHON = "/usr/bin/python3"
EXPORT = os.path.join(SOURCE, "tools", "gati_export.py")
CLIENT = os.path.join(SOURCE, "tools", "gati_client.py")
sys.path.insert(0, os.path.join(SOURCE, "tools"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "serve"))
import gati_client  # noqa: E402
from serve_test import Server  # noqa: E402

# Small enough for CI: 2 epochs, and a tail budget of 0 so that exits exist
# whatever this machine's timings are.
QUICK = ["--epochs", "2", "--stream-epochs", "1", "--tail-budget", "0", "--plan-epsilon", "0.2"]


def run(*args, **kwargs):
    """Runs a command; its output is in the failure message."""
    done = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}")
    return done.stdout


def photos(root, count, seed):
    """Blocky colour photos of 48 x 40 in two class folders, PNG and JPEG."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        pixels = np.kron(blocks, np.ones((12, 10, 1), dtype=np.uint8))
        folder = os.path.join(root, ("ants", "bees")[i % 2])
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:03d}" + (".png" if i % 3 else ".jpg")),
                                     **({} if i % 3 else {"quality": 95}))


class WalkthroughTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        warnings.filterwarnings("ignore", category=ResourceWarning)
        cls.work = tempfile.mkdtemp(prefix="gati_walkthrough_")
        w = cls.path
        photos(w("photos/build"), 240, 1)
        photos(w("photos/holdout"), 40, 2)
        # The user's own weights: a state_dict of a 2-class ResNet-18.
        run(PYTHON, "-c", "import torch, torchvision; torch.manual_seed(3); "
            "torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), "
            f"'{w('r18-ants-bees.pth')}')")
        # 1. Export.
        cls.export_log = run(
            PYTHON, EXPORT, "--torchvision", "resnet18", "--num-classes", "2", "--class-names",
            "ants,bees", "--weights", w("r18-ants-bees.pth"), "--auto", "--input-shape", "3,32,32",
            "--resize", "36", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--out",
            w("r18.pt"))
        # 2. Build on the photos (default variants).
        cls.build_log = run(GATI, "build", "--model", w("r18.pt"), "--data", w("photos/build"),
                            "--out", w("r18.bundle"), *QUICK)
        # 3. Replay held-out photos.
        run(GATI, "trace", "--data", w("photos/holdout"), "--model", w("r18.pt"), "--n", "40",
            "--out", w("holdout.npy"))
        cls.replay_log = run(GATI, "replay", w("r18.bundle"), "--trace", w("holdout.npy"),
                             "--labels", w("holdout.labels.npy"), "--warmup", "2")
        # Two more families in the same server: the tiny ViT fixture on
        # Fashion-MNIST and an MLP on feature vectors.
        run(GATI, "build", "--model", os.path.join(FIXTURES, "tiny_vit.pt"), "--out",
            w("vit.bundle"), "--limit", "600", *QUICK)
        run(GATI, "trace", "--n", "8", "--out", w("fmnist.npy"))
        with open(w("mlp.py"), "w") as f:
            f.write("import torch\nfrom torch import nn\n"
                    "def mlp():\n    torch.manual_seed(4)\n"
                    "    return nn.Sequential(nn.Linear(12, 48), nn.ReLU(), nn.Linear(48, 48),"
                    " nn.ReLU(), nn.Linear(48, 5))\n")
        run(PYTHON, EXPORT, "--module", w("mlp.py") + ":mlp", "--input-shape", "12", "--auto",
            "--mean", "0.5", "--std", "2", "--out", w("mlp.pt"))
        rng = np.random.default_rng(6)
        np.save(w("vectors.npy"), rng.normal(size=(400, 12)).astype(np.float32))
        run(GATI, "build", "--model", w("mlp.pt"), "--data", w("vectors.npy"), "--out",
            w("mlp.bundle"), *QUICK)
        # 4. Serve, recording every request; the cap holds one shard of 256.
        cls.server = Server("--model", f"r18={w('r18.bundle')}", "--model", f"vit={w('vit.bundle')}",
                            "--model", f"mlp={w('mlp.bundle')}", "--record", w("recorded"),
                            "--record-rate", "1", "--record-bytes", "4MB")

    @classmethod
    def tearDownClass(cls):
        if cls.server.process.poll() is None:
            cls.server.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def path(cls, name):
        return os.path.join(cls.work, name)

    def engine_answers(self, bundle, inputs):
        np.save(self.path("inputs.npy"), inputs)
        run(ENGINE_ANSWERS, bundle, self.path("inputs.npy"), self.path("answers.json"))
        with open(self.path("answers.json")) as f:
            return json.load(f)

    def test_1_export_found_taps_and_the_build_planned_caches(self):
        self.assertIn("taps (after each stage but the last): 0:", self.export_log)
        self.assertIn("photos/build (240 images in 2 classes, shorter side to 36, center crop 32x32)",
                      open(self.path("r18.bundle/manifest.json")).read())
        self.assertRegex(self.build_log, r"plan \(mode")
        self.assertRegex(self.replay_log, r"accuracy: gati")

    def test_2_curl_and_the_client_answer_as_the_engine(self):
        url = self.server.http
        pixels = np.load(self.path("holdout.npy"))
        client = gati_client.Client(url, "r18")
        inputs = client.normalize(pixels)
        want = self.engine_answers(self.path("r18.bundle"), inputs)
        # curl, on the body the client writes from the bundle's metadata.
        out = run(PYTHON, CLIENT, "--model", "r18", "--trace", self.path("holdout.npy"), "--count",
                  "8", "--bundle", self.path("r18.bundle"), "--write-request",
                  self.path("r18.request.json"))
        self.assertIn("8 image(s)", out)
        body = run("curl", "-s", "--max-time", "30", "-X", "POST", f"{url}/v2/models/r18/infer",
                   "-H", "Content-Type: application/json", "-d", "@" + self.path("r18.request.json"))
        answer = json.loads(body)
        classes = next(o for o in answer["outputs"] if o["name"] == "class")["data"]
        self.assertEqual(classes, want["labels"][:8])
        # The client's command line, on the first 8 again and then the rest.
        out = run(PYTHON, CLIENT, "--url", url, "--model", "r18", "--trace", self.path("holdout.npy"),
                  "--count", "8")
        for i in range(8):
            self.assertIn(f"image {i}: class {want['labels'][i]} ", out)
        got = client.infer(inputs[8:], probabilities=True)
        self.assertEqual(got.classes.tolist(), want["labels"][8:])
        np.testing.assert_allclose(got.probabilities, want["scores"][8:], atol=1e-5)
        # Raw photos as UINT8 HWC, normalized by the server.
        raw = np.rint(np.clip(pixels[:4], 0, 1) * 255).astype(np.uint8)
        self.assertEqual(client.infer(raw.transpose(0, 2, 3, 1)).classes.tolist(),
                         client.infer(client.normalize(raw.astype(np.float32) / 255)).classes.tolist())
        # The other families, through the same client.
        for model, trace in (("vit", "fmnist.npy"), ("mlp", "vectors.npy")):
            other = gati_client.Client(url, model)
            x = other.normalize(np.load(self.path(trace))[:8])
            expected = self.engine_answers(self.path(f"{model}.bundle"), x)
            got = other.infer(x, probabilities=True)
            self.assertEqual(got.classes.tolist(), expected["labels"], model)
            np.testing.assert_allclose(got.probabilities, expected["scores"], atol=1e-5)

    def test_3_the_recording_rebuilds_the_caches(self):
        # Enough requests to pass one shard (256 samples) and reach the cap.
        client = gati_client.Client(self.server.http, "r18")
        pixels = np.load(self.path("holdout.npy"))
        sent = np.concatenate([pixels] * 8)  # 320 samples.
        for begin in range(0, len(sent), 40):
            client.infer(client.normalize(sent[begin:begin + 40]))
        self.assertEqual(self.server.stop(), 0, "".join(self.server.lines))
        self.assertTrue(any("recorded traffic under" in line for line in self.server.lines))
        shards = sorted(os.listdir(self.path("recorded/r18")))
        self.assertEqual(shards, ["shard-000000.npy"], "the 4MB cap holds one 3 MB shard")
        shard = np.load(self.path("recorded/r18/" + shards[0]))
        self.assertEqual(shard.shape, (256, 3, 32, 32))
        # Raw values, the normalization undone: one of the photos sent.
        distances = np.abs(pixels[None] - shard[-1][None, None]).reshape(len(pixels), -1).max(1)
        self.assertLess(distances.min(), 1e-5)
        self.assertTrue(os.path.isdir(self.path("recorded/vit")))
        self.assertEqual(np.load(self.path("recorded/mlp/shard-000000.npy")).shape[1:], (12,))
        # 6. Rebuild on what the server saw.
        log = run(GATI, "build", "--model", self.path("r18.pt"), "--data", self.path("recorded/r18"),
                  "--out", self.path("r18.next.bundle"), *QUICK)
        self.assertIn("samples 256: predictor-train", log)


if __name__ == "__main__":
    unittest.main(verbosity=2)

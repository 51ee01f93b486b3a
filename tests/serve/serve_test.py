"""End-to-end tests of `gati serve`: start the server on a real bundle, drive
it with the Python clients (tools/gati_client.py over HTTP, JSON and binary;
a gRPC client generated here from proto/grpc_predict_v2.proto), and check
answers against Engine::Infer, errors, metrics, reload, overload and drain.

Environment: GATI (the gati binary), ENGINE_ANSWERS (tests/serve
engine_answers), GATI_SOURCE_DIR (the repository root).
"""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings

import numpy as np
import requests

SOURCE = os.environ["GATI_SOURCE_DIR"]
GATI = os.environ["GATI"]
ENGINE_ANSWERS = os.environ["ENGINE_ANSWERS"]
sys.path.insert(0, os.path.join(SOURCE, "tools"))
import gati_client  # noqa: E402

READY = re.compile(
    r"HTTP on ([\d.]+):(\d+), gRPC on [\d.]+:(\d+), metrics on http://([\d.]+):(\d+)/")
COUNT = 48  # Requests compared with the engine.


class Server:
    """A `gati serve` process on free ports; stop() sends SIGTERM."""

    def __init__(self, *args):
        self.process = subprocess.Popen(
            [GATI, "serve", "--host", "127.0.0.1", "--http-port", "0", "--grpc-port", "0",
             "--metrics-port", "0", "--feedback-rate", "0", "--mode", "sequential", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("gati serve exited:\n" + "".join(self.lines))
            self.lines.append(line)
            match = READY.search(line)
            if match:
                self.http = f"http://127.0.0.1:{match.group(2)}"
                self.grpc = f"127.0.0.1:{match.group(3)}"
                self.metrics = f"http://{match.group(4)}:{match.group(5)}/metrics"
                self.http_port = int(match.group(2))
                break
        else:
            raise RuntimeError("gati serve did not get ready:\n" + "".join(self.lines))
        threading.Thread(target=self._drain_output, daemon=True).start()

    def _drain_output(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def stop(self, timeout=60):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def metric(self, name, **labels):
        """The value of the sample of /metrics named `name` whose labels
        include `labels` (None when absent)."""
        text = requests.get(self.metrics, timeout=10).text
        return metric_value(text, name, **labels)


def metric_value(text, name, **labels):
    """The value of the sample named `name` with (at least) `labels`."""
    for match in re.finditer("^" + re.escape(name) + r"(?:\{(.*)\})? (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
        if all(found.get(k) == str(v) for k, v in labels.items()):
            return float(match.group(2))
    return None


def promtool_complaints(text):
    """What `promtool check metrics` finds in `text`, less the naming lints
    it has for Triton's own metric names (nv_inference_*), which Triton
    dashboards need as they are."""
    check = subprocess.run(["promtool", "check", "metrics"], input=text,
                           capture_output=True, text=True)
    lines = (check.stdout + check.stderr).splitlines()
    return [line for line in lines if line.strip() and not line.startswith("nv_inference_")]


def build_bundle(directory):
    subprocess.run(
        [GATI, "build", "--model", os.path.join(SOURCE, "models", "resnet20.pt"), "--out",
         directory, "--taps", "5,7,8", "--variants", "gap:linear,gap:mlp64", "--limit", "4000",
         "--epochs", "20", "--threads", "2", "--epsilon", "0.05",
         # These tests need exits at taps whatever the machine's timings; on a
         # 1 ms model the default tail budget may leave no cache to plan.
         "--tail-budget", "0"],
        check=True, stdout=subprocess.DEVNULL)


def generate_grpc(directory):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I" + os.path.join(SOURCE, "proto"),
         "--python_out=" + directory, "--grpc_python_out=" + directory,
         os.path.join(SOURCE, "proto", "grpc_predict_v2.proto")], check=True)
    sys.path.insert(0, directory)
    import grpc_predict_v2_pb2
    import grpc_predict_v2_pb2_grpc
    return grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc


class ServeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Sessions and pipes close at exit; the warnings are noise here.
        warnings.filterwarnings("ignore", category=ResourceWarning)
        cls.work = tempfile.mkdtemp(prefix="gati_serve_test_")
        cls.bundle = os.path.join(cls.work, "r20")
        build_bundle(cls.bundle)
        cls.copy = os.path.join(cls.work, "copy")
        shutil.copytree(cls.bundle, cls.copy)
        trace = os.path.join(cls.work, "trace.npy")
        subprocess.run([GATI, "trace", "--kind", "iid", "--n", str(COUNT), "--seed", "3", "--out",
                        trace], check=True, stdout=subprocess.DEVNULL)
        cls.server = Server("--model", f"r20={cls.bundle}", "--model", f"copy={cls.copy}",
                            "--max-body", "1MB")
        cls.client = gati_client.Client(cls.server.http, "r20")
        cls.raw_pixels = np.load(trace)
        cls.inputs = cls.client.normalize(cls.raw_pixels)
        inputs_file = os.path.join(cls.work, "inputs.npy")
        np.save(inputs_file, cls.inputs)
        answers_file = os.path.join(cls.work, "answers.json")
        subprocess.run([ENGINE_ANSWERS, cls.bundle, inputs_file, answers_file], check=True)
        with open(answers_file) as f:
            cls.expected = json.load(f)
        cls.pb, cls.pb_grpc = generate_grpc(cls.work)

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        shutil.rmtree(cls.work, ignore_errors=True)
        assert code == 0, f"gati serve exited {code}:\n" + "".join(cls.server.lines)

    def assert_matches_engine(self, index, label, exit_tap, probabilities):
        self.assertEqual(label, self.expected["labels"][index], f"request {index}")
        self.assertEqual(exit_tap, self.expected["exit_taps"][index], f"request {index}")
        np.testing.assert_allclose(probabilities, self.expected["scores"][index], atol=1e-5)

    # --- HTTP -----------------------------------------------------------
    def test_metadata_endpoints(self):
        http = self.server.http
        self.assertEqual(requests.get(f"{http}/v2/health/live").status_code, 200)
        self.assertEqual(requests.get(f"{http}/v2/health/ready").status_code, 200)
        server = requests.get(f"{http}/v2").json()
        self.assertEqual(server["name"], "gati")
        self.assertIn("binary_tensor_data", server["extensions"])
        for base in (f"{http}/v2/models/r20", f"{http}/v2/models/r20/versions/1"):
            meta = requests.get(base).json()
            self.assertEqual(meta["platform"], "pytorch_torchscript")
            self.assertEqual(meta["inputs"][0], {"name": "input", "datatype": "FP32",
                                                 "shape": [-1, 1, 28, 28]})
            self.assertEqual([o["name"] for o in meta["outputs"]], ["class", "probabilities"])
            self.assertEqual(requests.get(f"{base}/ready").status_code, 200)
            config = requests.get(f"{base}/config").json()
            # The plan depends on profiled latencies; the manifest says which.
            with open(os.path.join(self.bundle, "manifest.json")) as f:
                planned = [c["tap"] for c in json.load(f)["plan"]["caches"]]
            self.assertEqual(config["gati"]["planned_taps"], planned)
            self.assertEqual(config["gati"]["plan_batch"], 1)  # Planned for single requests.
            self.assertGreater(len(planned), 0)
            stats = requests.get(f"{base}/stats").json()
            self.assertEqual(stats["model_stats"][0]["name"], "r20")
        self.assertEqual(requests.get(f"{http}/v2/models/r20/versions/7").status_code, 404)
        self.assertEqual(requests.get(f"{http}/v2/models/absent/ready").status_code, 404)
        index = requests.post(f"{http}/v2/repository/index").json()
        self.assertEqual({m["name"]: m["state"] for m in index}, {"r20": "READY", "copy": "READY"})

    def check_http(self, binary):
        exits = set()
        for i in range(COUNT):
            answer = self.client.infer(self.inputs[i:i + 1], probabilities=True, binary=binary,
                                       request_id=f"req-{i}")
            self.assertEqual(answer.id, f"req-{i}")
            self.assertEqual(answer.classes.shape, (1,))
            self.assert_matches_engine(i, int(answer.classes[0]),
                                       answer.parameters["gati_exit_tap"], answer.probabilities[0])
            self.assertEqual(answer.parameters["gati_cache_hit"],
                             answer.parameters["gati_exit_tap"] != -1)
            exits.add(answer.parameters["gati_exit_tap"])
        self.assertGreater(len(exits), 1, "the test bundle should answer at taps and at the base")
        batch = self.client.infer(self.inputs[:8], binary=binary)
        self.assertEqual(batch.classes.tolist(), self.expected["labels"][:8])
        self.assertIsNone(batch.probabilities)

    def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(self):
        # 16 clients at once: the dynamic batcher (on by default) merges
        # their requests; every answer is still the engine's for its input.
        from concurrent.futures import ThreadPoolExecutor
        version = requests.get(f"{self.server.http}/v2/models/r20").json()["versions"][0]
        text = requests.get(self.server.metrics).text
        executions = metric_value(text, "nv_inference_exec_count", model="r20", version=version)
        inferences = metric_value(text, "nv_inference_count", model="r20", version=version)
        client = gati_client.Client(self.server.http, "r20")
        indices = [i % COUNT for i in range(192)]

        def one(i):
            return i, client.infer(self.inputs[i:i + 1], probabilities=True)
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, indices))
        for i, answer in answers:
            self.assert_matches_engine(i, int(answer.classes[0]),
                                       answer.parameters["gati_exit_tap"], answer.probabilities[0])
        text = requests.get(self.server.metrics).text
        ran = metric_value(text, "nv_inference_exec_count", model="r20", version=version)
        served = metric_value(text, "nv_inference_count", model="r20", version=version)
        self.assertEqual(served - inferences, 192)
        # Fewer executions than requests: some batches held several.
        self.assertLess(ran - executions, 192)
        self.assertGreater(ran - executions, 0)

    def test_raw_uint8_images_answer_like_their_normalized_floats(self):
        # The server normalizes UINT8 pixels itself, with the same float32
        # arithmetic as the client's normalize(): the same answers.
        raw = np.rint(np.clip(self.raw_pixels[:6], 0, 1) * 255).astype(np.uint8)
        want = self.client.infer(self.client.normalize(raw.astype(np.float32) / 255),
                                 probabilities=True)
        for binary in (False, True):
            for images in (raw, raw.transpose(0, 2, 3, 1)):  # [N,C,H,W] and [N,H,W,C]
                got = self.client.infer(images, probabilities=True, binary=binary)
                self.assertEqual(got.classes.tolist(), want.classes.tolist())
                np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-6)
        bad = requests.post(f"{self.server.http}/v2/models/r20/infer", json={"inputs": [
            {"name": "input", "datatype": "UINT8", "shape": [1, 2], "data": [300, 1]}]})
        self.assertEqual(bad.status_code, 400)
        self.assertIn("is not a UINT8", bad.json()["error"])

    def test_json_client_matches_engine(self):
        self.check_http(binary=False)

    def test_binary_client_matches_engine(self):
        self.check_http(binary=True)

    def test_nested_json_data_is_accepted(self):
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                            "data": self.inputs[:1].tolist()}]}
        response = requests.post(f"{self.server.http}/v2/models/r20/infer", json=body)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json()["outputs"][0]["data"], self.expected["labels"][:1])

    # --- gRPC -----------------------------------------------------------
    def grpc_stub(self):
        import grpc
        channel = grpc.insecure_channel(self.server.grpc)
        return grpc, self.pb_grpc.GRPCInferenceServiceStub(channel)

    def grpc_request(self, inputs, raw=True, outputs=("class", "probabilities")):
        request = self.pb.ModelInferRequest(model_name="r20", id="g")
        tensor = request.inputs.add(name="input", datatype="FP32", shape=list(inputs.shape))
        if raw:
            request.raw_input_contents.append(np.ascontiguousarray(inputs, "<f4").tobytes())
        else:
            tensor.contents.fp32_contents.extend(inputs.reshape(-1).tolist())
        for name in outputs:
            request.outputs.add(name=name)
        return request

    def test_grpc_client_matches_engine(self):
        grpc, stub = self.grpc_stub()
        self.assertTrue(stub.ServerLive(self.pb.ServerLiveRequest()).live)
        self.assertTrue(stub.ServerReady(self.pb.ServerReadyRequest()).ready)
        self.assertTrue(stub.ModelReady(self.pb.ModelReadyRequest(name="r20")).ready)
        self.assertIn("binary_tensor_data",
                      stub.ServerMetadata(self.pb.ServerMetadataRequest()).extensions)
        meta = stub.ModelMetadata(self.pb.ModelMetadataRequest(name="r20"))
        self.assertEqual(list(meta.inputs[0].shape), [-1, 1, 28, 28])
        for i in range(COUNT):
            response = stub.ModelInfer(self.grpc_request(self.inputs[i:i + 1], raw=i % 2 == 0))
            self.assertEqual(response.id, "g")
            self.assertEqual([o.name for o in response.outputs], ["class", "probabilities"])
            label = np.frombuffer(response.raw_output_contents[0], "<i8")
            probabilities = np.frombuffer(response.raw_output_contents[1], "<f4")
            self.assert_matches_engine(i, int(label[0]),
                                       response.parameters["gati_exit_tap"].int64_param,
                                       probabilities)
        # The batch dimension is part of the declared shape.
        single = stub.ModelInfer(self.grpc_request(self.inputs[:1], outputs=("class",)))
        self.assertEqual(list(single.outputs[0].shape), [1])
        self.assertEqual(np.frombuffer(single.raw_output_contents[0], "<i8").tolist(),
                         self.expected["labels"][:1])
        with self.assertRaises(grpc.RpcError) as error:
            stub.ModelInfer(self.grpc_request(self.inputs[0]))
        self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_grpc_errors_carry_codes(self):
        grpc, stub = self.grpc_stub()
        bad_shape = self.grpc_request(self.inputs[:1, :, :14])
        with self.assertRaises(grpc.RpcError) as error:
            stub.ModelInfer(bad_shape)
        self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("does not fit model 'r20'", error.exception.details())
        unknown = self.grpc_request(self.inputs[:1])
        unknown.model_name = "absent"
        with self.assertRaises(grpc.RpcError) as error:
            stub.ModelInfer(unknown)
        self.assertEqual(error.exception.code(), grpc.StatusCode.NOT_FOUND)
        short = self.grpc_request(self.inputs[:1])
        short.raw_input_contents[0] = short.raw_input_contents[0][:100]
        with self.assertRaises(grpc.RpcError) as error:
            stub.ModelInfer(short)
        self.assertIn("holds 100 bytes", error.exception.details())
        self.assertTrue(stub.ServerLive(self.pb.ServerLiveRequest()).live)

    def test_grpc_extensions_and_streaming(self):
        grpc, stub = self.grpc_stub()
        pb = self.pb
        extensions = stub.ServerMetadata(pb.ServerMetadataRequest()).extensions
        for extension in ("statistics", "model_repository", "model_configuration"):
            self.assertIn(extension, extensions)
        config = stub.ModelConfig(pb.ModelConfigRequest(name="r20")).config
        self.assertEqual(config.name, "r20")
        self.assertEqual(config.platform, "pytorch_torchscript")
        self.assertEqual(config.input[0].data_type, pb.TYPE_FP32)
        # Batching by default: max_batch_size 32, one sample's dims.
        self.assertEqual(config.max_batch_size, 32)
        self.assertEqual(list(config.input[0].dims), [1, 28, 28])
        self.assertTrue(config.HasField("dynamic_batching"))
        self.assertEqual([o.name for o in config.output], ["class", "probabilities"])
        self.assertEqual(config.output[0].data_type, pb.TYPE_INT64)
        with self.assertRaises(grpc.RpcError) as error:
            stub.ModelConfig(pb.ModelConfigRequest(name="absent"))
        self.assertEqual(error.exception.code(), grpc.StatusCode.NOT_FOUND)

        before = stub.ModelStatistics(pb.ModelStatisticsRequest(name="r20")).model_stats[0]
        stub.ModelInfer(self.grpc_request(self.inputs[:3]))
        after = stub.ModelStatistics(pb.ModelStatisticsRequest(name="r20")).model_stats[0]
        self.assertEqual(after.inference_count - before.inference_count, 3)
        self.assertEqual(after.inference_stats.success.count - before.inference_stats.success.count,
                         1)
        self.assertGreater(after.inference_stats.success.ns, before.inference_stats.success.ns)
        every = stub.ModelStatistics(pb.ModelStatisticsRequest()).model_stats
        self.assertEqual({m.name for m in every}, {"r20", "copy"})

        index = stub.RepositoryIndex(pb.RepositoryIndexRequest()).models
        self.assertEqual({m.name: m.state for m in index}, {"r20": "READY", "copy": "READY"})
        # Loading an unchanged bundle keeps its version; a config override
        # is refused, not ignored.
        version = {m.name: m.version for m in index}["copy"]
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="copy"))
        index = stub.RepositoryIndex(pb.RepositoryIndexRequest()).models
        self.assertEqual({m.name: m.version for m in index}["copy"], version)
        override = pb.RepositoryModelLoadRequest(model_name="copy")
        override.parameters["config"].string_param = '{"max_batch_size": 8}'
        with self.assertRaises(grpc.RpcError) as error:
            stub.RepositoryModelLoad(override)
        self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("'config' is not supported", error.exception.details())
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="copy"))
        try:
            ready = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True)).models
            self.assertEqual([m.name for m in ready], ["r20"])
            request = self.grpc_request(self.inputs[:1])
            request.model_name = "copy"
            with self.assertRaises(grpc.RpcError) as error:
                stub.ModelInfer(request)
            self.assertEqual(error.exception.code(), grpc.StatusCode.UNAVAILABLE)
        finally:
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="copy"))
        self.assertTrue(stub.ModelReady(pb.ModelReadyRequest(name="copy")).ready)

        # A stream: one response per request, in order, errors in-band.
        good = [self.grpc_request(self.inputs[i:i + 1]) for i in range(3)]
        bad = self.grpc_request(self.inputs[:1, :, :14])
        responses = list(stub.ModelStreamInfer(iter([good[0], bad, good[1], good[2]])))
        self.assertEqual(len(responses), 4)
        self.assertEqual(responses[0].error_message, "")
        self.assertIn("does not fit model 'r20'", responses[1].error_message)
        for k, i in ((0, 0), (2, 1), (3, 2)):
            label = np.frombuffer(responses[k].infer_response.raw_output_contents[0], "<i8")
            self.assertEqual(int(label[0]), self.expected["labels"][i])

    def test_grpc_refuses_garbage_and_other_datatypes_by_name(self):
        grpc, stub = self.grpc_stub()
        channel = grpc.insecure_channel(self.server.grpc)
        for rpc in ("ModelInfer", "ModelMetadata", "ModelReady", "ModelConfig",
                    "ModelStatistics", "RepositoryIndex", "RepositoryModelLoad",
                    "RepositoryModelUnload", "ServerMetadata"):
            raw = channel.unary_unary(f"/inference.GRPCInferenceService/{rpc}")
            with self.assertRaises(grpc.RpcError) as error:
                raw(b"\xff\xff\xff\xff not a protobuf", timeout=10)
            self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, rpc)
            self.assertIn("not a valid inference.", error.exception.details())
        fp64 = self.pb.ModelInferRequest(model_name="r20")
        tensor = fp64.inputs.add(name="input", datatype="FP64", shape=[1, 1, 28, 28])
        tensor.contents.fp64_contents.extend([0.0] * 784)
        with self.assertRaises(grpc.RpcError) as error:
            stub.ModelInfer(fp64)
        self.assertEqual(error.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("datatype FP64 is not supported", error.exception.details())
        self.assertTrue(stub.ServerLive(self.pb.ServerLiveRequest()).live)

    # --- Robustness -----------------------------------------------------
    def test_bad_requests_get_4xx_and_the_server_keeps_serving(self):
        url = f"{self.server.http}/v2/models/r20/infer"
        good = {"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                "data": [0.0] * 784}
        nan_body, nan_headers = gati_client.request_body(
            np.full((1, 1, 28, 28), np.nan, np.float32), binary=True)
        cases = [
            ("malformed JSON", url, b'{"inputs": [', {}, 400, "not valid JSON"),
            ("wrong dtype", url, {"inputs": [dict(good, datatype="INT32")]}, {}, 400,
             "datatype INT32"),
            ("wrong shape", url, {"inputs": [dict(good, shape=[1, 1, 27, 28],
                                                  data=[0.0] * 756)]}, {}, 400,
             "does not fit model 'r20'"),
            ("element count", url, {"inputs": [dict(good, data=[0.0] * 783)]}, {}, 400,
             "783 values"),
            ("string value", url, {"inputs": [dict(good, data=["x"] * 784)]}, {}, 400,
             "not a number"),
            ("non-finite", url, nan_body, nan_headers, 400, "not finite"),
            ("bad binary header", url, nan_body, {gati_client.HEADER: "ten"}, 400,
             "must be an integer"),
            ("binary header past the body", url, nan_body, {gati_client.HEADER: "999999"}, 400,
             "but the body has"),
            ("wrong input name", url, {"inputs": [dict(good, name="pixels")]}, {}, 400,
             "has no input 'pixels'"),
            ("unknown output", url, {"inputs": [good], "outputs": [{"name": "logits"}]}, {},
             400, "no output 'logits'"),
            ("unknown model", f"{self.server.http}/v2/models/absent/infer",
             {"inputs": [good]}, {}, 404, "unknown model 'absent'"),
            ("unknown endpoint", f"{self.server.http}/v2/models/r20/explain",
             {"inputs": [good]}, {}, 404, "unknown endpoint"),
            ("body over the limit", url, b"x" * (2 << 20), {}, 413, "exceeds"),
        ]
        failures_before = self.server.metric("gati_request_failure_total", model="r20",
                                              reason="invalid_argument")
        for name, target, body, headers, status, message in cases:
            with self.subTest(name):
                if isinstance(body, dict):
                    response = requests.post(target, json=body, headers=headers)
                else:
                    response = requests.post(target, data=body, headers=headers)
                self.assertEqual(response.status_code, status, response.text)
                self.assertIn(message, response.json()["error"])
        failures_after = self.server.metric("gati_request_failure_total", model="r20",
                                             reason="invalid_argument")
        self.assertEqual(failures_after - failures_before, 10)
        answer = self.client.infer(self.inputs[:1])
        self.assertEqual(int(answer.classes[0]), self.expected["labels"][0])

    def test_listen_backlog_is_raised(self):
        listing = subprocess.run(["ss", "-ltnH", f"sport = :{self.server.http_port}"],
                                 capture_output=True, text=True, check=True).stdout.split()
        self.assertGreaterEqual(int(listing[2]), 1024, listing)  # Send-Q of a listener

    # --- Metrics --------------------------------------------------------
    def test_metrics_pass_promtool_and_count_requests(self):
        before = self.server.metric("gati_request_success_total", model="r20")
        for i in range(5):
            self.client.infer(self.inputs[i:i + 1])
        text = requests.get(self.server.metrics).text
        self.assertEqual(promtool_complaints(text), [])
        # Triton's names, with model and version labels.
        version = requests.get(f"{self.server.http}/v2/models/r20").json()["versions"][0]
        self.assertEqual(metric_value(text, "nv_inference_request_success", model="r20",
                                      version=version),
                         metric_value(text, "gati_request_success_total", model="r20"))
        for family in ("nv_inference_count", "nv_inference_exec_count",
                       "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                       "nv_inference_compute_infer_duration_us", "nv_inference_request_failure"):
            self.assertIsNotNone(metric_value(text, family, model="r20", version=version), family)
        self.assertNotIn("0.00025000000000000001", text)
        self.assertEqual(self.server.metric("gati_request_success_total", model="r20"),
                         before + 5)
        for family in ("gati_request_duration_seconds_bucket", "gati_queue_duration_seconds_count",
                       "gati_compute_duration_seconds_sum", "gati_tap_hits_total",
                       "gati_tap_misses_total", "gati_tap_false_hits_total", "gati_tap_disabled",
                       "gati_cache_version", "gati_online_updates_accepted_total",
                       "gati_feedback_memory_bytes"):
            self.assertIn(family, text)
        with open(os.path.join(self.bundle, "manifest.json")) as f:
            tap = str(json.load(f)["plan"]["caches"][0]["tap"])  # The plan's first tap.
        lookups = self.server.metric("gati_tap_lookups_total", model="r20", tap=tap)
        hits = self.server.metric("gati_tap_hits_total", model="r20", tap=tap)
        misses = self.server.metric("gati_tap_misses_total", model="r20", tap=tap)
        self.assertGreater(lookups, 0)
        self.assertEqual(hits + misses, lookups)

    # --- Model repository -----------------------------------------------
    def test_reload_keeps_in_flight_requests_and_a_failed_reload_keeps_serving(self):
        copy = gati_client.Client(self.server.http, "copy")
        version = int(requests.get(f"{self.server.http}/v2/models/copy").json()["versions"][0])
        errors, answered = [], [0]
        stop = threading.Event()

        def load():
            while not stop.is_set():
                try:
                    answer = copy.infer(self.inputs[:4])
                    if answer.classes.tolist() != self.expected["labels"][:4]:
                        errors.append(f"wrong answer {answer.classes.tolist()}")
                    answered[0] += 1
                except Exception as e:  # noqa: BLE001 - any failure is the test's
                    errors.append(repr(e))

        # Loading an unchanged bundle changes nothing: requests pinned to
        # the version keep working.
        same = requests.post(f"{self.server.http}/v2/repository/models/copy/load")
        self.assertEqual(same.status_code, 200, same.text)
        self.assertEqual(same.json(), {"name": "copy", "version": str(version), "changed": False})
        pinned = requests.get(f"{self.server.http}/v2/models/copy/versions/{version}/ready")
        self.assertEqual(pinned.status_code, 200)
        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        manifest = os.path.join(self.copy, "manifest.json")
        with open(manifest, "a") as f:
            f.write("\n")  # A new revision of the bundle.
        reload = requests.post(f"{self.server.http}/v2/repository/models/copy/load")
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(reload.status_code, 200, reload.text)
        self.assertEqual(reload.json()["version"], str(version + 1))
        self.assertEqual(errors, [])
        self.assertGreater(answered[0], 0)

        shutil.move(manifest, manifest + ".away")
        try:
            failed = requests.post(f"{self.server.http}/v2/repository/models/copy/load")
        finally:
            shutil.move(manifest + ".away", manifest)
        self.assertEqual(failed.status_code, 400)
        self.assertIn("manifest.json", failed.json()["error"])
        meta = requests.get(f"{self.server.http}/v2/models/copy").json()
        self.assertEqual(meta["versions"], [str(version + 1)])
        self.assertEqual(copy.infer(self.inputs[:1]).classes.tolist(), self.expected["labels"][:1])
        self.assertEqual(
            requests.post(f"{self.server.http}/v2/repository/models/absent/load").status_code, 404)

    # --- Overload and drain (own servers) -------------------------------
    def test_a_full_queue_answers_503(self):
        server = Server("--model", f"r20={self.bundle}", "--max-queue", "1", "--workers", "1",
                        "--http-threads", "16")
        try:
            client_inputs = np.repeat(self.inputs[:1], 200, axis=0)

            def call(_):
                return gati_client.Client(server.http, "r20").infer(client_inputs)

            statuses = []
            with concurrent.futures.ThreadPoolExecutor(12) as pool:
                for future in [pool.submit(call, i) for i in range(12)]:
                    try:
                        future.result()
                        statuses.append(200)
                    except gati_client.ServerError as e:
                        statuses.append(e.status)
                        self.assertIn("overloaded", e.message)
            self.assertIn(200, statuses)
            self.assertIn(503, statuses)
            self.assertEqual(set(statuses), {200, 503})
            self.assertEqual(server.metric("gati_request_failure_total", model="r20",
                                           reason="overloaded"), statuses.count(503))
            self.assertEqual(len(gati_client.Client(server.http, "r20").infer(
                self.inputs[:2]).classes), 2)
        finally:
            self.assertEqual(server.stop(), 0)

    def test_sigterm_drains_in_flight_requests_then_exits_0(self):
        server = Server("--repository", self.work_repository())
        client = gati_client.Client(server.http, "r20")
        batch = np.repeat(self.inputs[:1], 600, axis=0)
        result = {}

        def call():
            try:
                result["answer"] = client.infer(batch)
            except Exception as e:  # noqa: BLE001
                result["error"] = e

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.time() + 30
        while server.metric("gati_requests_in_flight") != 1 and time.time() < deadline:
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        thread.join(60)
        self.assertEqual(server.process.wait(60), 0, "".join(server.lines))
        self.assertNotIn("error", result)
        self.assertEqual(len(result["answer"].classes), 600)
        self.assertTrue(any("draining 1 requests" in line for line in server.lines),
                        "".join(server.lines))

    def work_repository(self):
        repository = os.path.join(self.work, "repository")
        if not os.path.exists(repository):
            os.makedirs(repository)
            os.symlink(self.bundle, os.path.join(repository, "r20"))
        return repository


if __name__ == "__main__":
    unittest.main(verbosity=2)

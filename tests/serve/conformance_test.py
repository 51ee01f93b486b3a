"""Conformance of `gati serve` with the Open Inference Protocol, driven by
clients built from the protocol's documents rather than from gati's own
encoder:

- REST: a client made from proto/rest_predict_v2.yaml (OpenAPI 3): each call
  names an operationId, its path and method come from the document, the
  request body is checked against the document's schema before it is sent,
  and every response, errors included, against the schema the document gives
  for its status (an undocumented status fails). Every operation of the
  document is called.
- gRPC: stubs generated from proto/grpc_predict_v2.proto, every RPC, sync
  and asyncio (grpc.aio).
- The habits of Triton-style clients: asyncio HTTP with automatic
  decompression off (aiohttp, auto_decompress=False) and Accept-Encoding on
  every call, POSTs without a body or Content-Length, binary_data_output,
  requests without an outputs list.

Environment: GATI (the gati binary), GATI_SOURCE_DIR (the repository root).
"""
import asyncio
import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import zlib

import jsonschema
import numpy as np
import requests
import yaml

SOURCE = os.environ["GATI_SOURCE_DIR"]
GATI = os.environ["GATI"]
sys.path.insert(0, os.path.join(SOURCE, "tests", "serve"))
from hostile_test import build_small_bundle  # noqa: E402
from serve_test import Server, generate_grpc  # noqa: E402


class OpenApiClient:
    """REST calls by operationId, as the OpenAPI document describes them."""

    def __init__(self, document_path, base_url):
        with open(document_path) as f:
            self.document = yaml.safe_load(f)
        self.base = base_url
        self.resolver = jsonschema.RefResolver.from_schema(self.document)
        self.operations = {}
        for path, methods in self.document["paths"].items():
            for method, operation in methods.items():
                self.operations[operation["operationId"]] = (method.upper(), path, operation)
        self.called = set()

    def schema_check(self, instance, schema, what):
        try:
            jsonschema.Draft7Validator(schema, resolver=self.resolver).validate(instance)
        except jsonschema.ValidationError as error:
            raise AssertionError(f"{what}: {error.message}\n{json.dumps(instance)[:500]}")

    def resolve(self, node):
        while "$ref" in node:
            node = self.resolver.resolve(node["$ref"])[1]
        return node

    def call(self, operation_id, body=None, raw_body=None, headers=None, **path_params):
        """(status, parsed JSON) of one call; the response must match the
        document for its status."""
        method, template, operation = self.operations[operation_id]
        path = re.sub(r"\{(\w+)\}", lambda m: path_params[m.group(1)], template)
        if body is not None:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            self.schema_check(body, schema, f"{operation_id} request")
            raw_body = json.dumps(body).encode()
        response = requests.request(method, self.base + path, data=raw_body,
                                    headers=headers or {}, timeout=30)
        documented = operation["responses"].get(str(response.status_code))
        if documented is None:
            raise AssertionError(f"{operation_id}: status {response.status_code} is not in the "
                                 f"document: {response.text[:300]}")
        documented = self.resolve(documented)
        parsed = response.json()
        schema = documented["content"]["application/json"]["schema"]
        self.schema_check(parsed, schema, f"{operation_id} {response.status_code} response")
        self.called.add(operation_id)
        return response.status_code, parsed


def infer_request(images, outputs=None, binary_output=None):
    request = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(images.shape),
                           "data": images.reshape(-1).tolist()}]}
    if outputs is not None:
        request["outputs"] = [{"name": name} for name in outputs]
    if binary_output is not None:
        request["parameters"] = {"binary_data_output": binary_output}
    return request


class ConformanceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="gati_conformance_test_")
        cls.bundle = os.path.join(cls.work, "r20")
        build_small_bundle(cls.bundle)
        cls.server = Server("--model", f"r20={cls.bundle}")
        cls.rest = OpenApiClient(os.path.join(SOURCE, "proto", "rest_predict_v2.yaml"),
                                 cls.server.http)
        cls.pb, cls.pb_grpc = generate_grpc(cls.work)
        rng = np.random.default_rng(4)
        cls.images = rng.normal(size=(4, 1, 28, 28)).astype(np.float32)

    @classmethod
    def tearDownClass(cls):
        try:
            missing = set(cls.rest.operations) - cls.rest.called
            assert not missing, f"operations of the document never called: {sorted(missing)}"
        finally:
            code = cls.server.stop()
            shutil.rmtree(cls.work, ignore_errors=True)
        assert code == 0, "".join(cls.server.lines)

    # --- REST, by the document ------------------------------------------
    def test_health_and_metadata(self):
        rest = self.rest
        self.assertEqual(rest.call("server_live"), (200, {"live": True}))
        self.assertEqual(rest.call("server_ready"), (200, {"ready": True}))
        status, server = rest.call("server_metadata")
        self.assertEqual(status, 200)
        for extension in ("binary_tensor_data", "statistics", "model_repository",
                          "model_configuration"):
            self.assertIn(extension, server["extensions"])
        status, meta = rest.call("model_metadata", model_name="r20")
        self.assertEqual(meta["inputs"][0]["shape"], [-1, 1, 28, 28])
        version = meta["versions"][0]
        self.assertEqual(rest.call("model_version_metadata", model_name="r20",
                                   model_version=version)[0], 200)
        self.assertEqual(rest.call("model_ready", model_name="r20")[1]["ready"], True)
        self.assertEqual(rest.call("model_version_ready", model_name="r20",
                                   model_version=version)[0], 200)
        status, config = rest.call("model_config", model_name="r20")
        self.assertEqual(config["input"][0]["data_type"], "TYPE_FP32")
        # gati serve batches dynamically by default: Triton's config, with
        # one sample's dims.
        self.assertEqual(config["max_batch_size"], 32)
        self.assertEqual(config["input"][0]["dims"], [1, 28, 28])
        self.assertEqual(config["dynamic_batching"]["max_queue_delay_microseconds"], 0)
        self.assertEqual(rest.call("model_statistics", model_name="r20")[1]["model_stats"][0]
                         ["name"], "r20")
        self.assertEqual(rest.call("all_statistics")[0], 200)

    def test_errors_of_the_specification(self):
        rest = self.rest
        for operation in ("model_metadata", "model_ready", "model_config", "model_statistics",
                          "repository_load", "repository_unload"):
            status, body = rest.call(operation, model_name="absent")
            self.assertEqual(status, 404, operation)
            self.assertIn("absent", body["error"])
        self.assertEqual(rest.call("model_infer", body=infer_request(self.images[:1]),
                                   model_name="absent")[0], 404)
        for operation in ("model_version_metadata", "model_version_ready"):
            self.assertEqual(rest.call(operation, model_name="r20", model_version="99")[0], 404)
        self.assertEqual(rest.call("model_version_infer", body=infer_request(self.images[:1]),
                                   model_name="r20", model_version="99")[0], 404)
        bad = {
            "not JSON": b"{inputs:",
            "no inputs": json.dumps({"inputs": []}).encode(),
            "wrong datatype": json.dumps({"inputs": [{"name": "input", "datatype": "FP64",
                                                      "shape": [1], "data": [1.0]}]}).encode(),
            "wrong shape": json.dumps(infer_request(self.images[0])).encode(),
            "short data": json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                                  "shape": [1, 1, 28, 28], "data": [1.0]}]}
                                     ).encode(),
            "unknown output": json.dumps(infer_request(self.images[:1], outputs=["logits"])
                                         ).encode(),
            "unknown input": json.dumps({"inputs": [{"name": "x", "datatype": "FP32",
                                                     "shape": [1, 1, 28, 28],
                                                     "data": [0.0] * 784}]}).encode(),
        }
        for name, raw in bad.items():
            status, body = rest.call("model_infer", raw_body=raw, model_name="r20")
            self.assertEqual(status, 400, name)
            self.assertTrue(body["error"], name)

    def test_inference_by_the_document(self):
        rest = self.rest
        # Without an outputs list: every output the metadata lists.
        status, answer = rest.call("model_infer", body=infer_request(self.images[:2]),
                                   model_name="r20")
        self.assertEqual(status, 200)
        self.assertEqual([o["name"] for o in answer["outputs"]], ["class", "probabilities"])
        self.assertEqual(answer["outputs"][1]["shape"], [2, 10])
        classes = answer["outputs"][0]["data"]
        self.assertEqual(classes, list(np.argmax(np.reshape(answer["outputs"][1]["data"],
                                                            (2, 10)), axis=1)))
        version = answer["model_version"]
        status, pinned = rest.call("model_version_infer",
                                   body=infer_request(self.images[:2], outputs=["class"]),
                                   model_name="r20", model_version=version)
        self.assertEqual(pinned["outputs"][0]["data"], classes)
        self.assertEqual(len(pinned["outputs"]), 1)

    def test_repository_by_the_document(self):
        rest = self.rest
        status, index = rest.call("repository_index")
        self.assertEqual(index[0]["state"], "READY")
        status, index = rest.call("repository_index", body={"ready": True})
        self.assertEqual([entry["name"] for entry in index], ["r20"])
        status, body = rest.call("repository_load", body={"parameters": {"config": "{}"}},
                                 model_name="r20")
        self.assertEqual(status, 400)
        self.assertIn("'config' is not supported", body["error"])
        self.assertEqual(rest.call("repository_load", model_name="r20")[0], 200)
        self.assertEqual(rest.call("repository_unload",
                                   body={"parameters": {"unload_dependents": True}},
                                   model_name="r20")[0], 200)
        try:
            self.assertEqual(rest.call("repository_index", body={"ready": True})[1], [])
            self.assertEqual(rest.call("model_infer", body=infer_request(self.images[:1]),
                                       model_name="r20")[0], 503)
        finally:
            self.assertEqual(rest.call("repository_load", model_name="r20")[0], 200)

    # --- Habits of Triton-style clients ---------------------------------
    def test_a_post_without_body_or_content_length(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=10)
        connection.putrequest("POST", "/v2/repository/index")
        connection.endheaders()  # No Content-Length, no body.
        response = connection.getresponse()
        self.assertEqual(response.status, 200)
        self.assertEqual(json.loads(response.read())[0]["name"], "r20")
        connection.close()

    def test_binary_data_output_and_accept_encoding(self):
        body = json.dumps(infer_request(self.images[:2], binary_output=True))
        response = requests.post(f"{self.server.http}/v2/models/r20/infer", data=body,
                                 headers={"Accept-Encoding": "identity"}, timeout=10)
        self.assertEqual(response.status_code, 200)
        length = int(response.headers["Inference-Header-Content-Length"])
        header = json.loads(response.content[:length])
        sizes = [o["parameters"]["binary_data_size"] for o in header["outputs"]]
        self.assertEqual(sizes, [2 * 8, 2 * 10 * 4])
        self.assertEqual(len(response.content), length + sum(sizes))
        labels = np.frombuffer(response.content[length:length + 16], "<i8")
        scores = np.frombuffer(response.content[length + 16:], "<f4").reshape(2, 10)
        self.assertEqual(labels.tolist(), scores.argmax(axis=1).tolist())
        # deflate is honoured as well as gzip, for answers worth compressing.
        big = json.dumps(infer_request(np.repeat(self.images, 10, axis=0)))
        for coding, inflate in (("gzip", gzip.decompress), ("deflate", zlib.decompress)):
            connection = http.client.HTTPConnection("127.0.0.1", self.server.http_port,
                                                    timeout=10)
            connection.request("POST", "/v2/models/r20/infer", body=big,
                               headers={"Accept-Encoding": coding})
            response = connection.getresponse()
            self.assertEqual(response.getheader("Content-Encoding"), coding)
            self.assertEqual(len(json.loads(inflate(response.read()))["outputs"][0]["data"]), 40)
            connection.close()

    def test_asyncio_http_without_automatic_decompression(self):
        import aiohttp

        async def run():
            async with aiohttp.ClientSession(auto_decompress=False) as session:
                headers = {"Accept-Encoding": "gzip, deflate"}
                base = self.server.http
                for method, path in (("GET", "/v2"), ("GET", "/v2/health/ready"),
                                     ("GET", "/v2/models/r20"), ("GET", "/v2/models/r20/config"),
                                     ("GET", "/v2/models/r20/stats"), ("GET", "/v2/models/stats"),
                                     ("POST", "/v2/repository/index")):
                    async with session.request(method, base + path, headers=headers) as response:
                        self.assertEqual(response.status, 200, path)
                        self.assertIsNone(response.headers.get("Content-Encoding"), path)
                        json.loads(await response.read())  # Readable as sent.
                body = json.dumps(infer_request(np.repeat(self.images, 10, axis=0)))
                async with session.post(base + "/v2/models/r20/infer", data=body,
                                        headers=headers) as response:
                    raw = await response.read()
                    coding = response.headers.get("Content-Encoding")
                    self.assertEqual(coding, "gzip")
                    self.assertEqual(len(json.loads(gzip.decompress(raw))["outputs"]), 2)
                # Concurrent calls on one session.
                small = json.dumps(infer_request(self.images[:1], outputs=["class"]))

                async def one():
                    async with session.post(base + "/v2/models/r20/infer", data=small,
                                            headers=headers) as response:
                        return response.status, json.loads(await response.read())

                answers = await asyncio.gather(*[one() for _ in range(16)])
                self.assertEqual({status for status, _ in answers}, {200})
                self.assertEqual(len({json.dumps(a["outputs"]) for _, a in answers}), 1)

        asyncio.run(run())

    # --- gRPC, from the proto -------------------------------------------
    def grpc_request(self, images, outputs=("class", "probabilities")):
        request = self.pb.ModelInferRequest(model_name="r20", id="c")
        request.inputs.add(name="input", datatype="FP32", shape=list(images.shape))
        request.raw_input_contents.append(np.ascontiguousarray(images, "<f4").tobytes())
        for name in outputs:
            request.outputs.add(name=name)
        return request

    def test_grpc_every_rpc_and_its_errors(self):
        import grpc
        pb = self.pb
        stub = self.pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(self.server.grpc))
        self.assertTrue(stub.ServerLive(pb.ServerLiveRequest()).live)
        self.assertTrue(stub.ServerReady(pb.ServerReadyRequest()).ready)
        self.assertTrue(stub.ModelReady(pb.ModelReadyRequest(name="r20")).ready)
        self.assertIn("model_repository", stub.ServerMetadata(pb.ServerMetadataRequest()).extensions)
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="r20"))
        self.assertEqual(list(meta.inputs[0].shape), [-1, 1, 28, 28])
        config = stub.ModelConfig(pb.ModelConfigRequest(name="r20")).config
        self.assertEqual(config.input[0].data_type, pb.TYPE_FP32)
        answer = stub.ModelInfer(self.grpc_request(self.images[:2]))
        self.assertEqual([o.name for o in answer.outputs], ["class", "probabilities"])
        self.assertEqual(len(answer.raw_output_contents[0]), 16)
        stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name="r20")).model_stats[0]
        self.assertGreaterEqual(stats.inference_count, 2)
        self.assertEqual([m.name for m in stub.RepositoryIndex(pb.RepositoryIndexRequest()).models],
                         ["r20"])
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="r20"))
        streamed = list(stub.ModelStreamInfer(iter([self.grpc_request(self.images[:1])] * 3)))
        self.assertEqual([r.error_message for r in streamed], ["", "", ""])
        errors = {
            grpc.StatusCode.NOT_FOUND: [
                lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="absent")),
                lambda: stub.ModelReady(pb.ModelReadyRequest(name="absent")),
                lambda: stub.ModelConfig(pb.ModelConfigRequest(name="absent")),
                lambda: stub.ModelStatistics(pb.ModelStatisticsRequest(name="absent")),
                lambda: stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="x")),
                lambda: stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(
                    model_name="x")),
                lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="r20", version="99")),
            ],
            grpc.StatusCode.INVALID_ARGUMENT: [
                lambda: stub.ModelInfer(self.grpc_request(self.images[0])),
                lambda: stub.ModelInfer(self.grpc_request(self.images[:1], outputs=["logits"])),
                lambda: stub.ModelInfer(pb.ModelInferRequest(model_name="r20")),
            ],
        }
        for code, calls in errors.items():
            for call in calls:
                with self.assertRaises(grpc.RpcError) as error:
                    call()
                self.assertEqual(error.exception.code(), code)
                self.assertTrue(error.exception.details())

    def test_grpc_asyncio(self):
        import grpc

        async def run():
            async with grpc.aio.insecure_channel(self.server.grpc) as channel:
                stub = self.pb_grpc.GRPCInferenceServiceStub(channel)
                self.assertTrue((await stub.ServerLive(self.pb.ServerLiveRequest())).live)
                answers = await asyncio.gather(*[
                    stub.ModelInfer(self.grpc_request(self.images[i:i + 1])) for i in range(4)])
                self.assertEqual(len(answers), 4)
                call = stub.ModelStreamInfer()
                for i in range(3):
                    await call.write(self.grpc_request(self.images[i:i + 1]))
                await call.done_writing()
                streamed = [response async for response in call]
                self.assertEqual(len(streamed), 3)
                for a, s in zip(answers, streamed):
                    self.assertEqual(a.raw_output_contents[0],
                                     s.infer_response.raw_output_contents[0])

        asyncio.run(run())


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""Hostile HTTP clients against `gati serve`: framing that RFC 9112 forbids,
limits enforced as bytes arrive (headers, bodies, chunked bodies, compressed
bodies), slow connections, overload, the drain deadline, compression, and a
repository with broken entries. Each case failed on the thread-per-connection
server this replaced. Traffic goes to loopback only; every wait is bounded.

Environment: GATI (the gati binary), GATI_SOURCE_DIR (the repository root).
"""
import concurrent.futures
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib

import numpy as np
import requests

SOURCE = os.environ["GATI_SOURCE_DIR"]
GATI = os.environ["GATI"]
sys.path.insert(0, os.path.join(SOURCE, "tests", "serve"))
sys.path.insert(0, os.path.join(SOURCE, "tools"))
import gati_client  # noqa: E402
from serve_test import Server, generate_grpc  # noqa: E402


def build_small_bundle(directory):
    """A bundle whose caches do not matter here: quick to build."""
    subprocess.run(
        [GATI, "build", "--model", os.path.join(SOURCE, "models", "resnet20.pt"), "--out",
         directory, "--taps", "5", "--variants", "gap:linear", "--limit", "1500", "--epochs", "3",
         "--threads", "2", "--epsilon", "0.05", "--tail-budget", "0"],
        check=True, stdout=subprocess.DEVNULL)


def exchange(port, data, timeout=10.0):
    """Sends raw bytes; returns (status, headers, body, seconds) of the one
    response (status None when the server closed without one)."""
    start = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # The server may answer and close before reading it all.
        received = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                head, sep, body = received.partition(b"\r\n\r\n")
                if sep:
                    length = re.search(rb"(?im)^content-length: *(\d+)", head)
                    if length and len(body) >= int(length.group(1)):
                        break
        except ConnectionResetError:
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    if not head:
        return None, {}, b"", time.time() - start
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body, time.time() - start


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def infer_body(n=1, value=0.1):
    return json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [n, 1, 28, 28],
                                   "data": [value] * (784 * n)}],
                       "outputs": [{"name": "class"}]}).encode()


class HostileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="gati_hostile_test_")
        cls.bundle = os.path.join(cls.work, "r20")
        build_small_bundle(cls.bundle)
        cls.server = Server("--model", f"r20={cls.bundle}", "--max-body", "1MB",
                            "--max-header", "16KB", "--request-timeout", "2",
                            "--idle-timeout", "5")
        cls.port = cls.server.http_port
        cls.pid = cls.server.process.pid

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        shutil.rmtree(cls.work, ignore_errors=True)
        assert code == 0, f"gati serve exited {code}:\n" + "".join(cls.server.lines)

    def assert_serving(self):
        answer = requests.post(f"{self.server.http}/v2/models/r20/infer", data=infer_body(),
                               timeout=10)
        self.assertEqual(answer.status_code, 200, answer.text)

    def request(self, head, body=b""):
        return exchange(self.port, head.encode("latin-1") + body)

    # --- Framing (RFC 9112 section 6) ------------------------------------
    def test_ambiguous_framing_is_refused(self):
        path = "POST /v2/models/r20/infer HTTP/1.1\r\nHost: t\r\n"
        body = infer_body()
        cases = {
            "two lengths": (f"{path}Content-Length: {len(body)}\r\nContent-Length: {len(body)}"
                            "\r\n\r\n", body, 400),
            "length, then chunked": (f"{path}Content-Length: 5\r\nTransfer-Encoding: chunked"
                                     "\r\n\r\n", b"0\r\n\r\n", 400),
            "chunked, then length": (f"{path}Transfer-Encoding: chunked\r\nContent-Length: 5"
                                     "\r\n\r\n", b"0\r\n\r\n", 400),
            "negative length": (f"{path}Content-Length: -5\r\n\r\n", b"", 400),
            "length list": (f"{path}Content-Length: 5, 5\r\n\r\n", b"hello", 400),
            "unknown coding": (f"{path}Transfer-Encoding: gzip\r\n\r\n", b"", 501),
            "no host": ("GET /v2 HTTP/1.1\r\n\r\n", b"", 400),
        }
        for name, (head, data, want) in cases.items():
            status, headers, reply, seconds = self.request(head, data)
            self.assertEqual(status, want, f"{name}: {reply!r}")
            self.assertLess(seconds, 1.5, name)  # At once, not after a stall.
            self.assertEqual(headers.get("connection"), "close", name)
            self.assertIn("error", json.loads(reply), name)
        self.assert_serving()

    def test_trailers_long_chunk_extensions_head_and_http_1_0(self):
        # A trailer would land among the headers (here, a Content-Encoding).
        status, headers, body, _ = self.request(
            "POST /v2/repository/index HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            "\r\n", b"2\r\n{}\r\n0\r\nContent-Encoding: gzip\r\n\r\n")
        self.assertEqual(status, 400, body)
        self.assertIn(b"trailer", body)
        # Chunk extensions count against a limit too, and fail at once.
        status, _, body, seconds = exchange(
            self.port, b"POST /v2/repository/index HTTP/1.1\r\nHost: t\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2;" + b"e" * (1 << 20))
        self.assertIn(status, (413, None))
        self.assertLess(seconds, 5)
        # HEAD: no route takes it; the 405 has no body, and the connection
        # closes.
        status, headers, body, _ = self.request("HEAD /v2 HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertEqual(status, 405)
        self.assertEqual(body, b"")
        self.assertEqual(headers.get("connection"), "close")
        # HTTP/1.0 with keep-alive: answered in 1.0, kept alive, twice.
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            for _ in range(2):
                sock.sendall(b"GET /v2/health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                reply = b""
                while b"}" not in reply:
                    chunk = sock.recv(4096)
                    self.assertTrue(chunk, "the server closed a kept-alive 1.0 connection")
                    reply += chunk
                self.assertTrue(reply.startswith(b"HTTP/1.0 200"), reply)
                self.assertIn(b"keep-alive", reply.lower())
        self.assert_serving()

    def test_a_post_without_body_or_length_has_an_empty_body(self):
        status, _, body, _ = self.request("POST /v2/repository/index HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)[0]["name"], "r20")

    # --- Limits as bytes arrive -----------------------------------------
    def test_chunked_bodies_past_the_limit_get_413_without_being_kept(self):
        before = rss_mb(self.pid)
        start = time.time()
        status = None
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(b"POST /v2/models/r20/infer HTTP/1.1\r\nHost: t\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"%x\r\n" % (1 << 16) + b"7" * (1 << 16) + b"\r\n"
            sent = 0
            try:
                while sent < (200 << 20):  # 200 MB offered against a 1 MB limit.
                    sock.sendall(chunk)
                    sent += 1 << 16
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                reply = sock.recv(4096)
                status = int(reply.split()[1]) if reply else None
            except ConnectionResetError:
                pass
        self.assertLess(sent, 16 << 20, "the server went on reading past its limit")
        self.assertIn(status, (413, None))  # 413, unless the reset beat it to the client.
        self.assertLess(time.time() - start, 10)
        self.assertLess(rss_mb(self.pid) - before, 50)
        status, _, body, _ = self.request(
            "POST /v2/models/r20/infer HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"%x\r\n" % (2 << 20) + b"7" * (2 << 20) + b"\r\n0\r\n\r\n")
        self.assertEqual(status, 413)
        self.assertIn(b"exceeds", body)
        self.assert_serving()

    def test_bodies_held_at_once_stay_within_their_budget(self):
        server = Server("--model", f"r20={self.bundle}", "--max-body", "1MB",
                        "--max-bodies", "2MB")
        sockets = []
        try:
            before = rss_mb(server.process.pid)
            # Declared lengths cost nothing until their bytes come: 50
            # clients each announcing 1 MB and sending nothing.
            for _ in range(50):
                sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=10)
                sock.sendall(b"POST /v2/models/r20/infer HTTP/1.1\r\nHost: t\r\n"
                             b"Content-Length: 1000000\r\n\r\n")
                sockets.append(sock)
            self.assertEqual(requests.post(f"{server.http}/v2/models/r20/infer",
                                           data=infer_body(), timeout=10).status_code, 200)
            # Bytes that do come are charged: the third 900 KB passes 2 MB.
            statuses = []
            for sock in sockets[:3]:
                sock.sendall(b"0" * 900_000)
                time.sleep(0.3)
            for sock in sockets[:3]:
                sock.settimeout(0.5)
                try:
                    reply = sock.recv(4096)
                    statuses.append(int(reply.split()[1]) if reply else None)
                except (socket.timeout, ConnectionResetError):
                    statuses.append("pending")
            self.assertEqual(statuses.count("pending"), 2, statuses)
            self.assertIn(503, statuses)
            self.assertLess(rss_mb(server.process.pid) - before, 100)
        finally:
            for sock in sockets:
                sock.close()
            self.assertEqual(server.stop(), 0)

    def test_a_declared_length_past_the_limit_is_refused_before_the_body(self):
        status, _, body, seconds = self.request(
            "POST /v2/models/r20/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999\r\n\r\n")
        self.assertEqual(status, 413)
        self.assertLess(seconds, 1.5)

    def test_headers_past_the_limit_get_431(self):
        status, _, _, seconds = exchange(
            self.port, b"GET /v2 HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * (1 << 20) + b"\r\n\r\n")
        self.assertIn(status, (431, None))
        self.assertLess(seconds, 5)
        status, _, _, _ = self.request("GET /v2 HTTP/1.1\r\nHost: t\r\n" +
                                       "".join(f"X-H{i}: {'b' * 100}\r\n" for i in range(200)) +
                                       "\r\n")
        self.assertEqual(status, 431)
        self.assert_serving()

    def test_a_form_encoded_json_body_is_still_json(self):
        # curl -d sends application/x-www-form-urlencoded by default.
        body = infer_body(n=3)
        self.assertGreater(len(body), 8193)
        status, _, reply, _ = self.request(
            "POST /v2/models/r20/infer HTTP/1.1\r\nHost: t\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            "\r\n", body)
        self.assertEqual(status, 200, reply)

    def test_compressed_request_bodies_are_inflated_within_the_limit(self):
        body = infer_body()
        for coding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
            answer = requests.post(f"{self.server.http}/v2/models/r20/infer", data=packed,
                                   headers={"Content-Encoding": coding}, timeout=10)
            self.assertEqual(answer.status_code, 200, f"{coding}: {answer.text}")
        bomb = gzip.compress(b" " * (64 << 20))  # 64 MB of spaces in about 64 KB.
        answer = requests.post(f"{self.server.http}/v2/models/r20/infer", data=bomb,
                               headers={"Content-Encoding": "gzip"}, timeout=10)
        self.assertEqual(answer.status_code, 413, answer.text)
        answer = requests.post(f"{self.server.http}/v2/models/r20/infer", data=b"x",
                               headers={"Content-Encoding": "br"}, timeout=10)
        self.assertEqual(answer.status_code, 415)

    # --- Compression of responses ---------------------------------------
    def test_only_inference_responses_are_compressed(self):
        for path in ("/v2", "/v2/models/r20", "/v2/models/r20/config", "/v2/models/r20/stats"):
            status, headers, body, _ = self.request(
                f"GET {path} HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip, deflate\r\n\r\n")
            self.assertEqual(status, 200, path)
            self.assertNotIn("content-encoding", headers, path)
            json.loads(body)  # Plain JSON, whatever the client accepts.
        # A large inference answer is compressed for a client that accepts it.
        body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                       "shape": [40, 1, 28, 28], "data": [0.1] * (784 * 40)}]})
        status, headers, reply, _ = self.request(
            "POST /v2/models/r20/infer HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n"
            f"Content-Length: {len(body)}\r\n\r\n", body.encode())
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-encoding"), "gzip")
        self.assertEqual(len(json.loads(gzip.decompress(reply))["outputs"]), 2)

    # --- Slow and idle connections ---------------------------------------
    def test_slow_connections_cost_no_thread(self):
        sockets = []
        try:
            for i in range(200):
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                if i % 2 == 0:
                    sock.sendall(b"GET /v2 HTTP/1.1\r\nHo")  # Headers, dripping.
                else:
                    sock.sendall(b"POST /v2/models/r20/infer HTTP/1.1\r\nHost: t\r\n"
                                 b"Content-Length: 5000\r\n\r\n{\"in")  # A body, dripping.
                sockets.append(sock)
            metrics = socket.create_connection(("127.0.0.1", int(
                self.server.metrics.split(":")[2].split("/")[0])), timeout=10)
            metrics.sendall(b"GET /metrics HTTP/1.1\r\nHo")  # Two slow ones on /metrics.
            sockets.append(metrics)
            start = time.time()
            self.assert_serving()
            self.assertEqual(requests.get(self.server.metrics, timeout=10).status_code, 200)
            self.assertLess(time.time() - start, 3)
            # A request that does not arrive whole within --request-timeout
            # (2 s) has its connection closed.
            sockets[1].settimeout(10)
            waited = time.time()
            try:
                reply = sockets[1].recv(4096)
            except ConnectionResetError:
                reply = b""
            self.assertEqual(reply, b"")
            self.assertLess(time.time() - waited, 5)
        finally:
            for sock in sockets:
                sock.close()

    # --- Overload ---------------------------------------------------------
    def test_overload_is_answered_503_at_once(self):
        server = Server("--model", f"r20={self.bundle}", "--max-queue", "2", "--http-threads",
                        "4", "--workers", "1")
        try:
            body = infer_body(n=20)

            def call(_):
                try:
                    return requests.post(f"{server.http}/v2/models/r20/infer", data=body,
                                         timeout=15).status_code
                except requests.RequestException as e:
                    return repr(e)

            with concurrent.futures.ThreadPoolExecutor(200) as pool:
                statuses = list(pool.map(call, range(400)))
            self.assertEqual(set(statuses) - {200, 503}, set(), statuses)
            self.assertIn(200, statuses)
            self.assertIn(503, statuses)
        finally:
            self.assertEqual(server.stop(), 0)

    # --- The drain deadline ---------------------------------------------
    def test_the_drain_deadline_bounds_the_exit(self):
        server = Server("--model", f"r20={self.bundle}", "--drain-seconds", "1", "--max-body",
                        "64MB")
        client = gati_client.Client(server.http, "r20")
        batch = np.full((4000, 1, 28, 28), 0.1, dtype=np.float32)  # Seconds of work.
        thread = threading.Thread(target=lambda: self.swallow(client.infer, batch, binary=True))
        thread.start()
        deadline = time.time() + 60
        while server.metric("gati_requests_in_flight") != 1 and time.time() < deadline:
            time.sleep(0.01)
        start = time.time()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(30)
        waited = time.time() - start
        thread.join(60)
        log = "".join(server.lines)
        self.assertLess(waited, 4, log)
        self.assertEqual(code, 1, log)  # A request was cut off: not a clean drain.
        self.assertIn("drain deadline passed with 1 requests unanswered", log)

    @staticmethod
    def swallow(call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the server is meant to cut it off
            pass

    # --- Repository start-up ----------------------------------------------
    def test_a_broken_repository_entry_is_skipped_and_named(self):
        repository = os.path.join(self.work, "repository")
        os.makedirs(repository)
        os.symlink(self.bundle, os.path.join(repository, "good"))
        os.makedirs(os.path.join(repository, "broken"))
        with open(os.path.join(repository, "broken", "manifest.json"), "w") as f:
            f.write("{ not json")
        staging = os.path.join(repository, ".good.tmp.4242")  # gati build's staging
        os.makedirs(staging)
        with open(os.path.join(staging, "manifest.json"), "w") as f:
            f.write("{")
        server = Server("--repository", repository)
        try:
            index = requests.post(f"{server.http}/v2/repository/index", timeout=10).json()
            states = {entry["name"]: entry for entry in index}
            self.assertEqual(set(states), {"good", "broken"})
            self.assertEqual(states["good"]["state"], "READY")
            self.assertEqual(states["broken"]["state"], "UNAVAILABLE")
            self.assertIn("manifest.json", states["broken"]["reason"])
            self.assertNotIn(self.work, json.dumps(index))  # No absolute paths to clients.
            self.assertEqual(requests.get(f"{server.http}/v2/health/ready", timeout=10).status_code,
                             200)
            answer = requests.post(f"{server.http}/v2/models/good/infer", data=infer_body(),
                                   timeout=10)
            self.assertEqual(answer.status_code, 200)
            config = requests.get(f"{server.http}/v2/models/good/config", timeout=10).text
            self.assertNotIn(self.work, config)
        finally:
            self.assertEqual(server.stop(), 0)

    # --- Memory on reload --------------------------------------------------
    def test_reloads_do_not_grow_memory_without_bound(self):
        bundle = os.path.join(self.work, "reloaded")
        shutil.copytree(self.bundle, bundle)
        server = Server("--model", f"r={bundle}", "--online", "on")
        manifest = os.path.join(bundle, "manifest.json")
        try:
            def reload(times):
                for _ in range(times):
                    with open(manifest, "a") as f:
                        f.write(" ")  # A new revision each time.
                    answer = requests.post(f"{server.http}/v2/repository/models/r/load",
                                           timeout=60)
                    self.assertEqual(answer.status_code, 200, answer.text)
                    self.assertTrue(answer.json()["changed"])
            reload(10)
            settled = rss_mb(server.process.pid)
            reload(30)
            grown = rss_mb(server.process.pid) - settled
            print(f"RSS after 10 reloads {settled:.0f} MB; 30 more add {grown:.0f} MB",
                  file=sys.stderr)
            self.assertLess(grown, 120)
        finally:
            self.assertEqual(server.stop(), 0)

    # --- Restricted APIs ---------------------------------------------------
    def test_restricted_apis_need_their_key(self):
        server = Server("--model", f"r20={self.bundle}", "--restricted-api",
                        "model-repository:admin-key=letmein", "--metrics-host", "127.0.0.2")
        try:
            # The metrics port listens apart, on --metrics-host.
            port = server.metrics.split(":")[2].split("/")[0]
            listing = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                                     text=True, check=True).stdout
            self.assertIn(f"127.0.0.2:{port}", listing)
            url = f"{server.http}/v2/repository/models/r20/unload"
            denied = requests.post(url, timeout=10)
            self.assertEqual(denied.status_code, 403)
            self.assertIn("admin-key", denied.json()["error"])
            self.assertEqual(requests.post(f"{server.http}/v2/models/r20/infer",
                                           data=infer_body(), timeout=10).status_code, 200)
            # gRPC: the same key as metadata, checked before the message is read.
            import grpc
            pb, pb_grpc = generate_grpc(self.work)
            stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc))
            with self.assertRaises(grpc.RpcError) as error:
                stub.RepositoryIndex(pb.RepositoryIndexRequest())
            self.assertEqual(error.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
            raw = grpc.insecure_channel(server.grpc).unary_unary(
                "/inference.GRPCInferenceService/RepositoryIndex")
            with self.assertRaises(grpc.RpcError) as error:
                raw(b"\xff garbage", timeout=10)
            self.assertEqual(error.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
            index = stub.RepositoryIndex(pb.RepositoryIndexRequest(),
                                         metadata=(("admin-key", "letmein"),))
            self.assertEqual([m.name for m in index.models], ["r20"])
            self.assertTrue(stub.ServerLive(pb.ServerLiveRequest()).live)  # Not restricted.
            allowed = requests.post(url, headers={"Admin-Key": "letmein"}, timeout=10)
            self.assertEqual(allowed.status_code, 200, allowed.text)
            self.assertEqual(requests.post(f"{server.http}/v2/models/r20/infer",
                                           data=infer_body(), timeout=10).status_code, 503)
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)

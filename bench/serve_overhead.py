"""The protocol's cost: the server's own time per inference request (request
in to response out, less the engine's time), as `gati serve` measures it in
gati_server_overhead_seconds, for one-image (1x1x28x28) requests over HTTP
with JSON tensors, HTTP with binary tensors and gRPC, at concurrency 1 and
16. HTTP load comes from wrk (keep-alive connections), gRPC load from Python
threads on one channel each. Then keep-alive against a new connection per
request, from the client's side. Prints markdown tables and writes them to
OUT.

    serve_overhead.py GATI BUNDLE OUT.md [SECONDS]
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tools"))
import gati_client  # noqa: E402

READY = re.compile(r"HTTP on [\d.]+:(\d+), gRPC on [\d.]+:(\d+), metrics on http://[\d.]+:(\d+)/")
TARGETS_US = {"http_json": 150, "http_binary": 50, "grpc": 50}


def start(gati, bundle):
    process = subprocess.Popen(
        [gati, "serve", "--model", f"demo={bundle}", "--host", "127.0.0.1", "--http-port", "0",
         "--grpc-port", "0", "--metrics-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        match = READY.search(line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, [int(match.group(i)) for i in (1, 2, 3)]
    raise SystemExit("gati serve did not start")


def histogram(metrics_port, transport):
    """Cumulative (bound, count) pairs of the overhead histogram."""
    import requests
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    pairs = []
    for match in re.finditer(r'^gati_server_overhead_seconds_bucket\{transport="' + transport +
                             r'",le="([^"]+)"\} (\S+)$', text, re.M):
        bound = float("inf") if match.group(1) == "+Inf" else float(match.group(1))
        pairs.append((bound, float(match.group(2))))
    return pairs


def quantile(before, after, q):
    """The q-quantile (seconds) of the observations between two scrapes,
    interpolated linearly inside its bucket."""
    counts = [(bound, a - b) for (bound, a), (_, b) in zip(after, before)]
    total = counts[-1][1]
    if total <= 0:
        return float("nan"), 0
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower, int(total)
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0), int(total)
        lower, below = bound, cumulative
    return lower, int(total)


def wrk(port, bodies_file, concurrency, seconds):
    env = dict(os.environ, GATI_BODIES=bodies_file)
    subprocess.run(["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{seconds}s",
                    "--timeout", "10s", "-s", os.path.join(HERE, "serve_overhead.lua"),
                    f"http://127.0.0.1:{port}/v2/models/demo/infer"],
                   env=env, check=True, stdout=subprocess.DEVNULL)


def grpc_load(port, images, concurrency, seconds):
    import grpc
    sys.path.insert(0, GENERATED)
    import grpc_predict_v2_pb2 as pb
    import grpc_predict_v2_pb2_grpc as pb_grpc

    deadline = time.time() + seconds

    def worker(offset):
        stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        i = offset
        while time.time() < deadline:
            request = pb.ModelInferRequest(model_name="demo")
            request.inputs.add(name="input", datatype="FP32", shape=[1, *images.shape[1:]])
            request.raw_input_contents.append(images[i % len(images)].tobytes())
            request.outputs.add(name="class")
            stub.ModelInfer(request)
            i += 1

    threads = [threading.Thread(target=worker, args=(k * 37,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def connection_cost(port, body, count=500):
    """Client-side p50 and p99 (ms) of one-image JSON requests on one
    keep-alive connection, and on a new connection each (Connection:
    close), interleaved in blocks of 50."""
    import http.client
    latencies = {True: [], False: []}
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for block in range(2 * count // 50):
        keep = block % 2 == 0
        for _ in range(50):
            start = time.perf_counter()
            connection = kept if keep else http.client.HTTPConnection("127.0.0.1", port,
                                                                      timeout=30)
            headers = {"Content-Type": "application/json"}
            if not keep:
                headers["Connection"] = "close"
            connection.request("POST", "/v2/models/demo/infer", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if not keep:
                connection.close()
            latencies[keep].append((time.perf_counter() - start) * 1e3)
    kept.close()
    out = {}
    for keep, values in latencies.items():
        values.sort()
        out[keep] = (values[len(values) // 2], values[int(0.99 * len(values))])
    return out


def main():
    gati, bundle, out = sys.argv[1:4]
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 15
    work = tempfile.mkdtemp(prefix="gati_overhead_")
    global GENERATED
    GENERATED = work
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I" + os.path.join(SOURCE, "proto"),
                    "--python_out=" + work, "--grpc_python_out=" + work,
                    os.path.join(SOURCE, "proto", "grpc_predict_v2.proto")], check=True)
    trace = os.path.join(work, "trace.npy")
    subprocess.run([gati, "trace", "--kind", "iid", "--n", "200", "--seed", "21", "--out", trace],
                   check=True, stdout=subprocess.DEVNULL)
    mean, std = gati_client.bundle_normalization(bundle)
    images = ((np.load(trace) - mean) / std).astype("<f4")
    files = {}
    for kind, binary in (("http_json", False), ("http_binary", True)):
        path = os.path.join(work, kind + ".bodies")
        with open(path, "w") as f:
            for image in images:
                body, headers = gati_client.request_body(image[None], binary=binary)
                length = int(headers.get(gati_client.HEADER, 0))
                f.write(f"{length} {body.hex()}\n")
        files[kind] = path

    process, (http_port, grpc_port, metrics_port) = start(gati, bundle)
    rows = []
    try:
        wrk(http_port, files["http_json"], 4, 3)  # Warm-up, untimed.
        for concurrency in (1, 16):
            for kind in ("http_json", "http_binary", "grpc"):
                before = histogram(metrics_port, kind)
                if kind == "grpc":
                    grpc_load(grpc_port, images, concurrency, seconds)
                else:
                    wrk(http_port, files[kind], concurrency, seconds)
                after = histogram(metrics_port, kind)
                p50, n = quantile(before, after, 0.5)
                p90, _ = quantile(before, after, 0.9)
                p99, _ = quantile(before, after, 0.99)
                rows.append((kind, concurrency, n, p50 * 1e6, p90 * 1e6, p99 * 1e6))
                print(f"{kind:12s} c={concurrency:<3d} n={n:<7d} p50 {p50 * 1e6:6.1f} us  "
                      f"p90 {p90 * 1e6:6.1f} us  p99 {p99 * 1e6:7.1f} us", flush=True)
        with open(files["http_json"]) as f:
            body = bytes.fromhex(f.readline().split()[1])
        connections = connection_cost(http_port, body)
        for keep, (p50, p99) in connections.items():
            print(f"{'keep-alive' if keep else 'new connection':15s} client p50 {p50:.3f} ms  "
                  f"p99 {p99:.3f} ms", flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    lines = ["| front end | concurrency | requests | p50 (µs) | p90 (µs) | p99 (µs) | "
             "p50 target (µs) |", "|---|---|---|---|---|---|---|"]
    for kind, concurrency, n, p50, p90, p99 in rows:
        lines.append(f"| {kind} | {concurrency} | {n} | {p50:.1f} | {p90:.1f} | {p99:.1f} | "
                     f"≤ {TARGETS_US[kind]} |")
    lines += ["", "| connection | client p50 (ms) | client p99 (ms) |", "|---|---|---|"]
    for keep, (p50, p99) in connections.items():
        lines.append(f"| {'one keep-alive connection' if keep else 'a new one per request'} | "
                     f"{p50:.3f} | {p99:.3f} |")
    with open(out, "w") as f:
        f.write("Server overhead per request: request in to response out, less the engine's "
                "time (gati_server_overhead_seconds), 1x1x28x28 requests, "
                f"{seconds} s per cell; then the cost of a connection per request, from a "
                "Python client (500 JSON requests each way, interleaved); "
                "`bench/serve_overhead.py`.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

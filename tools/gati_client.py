#!/usr/bin/env python3
"""A small Open Inference Protocol (v2) client for `gati serve`, on requests.

    import numpy as np, gati_client
    client = gati_client.Client("http://localhost:8000", "demo")
    pixels = np.random.rand(4, 1, 28, 28).astype(np.float32)  # raw, in [0, 1]
    answer = client.infer(client.normalize(pixels), probabilities=True)
    answer.classes        # int64 [4]
    answer.probabilities  # float32 [4, 10]
    answer.parameters     # gati_exit_tap, gati_cache_hit, gati_cache_version

`binary=True` sends the tensor with Triton's binary tensor data extension
(raw little-endian FP32 after the JSON header) and asks for binary outputs.

From the command line, classify images of a trace (`gati trace`) or write
the JSON request body used with curl:

    python3 tools/gati_client.py --url http://localhost:8000 --model demo \\
        --trace build/demo.iid.npy --count 8 [--binary]
    python3 tools/gati_client.py --model demo --trace build/demo.iid.npy \\
        --bundle build/demo.bundle --write-request build/demo.request.json
"""
import argparse
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field

import numpy as np
import requests

HEADER = "Inference-Header-Content-Length"


class ServerError(Exception):
    """The server answered with an error status; `status` and `message` say which."""

    def __init__(self, status, message):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


@dataclass
class Answer:
    classes: np.ndarray
    probabilities: np.ndarray = None
    parameters: dict = field(default_factory=dict)
    model_version: str = ""
    id: str = ""


def request_body(inputs, probabilities=False, binary=False, request_id=""):
    """Returns (body bytes, headers) of an infer request for a float32
    [N, C, H, W] array of model inputs (already normalized), or for a uint8
    array of raw images ([N, C, H, W] or [N, H, W, C], 0..255), which the
    server normalizes itself."""
    raw = np.asarray(inputs).dtype == np.uint8
    inputs = np.ascontiguousarray(inputs, dtype=np.uint8 if raw else "<f4")
    tensor = {"name": "input", "datatype": "UINT8" if raw else "FP32",
              "shape": list(inputs.shape)}
    outputs = [{"name": "class"}] + ([{"name": "probabilities"}] if probabilities else [])
    request = {"inputs": [tensor], "outputs": outputs}
    if request_id:
        request["id"] = request_id
    if not binary:
        tensor["data"] = inputs.reshape(-1).tolist()
        return json.dumps(request).encode(), {"Content-Type": "application/json"}
    tensor["parameters"] = {"binary_data_size": inputs.nbytes}
    for output in outputs:
        output["parameters"] = {"binary_data": True}
    header = json.dumps(request).encode()
    return header + inputs.tobytes(), {
        "Content-Type": "application/octet-stream",
        HEADER: str(len(header)),
    }


def parse_response(response):
    """An Answer from a requests.Response of an infer call."""
    if response.status_code != 200:
        try:
            message = response.json()["error"]
        except (ValueError, KeyError):
            message = response.text
        raise ServerError(response.status_code, message)
    body = response.content
    header_length = int(response.headers.get(HEADER, len(body)))
    result = json.loads(body[:header_length])
    binary = body[header_length:]
    tensors = {}
    for output in result["outputs"]:
        dtype = {"INT64": "<i8", "FP32": "<f4"}[output["datatype"]]
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            values = np.frombuffer(binary[:size], dtype=dtype)
            binary = binary[size:]
        else:
            values = np.asarray(output["data"], dtype=dtype)
        tensors[output["name"]] = values.reshape(output["shape"])
    return Answer(
        classes=tensors["class"],
        probabilities=tensors.get("probabilities"),
        parameters=result.get("parameters", {}),
        model_version=result.get("model_version", ""),
        id=result.get("id", ""),
    )


class Client:
    def __init__(self, url, model, timeout=30):
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.session = requests.Session()
        self._config = None

    def config(self):
        if self._config is None:
            response = self.session.get(f"{self.url}/v2/models/{self.model}/config",
                                        timeout=self.timeout)
            if response.status_code != 200:
                raise ServerError(response.status_code, response.text)
            self._config = response.json()
        return self._config

    def normalize(self, pixels):
        """Raw values [N, *input shape] (pixels in [0, 1]) -> model inputs,
        with the normalization the model's metadata gives (from /config)."""
        norm = self.config()["gati"]["normalization"]
        return normalized(pixels, norm["mean"], norm["std"])

    def infer(self, inputs, probabilities=False, binary=False, request_id=""):
        """`inputs`: float32 model inputs (normalize() them first), or uint8
        raw images, [N, C, H, W] or [N, H, W, C], sent as they are."""
        body, headers = request_body(inputs, probabilities, binary, request_id)
        response = self.session.post(f"{self.url}/v2/models/{self.model}/infer", data=body,
                                     headers=headers, timeout=self.timeout)
        return parse_response(response)


def normalized(raw, mean, std):
    """(raw - mean[c]) / std[c] in float32, where c indexes the first
    dimension of one input ([N, C, H, W] images, [N, D] vectors): the
    server's Preprocessor rule."""
    raw = np.asarray(raw, dtype=np.float32)
    shape = (1, -1) + (1,) * max(raw.ndim - 2, 0)
    mean = np.asarray(mean, dtype=np.float32).reshape(shape)
    std = np.asarray(std, dtype=np.float32).reshape(shape)
    return ((raw - mean) / std).astype(np.float32)


def bundle_normalization(bundle):
    """(mean, std) lists from the gati.json metadata inside a bundle's
    TorchScript archive (a zip)."""
    with zipfile.ZipFile(os.path.join(bundle, "model.pt")) as archive:
        names = [n for n in archive.namelist() if n.endswith("extra/gati.json")]
        if not names:
            raise ValueError(f"{bundle}/model.pt holds no gati.json metadata")
        norm = json.loads(archive.read(names[0]))["normalization"]
    return norm["mean"], norm["std"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://localhost:8000")
    parser.add_argument("--model", required=True)
    parser.add_argument("--trace", required=True, help="NPY float32 [N, *input shape] of raw values "
                        "(pixels in [0, 1]), as gati trace writes")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--binary", action="store_true")
    parser.add_argument("--raw", action="store_true",
                        help="send the trace as UINT8 pixels (round(x * 255)) for the "
                             "server to normalize")
    parser.add_argument("--write-request", metavar="FILE",
                        help="write the JSON body for --count images instead of sending it "
                             "(needs --bundle, whose model gives the normalization)")
    parser.add_argument("--bundle", help="bundle directory (gati build)")
    args = parser.parse_args(argv)
    pixels = np.load(args.trace)[args.start:args.start + args.count]
    if args.write_request:
        if not args.bundle:
            parser.error("--write-request needs --bundle")
        mean, std = bundle_normalization(args.bundle)
        body, _ = request_body(normalized(pixels, mean, std))
        with open(args.write_request, "wb") as f:
            f.write(body)
        print(f"wrote {args.write_request} ({len(pixels)} image(s))")
        return 0
    client = Client(args.url, args.model)
    inputs = (np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8) if args.raw
              else client.normalize(pixels))
    answer = client.infer(inputs, probabilities=True, binary=args.binary)
    names = client.config()["gati"]["class_names"]
    for i, label in enumerate(answer.classes):
        print(f"image {args.start + i}: class {label} ({names[label]}), "
              f"p={answer.probabilities[i][label]:.3f}")
    print(f"parameters: {answer.parameters}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

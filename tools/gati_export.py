#!/usr/bin/env python3
"""Export a PyTorch classifier in gati's staged TorchScript format.

A staged model is a TorchScript archive whose top-level module is an
``nn.Sequential`` of *stages* (children named "0", "1", ...), each mapping one
tensor to one tensor. The boundary after every stage but the last is a *tap*
where gati can place a learned cache. Model metadata travels inside the archive
as the extra file ``gati.json``:

    {"format_version": 1, "name": ..., "input": {"shape": [C, H, W],
     "dtype": "float32"}, "normalization": {"mean": [...], "std": [...]},
     "class_names": [...], "stage_names": [...]}

Inputs given to the model are already normalized: x = (raw - mean) / std per
channel, raw in [0, 1].

Three ways to name the stages:
  * any ``nn.Sequential``: its children, in order;
  * torchvision's ResNet family: stem, every BasicBlock/Bottleneck, head
    (avgpool + flatten + fc);
  * anything else: ``--stages`` lists submodule names in execution order and
    ``--flatten-before`` says in front of which stage a flatten goes.

The staged model is checked against the original on random inputs; when the
outputs differ the tool refuses to write (exit code 3).

Examples:
  gati_export.py --torchvision resnet18 --num-classes 10 --input-shape 3,32,32 \
      --out resnet18.pt
  gati_export.py --module mynet.py:build --weights w.pth --stages features,fc \
      --flatten-before fc --input-shape 1,28,28 --out mynet.pt
"""

import argparse
import collections
import importlib.util
import json
import os
import sys
import tempfile

import torch
from torch import nn

FORMAT_VERSION = 1
METADATA_FILE = "gati.json"


class ExportError(Exception):
    """A model that cannot be exported, with the reason."""


def stages_from_sequential(seq):
    """Returns [(name, module)] for the children of an nn.Sequential."""
    if not isinstance(seq, nn.Sequential):
        raise ExportError(f"expected nn.Sequential, got {type(seq).__name__}")
    return [(name, child) for name, child in seq.named_children()]


def stages_from_resnet(model):
    """Returns [(name, module)] for a torchvision ResNet: stem, blocks, head."""
    needed = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
              "layer4", "avgpool", "fc"]
    missing = [n for n in needed if not hasattr(model, n)]
    if missing:
        raise ExportError(f"not a torchvision ResNet: missing {missing}")
    stages = [("stem", nn.Sequential(model.conv1, model.bn1, model.relu,
                                     model.maxpool))]
    for layer_name in ["layer1", "layer2", "layer3", "layer4"]:
        for block_name, block in getattr(model, layer_name).named_children():
            stages.append((f"{layer_name}.{block_name}", block))
    stages.append(("head", nn.Sequential(model.avgpool, nn.Flatten(1),
                                         model.fc)))
    return stages


def stages_from_names(model, names, flatten_before=None):
    """Returns [(name, module)] for submodules of `model` named in `names`.

    `flatten_before` names the stage in front of which a flatten is inserted
    (it becomes part of that stage).
    """
    modules = dict(model.named_modules())
    stages = []
    for name in names:
        if name not in modules:
            raise ExportError(f"--stages: no submodule named '{name}'")
        module = modules[name]
        if name == flatten_before:
            module = nn.Sequential(nn.Flatten(1), module)
        stages.append((name, module))
    if flatten_before is not None and flatten_before not in names:
        raise ExportError(
            f"--flatten-before: '{flatten_before}' is not one of --stages")
    return stages


def build_metadata(name, stage_names, input_shape, mean, std, class_names,
                   resize=None):
    channels = input_shape[0]
    if len(mean) == 1:
        mean = mean * channels
    if len(std) == 1:
        std = std * channels
    if len(mean) != channels or len(std) != channels:
        raise ExportError(
            f"normalization has {len(mean)} means / {len(std)} stds for "
            f"{channels} input channels")
    if any(s <= 0 for s in std):
        raise ExportError("normalization std must be > 0")
    if resize is not None and (not isinstance(resize, int) or resize < 1):
        raise ExportError(f"--resize must be a positive number of pixels, got {resize}")
    if resize is not None and len(input_shape) != 3:
        raise ExportError("--resize is for image models (input shape C,H,W)")
    model_input = {"shape": list(input_shape), "dtype": "float32"}
    if resize is not None:
        model_input["resize"] = {"shorter_side": resize}
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "input": model_input,
        "normalization": {"mean": list(mean), "std": list(std)},
        "class_names": list(class_names),
        "stage_names": list(stage_names),
    }


def export_staged(stages, reference, input_shape, out_path, name,
                  mean=(0.0,), std=(1.0,), class_names=None, num_checks=4,
                  batch=2, rtol=1e-4, atol=1e-5, seed=0, resize=None):
    """Scripts the stages as one nn.Sequential, checks it, writes it.

    `reference` is the original model (or None to skip the comparison).
    Returns the metadata dict. Raises ExportError when the staged model's
    outputs differ from the reference's, and writes nothing then.
    """
    if len(stages) < 2:
        raise ExportError(f"a staged model needs at least 2 stages, got "
                          f"{len(stages)}")
    staged = nn.Sequential(collections.OrderedDict(
        (str(i), module) for i, (_, module) in enumerate(stages)))
    staged.eval()
    if reference is not None:
        reference.eval()
    generator = torch.Generator().manual_seed(seed)
    out = None
    with torch.no_grad():
        for check in range(num_checks):
            x = torch.randn((batch,) + tuple(input_shape), generator=generator)
            want = None
            if reference is not None:
                try:
                    want = reference(x)
                except Exception as e:
                    raise ExportError(
                        f"the original model fails on a random "
                        f"{list(x.shape)} input ({type(e).__name__}: "
                        f"{str(e).splitlines()[0]}); check --input-shape"
                    ) from e
            try:
                out = staged(x)
            except Exception as e:  # Any module error: report, don't crash.
                raise ExportError(
                    f"staged model fails on a random {list(x.shape)} input "
                    f"({type(e).__name__}: {str(e).splitlines()[0]}); check "
                    f"the stage list and flatten placement") from e
            if want is not None:
                if out.shape != want.shape or not torch.allclose(
                        out, want, rtol=rtol, atol=atol):
                    diff = ((out - want).abs().max().item()
                            if out.shape == want.shape else
                            f"shape {tuple(out.shape)} vs {tuple(want.shape)}")
                    raise ExportError(
                        f"staged model differs from the original on random "
                        f"input {check} (max abs diff {diff}); check the stage "
                        f"list and flatten placement")
    if out.dim() != 2:
        raise ExportError(f"model output must be [batch, classes], got shape "
                          f"{tuple(out.shape)}")
    num_classes = out.shape[1]
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ExportError(f"{len(class_names)} class names for {num_classes} "
                          f"model outputs")
    try:
        scripted = torch.jit.script(staged)
    except Exception as e:  # TorchScript raises many types here.
        raise ExportError(f"cannot script the staged model: {e}") from e
    with torch.no_grad():
        x = torch.randn((batch,) + tuple(input_shape), generator=generator)
        if not torch.allclose(scripted(x), staged(x), rtol=rtol, atol=atol):
            raise ExportError("scripted model differs from the eager model")
    metadata = build_metadata(name, [n for n, _ in stages], input_shape,
                              list(mean), list(std), class_names, resize)
    directory = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        torch.jit.save(scripted, tmp_path,
                       _extra_files={METADATA_FILE: json.dumps(metadata,
                                                               indent=1)})
        os.replace(tmp_path, out_path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    return metadata


def _floats(text, flag):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise ExportError(f"{flag}: expected comma-separated numbers, got "
                          f"'{text}'")


def _load_module_factory(spec):
    path, _, factory = spec.partition(":")
    if not factory:
        raise ExportError(f"--module: expected FILE.py:FUNCTION, got '{spec}'")
    if not os.path.isfile(path):
        raise ExportError(f"--module: no such file '{path}'")
    module_spec = importlib.util.spec_from_file_location("gati_user_model",
                                                         path)
    user = importlib.util.module_from_spec(module_spec)
    # The user's folder is theirs: importing their file must not leave a
    # __pycache__ beside it.
    writes_bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        module_spec.loader.exec_module(user)
    except Exception as e:
        raise ExportError(f"--module: importing '{path}' failed: "
                          f"{type(e).__name__}: {e}") from e
    finally:
        sys.dont_write_bytecode = writes_bytecode
    if not hasattr(user, factory):
        raise ExportError(f"--module: '{path}' has no function '{factory}'")
    model = getattr(user, factory)()
    if not isinstance(model, nn.Module):
        raise ExportError(f"--module: {factory}() returned "
                          f"{type(model).__name__}, not an nn.Module")
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Export a PyTorch classifier as a gati staged model.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--torchvision", metavar="ARCH",
                        help="a torchvision ResNet: resnet18, resnet50, ...")
    source.add_argument("--module", metavar="FILE.py:FUNCTION",
                        help="a Python function returning the model")
    parser.add_argument("--num-classes", type=int, default=10,
                        help="classes of a --torchvision model")
    parser.add_argument("--weights", help="state_dict file to load")
    parser.add_argument("--stages",
                        help="comma-separated submodule names, in order "
                             "(default: the children of an nn.Sequential)")
    parser.add_argument("--flatten-before", metavar="STAGE",
                        help="insert a flatten in front of this stage")
    parser.add_argument("--input-shape", required=True,
                        help="C,H,W of one input, e.g. 1,28,28")
    parser.add_argument("--mean", default="0", help="per-channel mean")
    parser.add_argument("--std", default="1", help="per-channel std")
    parser.add_argument("--class-names", help="comma-separated class names")
    parser.add_argument("--resize", type=int, metavar="N",
                        help="images of another size are scaled so that their "
                             "shorter side is N pixels, then center-cropped to "
                             "the input's H x W (default: the larger of H, W)")
    parser.add_argument("--name", help="model name (default: file stem)")
    parser.add_argument("--out", required=True, help="output .pt file")
    args = parser.parse_args(argv)
    try:
        parts = [v.strip() for v in args.input_shape.split(",")]
        shape = [int(v) for v in parts] if all(v.isdigit() for v in parts) \
            else None
        if not shape or any(v <= 0 for v in shape):
            raise ExportError(f"--input-shape: expected positive C,H,W, got "
                              f"'{args.input_shape}'")
        if args.torchvision:
            import torchvision
            if not hasattr(torchvision.models, args.torchvision):
                raise ExportError(f"--torchvision: unknown model "
                                  f"'{args.torchvision}'")
            model = getattr(torchvision.models, args.torchvision)(
                num_classes=args.num_classes)
        else:
            model = _load_module_factory(args.module)
        if args.weights:
            try:
                model.load_state_dict(torch.load(args.weights,
                                                 map_location="cpu"))
            except Exception as e:  # Missing file, bad pickle, wrong keys.
                raise ExportError(f"--weights: cannot load '{args.weights}': "
                                  f"{str(e).splitlines()[0]}") from e
        model.eval()
        if args.stages:
            stages = stages_from_names(model, args.stages.split(","),
                                       args.flatten_before)
        elif isinstance(model, nn.Sequential):
            stages = stages_from_sequential(model)
        elif hasattr(model, "layer4") and hasattr(model, "fc"):
            stages = stages_from_resnet(model)
        else:
            raise ExportError(f"{type(model).__name__} is neither an "
                              f"nn.Sequential nor a ResNet; pass --stages")
        name = args.name or os.path.splitext(os.path.basename(args.out))[0]
        class_names = args.class_names.split(",") if args.class_names else None
        export_staged(stages, model, shape, args.out, name,
                      mean=_floats(args.mean, "--mean"),
                      std=_floats(args.std, "--std"),
                      class_names=class_names, resize=args.resize)
    except ExportError as e:
        print(f"gati_export: error: {e}", file=sys.stderr)
        return 3
    print(f"gati_export: wrote {args.out} ({len(stages)} stages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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


def _first_line(error):
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _fx_trace(model, max_leaves=256):
    """Symbolic trace of `model`. A submodule whose own forward fx cannot
    trace (data-dependent control flow, tuple unpacking of a tensor) is
    kept whole, as a leaf: the innermost such modules are found by tracing
    each submodule on its own, and the model is traced again around them.
    Returns (graph module, names of the leaves kept whole); an ExportError
    naming the construct and pointing to --stages when the model's own
    forward cannot be traced."""
    import torch.fx

    class Tracer(torch.fx.Tracer):
        def __init__(self, leaves):
            super().__init__()
            self.leaves = leaves

        def is_leaf_module(self, module, qualified_name):
            return id(module) in self.leaves or super().is_leaf_module(module, qualified_name)

    def trace(module, leaves):
        tracer = Tracer(leaves)
        graph = tracer.trace(module)
        return torch.fx.GraphModule(tracer.root, graph)

    leaves = {}  # id(module) -> qualified name
    while True:
        try:
            return trace(model, leaves), sorted(leaves.values())
        except Exception as e:  # TraceError, TypeError from data-dependent code.
            error = e
        # The innermost submodule that does not trace on its own, around
        # the leaves found so far (post-order: children first).
        found = None
        judge = Tracer(leaves)
        for name, module in reversed(list(model.named_modules())):
            # Leaves already (torch.nn's own modules, the ones found) are
            # never traced into.
            if not name or judge.is_leaf_module(module, name):
                continue
            try:
                trace(module, leaves)
            except Exception:  # noqa: BLE001 - any failure makes it a leaf.
                found = (name, module)
                break
        if found is None or len(leaves) >= max_leaves:
            raise ExportError(
                f"--auto: torch.fx cannot trace {type(model).__name__}: "
                f"{type(error).__name__}: {_first_line(error)}. This is usually "
                f"control flow that depends on tensor values or shapes in the "
                f"model's own forward; name the stages instead with --stages") from error
        leaves[id(found[1])] = found[0]


def _cut_points(graph):
    """Indices i (into graph.nodes) after which a single tensor carries the
    whole state: the only value computed so far that a later node (or the
    output) still needs is node i itself. Constants (get_attr) do not
    count: every stage can read them. These are the cut vertices of the
    dataflow graph between the input and the output."""
    nodes = list(graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    last_use = {}
    for i, node in enumerate(nodes):
        for used in node.all_input_nodes:
            last_use[used] = max(last_use.get(used, -1), i)
    cuts = []
    for i, node in enumerate(nodes):
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if i + 1 >= len(nodes) or nodes[i + 1].op == "output":
            continue  # The last value is the output, not a tap.
        live = [n for n in nodes[:i + 1]
                if n.op != "get_attr" and last_use.get(n, -1) > i]
        if live == [node]:
            cuts.append(i)
    return nodes, index, cuts


def _segment_module(root, nodes, begin, end):
    """A GraphModule computing nodes[begin..end] from the value of
    nodes[begin - 1] (or the model's input when begin is the first node)."""
    import torch.fx
    graph = torch.fx.Graph()
    env = {}
    source = nodes[begin - 1]
    env[source] = graph.placeholder("x")
    for node in nodes[begin:end + 1]:
        for used in node.all_input_nodes:
            if used not in env and used.op == "get_attr":
                env[used] = graph.node_copy(used, lambda n: env[n])
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(env[nodes[end]])
    return torch.fx.GraphModule(root, graph)


def _segment_names(nodes, begin, end):
    """Readable names, shortest first: the module path of the last
    call_module in the segment cut to two parts (e.g. "layer2.1"), then
    the whole path, then the last node's name."""
    names = []
    for node in reversed(nodes[begin:end + 1]):
        if node.op == "call_module":
            parts = node.target.split(".")
            names += [".".join(parts[:2]), node.target]
            break
    return names + [nodes[end].name]


def _node_costs(traced, input_shape, seed):
    """Per fx node, its cost in multiply-accumulates (see stages_from_fx)."""
    from torch.fx.passes.shape_prop import ShapeProp
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((1,) + tuple(input_shape), generator=generator)
    modules = dict(traced.named_modules())
    # Inside a submodule kept whole (a leaf that fx did not trace into),
    # the convolutions and linear layers count through forward hooks.
    inner = {}

    def count(name):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                return
            if isinstance(module, nn.modules.conv._ConvNd):
                kernel = 1
                for k in module.kernel_size:
                    kernel *= k
                macs = output.numel() * (module.in_channels // module.groups) * kernel
            else:
                macs = output.numel() * module.in_features
            inner[name] = inner.get(name, 0) + macs
        return hook

    handles = [m.register_forward_hook(count(n)) for n, m in modules.items()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        with torch.no_grad():
            ShapeProp(traced).propagate(x)
    finally:
        for handle in handles:
            handle.remove()

    def numel(node):
        meta = node.meta.get("tensor_meta")
        shape = getattr(meta, "shape", None)
        if shape is None:
            return 0
        count = 1
        for d in shape:
            count *= int(d)
        return count

    def last_dim(node):
        meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
        shape = getattr(meta, "shape", None)
        return int(shape[-1]) if shape else 1

    costs = {}
    for node in traced.graph.nodes:
        out = numel(node)
        cost = out
        if node.op == "call_module":
            module = modules[node.target]
            if isinstance(module, nn.modules.conv._ConvNd):
                kernel = 1
                for k in module.kernel_size:
                    kernel *= k
                cost = out * (module.in_channels // module.groups) * kernel
            elif isinstance(module, nn.Linear):
                cost = out * module.in_features
            elif isinstance(module, nn.MultiheadAttention):
                d = module.embed_dim
                tokens = out // d if d else 1
                cost = 4 * out * d + 2 * tokens * out
            else:
                prefix = node.target + "."
                cost = out + sum(v for k, v in inner.items() if k.startswith(prefix))
        elif node.op in ("call_function", "call_method") and node.args:
            name = getattr(node.target, "__name__", str(node.target))
            if name in ("matmul", "bmm", "mm", "linear", "conv2d"):
                cost = out * last_dim(node.args[0])
        costs[node] = cost
    return costs


def stages_from_fx(model, input_shape, min_stage_share=0.02, seed=0):
    """Returns [(name, module)]: `model` cut at every point of its torch.fx
    graph where one tensor carries the whole state (no skip connection or
    other value crosses it), then consecutive stages merged until each
    takes at least `min_stage_share` of the model's measured time (the last
    stage, the head, is merged into its predecessor only when it is below
    the share too)."""
    traced, leaves = _fx_trace(model)
    if leaves:
        shown = ", ".join(leaves[:6]) + (f" and {len(leaves) - 6} more" if len(leaves) > 6 else "")
        print(f"gati_export: --auto: torch.fx cannot trace inside {len(leaves)} "
              f"submodule(s), kept whole: {shown}", file=sys.stderr)
    nodes, _, cuts = _cut_points(traced.graph)
    first = next(i for i, n in enumerate(nodes) if n.op == "placeholder")
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ExportError(f"--auto: the model takes {len(placeholders)} "
                          f"inputs; a staged model takes one tensor")
    out_index = next(i for i, n in enumerate(nodes) if n.op == "output")
    bounds = [first] + cuts + [out_index - 1]
    segments = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        begin = a + 1
        # Skip leading constants-only ranges.
        if begin > b:
            continue
        segments.append((begin, b))
    if len(segments) < 2:
        raise ExportError("--auto: found no point where a single tensor "
                          "carries the model's state; name the stages with "
                          "--stages")
    # The cost of each segment, counted (not timed, so that an export is
    # reproducible on a busy machine): multiply-accumulates of convolutions,
    # linear layers and matrix products, one operation per output element
    # elsewhere, from shapes that one run on a random input propagates.
    costs = _node_costs(traced, input_shape, seed)
    times = [sum(costs.get(n, 0) for n in nodes[a:b + 1]) for a, b in segments]
    total = sum(times) or 1.0
    merged = []  # [(first segment, last segment, time)]
    for k, t in enumerate(times):
        if merged and merged[-1][2] < min_stage_share * total:
            a, _, s = merged[-1]
            merged[-1] = (a, k, s + t)
        else:
            merged.append((k, k, t))
    if len(merged) > 1 and merged[-1][2] < min_stage_share * total:
        a, _, s = merged[-2]
        merged[-2:] = [(a, merged[-1][1], s + merged[-1][2])]
    stages = []
    used_names = set()
    for a, b, _ in merged:
        begin, end = segments[a][0], segments[b][1]
        candidates = _segment_names(nodes, begin, end)
        name = next((n for n in candidates if n not in used_names), None)
        suffix = 2
        while name is None:
            name = f"{candidates[0]}#{suffix}"
            name = None if name in used_names else name
            suffix += 1
        used_names.add(name)
        stages.append((name, _segment_module(traced, nodes, begin, end)))
    if len(stages) < 2:
        raise ExportError("--auto: every cut point merged into one stage; "
                          "lower --min-stage-share")
    return stages


class _VitEmbed(nn.Module):
    """A torchvision VisionTransformer's input side: patches, class token,
    position embedding: [N, C, H, W] -> tokens [N, 1 + patches, D]."""

    def __init__(self, vit):
        super().__init__()
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.pos_embedding = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        token = self.class_token.expand(x.shape[0], -1, -1)
        return self.dropout(torch.cat([token, x], dim=1) + self.pos_embedding)


class _VitHead(nn.Module):
    """A torchvision VisionTransformer's output side: final norm, the class
    token, the heads."""

    def __init__(self, vit):
        super().__init__()
        self.ln = vit.encoder.ln
        self.heads = vit.heads

    def forward(self, x):
        return self.heads(self.ln(x)[:, 0])


def stages_from_vit(model):
    """Returns [(name, module)] for a torchvision VisionTransformer (which
    torch.fx cannot trace: it unpacks the input's shape): the embedding,
    every encoder block, the head."""
    stages = [("embed", _VitEmbed(model))]
    for name, block in model.encoder.layers.named_children():
        stages.append((f"encoder.{name}", block))
    stages.append(("head", _VitHead(model)))
    return stages


def _is_torchvision_vit(model):
    return all(hasattr(model, a) for a in ("conv_proj", "class_token", "encoder",
                                           "heads")) and \
        hasattr(model.encoder, "layers")


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
    parser.add_argument("--auto", action="store_true",
                        help="find the stages with torch.fx: a cut wherever "
                             "one tensor carries the whole state")
    parser.add_argument("--min-stage-share", type=float, default=0.02,
                        help="--auto: merge stages that take less than this "
                             "share of the model's time")
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
        if args.auto and args.stages:
            raise ExportError("--auto and --stages exclude each other")
        if not 0 <= args.min_stage_share < 0.5:
            raise ExportError("--min-stage-share must lie in [0, 0.5)")
        if args.auto and _is_torchvision_vit(model):
            stages = stages_from_vit(model)
            print("gati_export: torchvision VisionTransformer: embedding, "
                  "every encoder block, head (torch.fx cannot trace its "
                  "shape unpacking)")
        elif args.auto:
            stages = stages_from_fx(model, shape, args.min_stage_share)
        elif args.stages:
            stages = stages_from_names(model, args.stages.split(","),
                                       args.flatten_before)
        elif isinstance(model, nn.Sequential):
            stages = stages_from_sequential(model)
        elif hasattr(model, "layer4") and hasattr(model, "fc"):
            stages = stages_from_resnet(model)
        elif _is_torchvision_vit(model):
            stages = stages_from_vit(model)
        else:
            raise ExportError(f"{type(model).__name__} is neither an "
                              f"nn.Sequential nor a ResNet; pass --auto "
                              f"or --stages")
        print("gati_export: taps (after each stage but the last): " +
              ", ".join(f"{k}:{n}" for k, (n, _) in enumerate(stages[:-1])))
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

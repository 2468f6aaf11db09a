"""Cut any torchvision classifier at a node of its FX graph, and name the cuts by stride.

torchvision's feature-extraction utilities trace a model into a graph whose nodes
are named by module path (``layer3.1.relu_1``, ``features.5``); asking for a module's
path (``layer3``) gives the last node inside it. For each output stride this module
picks one readable cut: the shallowest module (or top-level operation) that ends at
that stride, the latest of them. Channels and stride are measured by running the
model on shape-only (``meta``) tensors at two frame sizes: an output that grows with
the frame is a feature map, one that does not (global or fixed-size pooling) is not.
The classification head (the ``classifier`` / ``fc`` / ``head`` / ``heads`` child)
is never part of a cut. Example::

    >>> find_stages("regnet_y_400mf")["stride8"]
    Stage(channels=104, stride=8, depth=None, node='trunk_output.block2')
    >>> trunk = cut_at_node(torchvision.models.regnet_y_400mf(), "trunk_output.block2")
    >>> trunk(torch.zeros(1, 3, 64, 64)).shape   # (N, 104, 64/8, 64/8)
    torch.Size([1, 104, 8, 8])

Models with no ``(N, C, H, W)`` map that FX can trace at these sizes (the vision
transformers, MaxViT) are refused with a ValueError that says why.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass
from functools import cache

import torch
from torch import fx, nn
from torchvision import models as tvm
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from videoseq.errors import UsageError

PROBE_SIZES = (96, 160)  # two square frame sizes (inception_v3 needs >= 75); a map's side grows by 64 / stride
MIN_STRIDE = 4  # stride-2 maps are the stem's: no named stage, still reachable by node name
MAX_DEPTH = 3  # named stages are module paths of at most three parts (``features.0.0``)
HEAD_MODULES = frozenset({"classifier", "fc", "head", "heads"})
OUTPUT = "map"


@dataclass(frozen=True)
class Stage:
    """A cut point giving ``(N, channels, H / stride, W / stride)`` maps.

    Either the FX graph node ``node``, or (hand-listed backbones) the first ``depth``
    modules of an ``nn.Sequential`` trunk.
    """

    channels: int
    stride: int
    depth: int | None = None
    node: str | None = None


def shape_model(name: str) -> nn.Module:
    """torchvision model ``name`` without weights, in eval mode, on the meta device (no memory, no init).

    Builders that read tensor values while building (regnet computes its widths with
    tensors) cannot run on ``meta``; those are built on the CPU.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet / inception_v3: a note on their default init
        try:
            with torch.device("meta"):
                return tvm.get_model(name, weights=None).eval()
        except NotImplementedError:  # "Cannot copy out of meta tensor"
            return tvm.get_model(name, weights=None).eval()


def node_paths(name: str, model: nn.Module, max_depth: int = MAX_DEPTH) -> dict[str, str]:
    """Module paths (<= ``max_depth`` parts) outside the head -> the node each ends at, in the order they end.

    From the eval graph; only paths present in the train graph too (a cut serves both modes).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train_nodes, eval_nodes = get_graph_node_names(model, suppress_diff_warning=True)
    except Exception as err:  # FX tracing fails inside model code (asserts on sizes, data-dependent flow)
        raise UsageError(f"backbone {name!r} cannot be cut: torchvision's FX tracing failed "
                         f"({type(err).__name__}: {err})") from None
    in_train = {prefix for node in train_nodes for prefix in prefixes(node, max_depth)}
    ends: dict[str, int] = {}
    for position, node in enumerate(eval_nodes):
        for prefix in prefixes(node, max_depth):
            if position and prefix in in_train and prefix.split(".")[0] not in HEAD_MODULES:
                ends[prefix] = position  # eval_nodes[0] is the input
    return {path: eval_nodes[ends[path]] for path in sorted(ends, key=ends.get)}


def prefixes(node: str, max_depth: int) -> list[str]:
    """``features.3.block.0`` (max_depth 3) -> ``features``, ``features.3``, ``features.3.block``."""
    parts = node.split(".")
    return [".".join(parts[:depth]) for depth in range(1, min(len(parts), max_depth) + 1)]


def measure(name: str, model: nn.Module, nodes: list[str]) -> dict[str, Stage]:
    """The nodes among ``nodes`` (exact node names) whose output is an ``(N, C, H, W)`` map that grows with the frame.

    Exact names: a module path asked for beside a node inside it would take that node
    from it (torchvision gives each node to one return name).
    """
    extractor = create_feature_extractor(model, return_nodes=nodes, suppress_diff_warning=True).eval()
    device = next(model.parameters()).device
    outputs = []
    for size in PROBE_SIZES:
        try:  # an FX module that fails prints its generated code to stderr: kept out of the way
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                outputs.append(extractor(torch.zeros(1, 3, size, size, device=device)))
        except Exception as err:  # fixed input sizes (vision transformers), window partitions (MaxViT)
            raise UsageError(f"backbone {name!r} cannot be cut: it does not run on a {size}x{size} frame "
                             f"({type(err).__name__}: {str(err).splitlines()[0]}); a model that takes one "
                             "input size or gives no (N, C, H, W) map cannot be a per-frame backbone") from None
    return {node: stage for node in nodes if (stage := map_stage(node, outputs[0][node], outputs[1][node]))}


def map_stage(node: str, small: object, large: object) -> Stage | None:
    """The stage of ``node`` from its outputs at the two probe sizes; None when they are not growing maps."""
    if not (isinstance(small, torch.Tensor) and isinstance(large, torch.Tensor) and small.dim() == large.dim() == 4):
        return None
    if small.shape[1] != large.shape[1]:  # channels-last (N, H, W, C) or not a map at all
        return None
    grow_h, grow_w = large.shape[2] - small.shape[2], large.shape[3] - small.shape[3]
    if grow_h <= 0 or grow_h != grow_w:
        return None
    stride = 2 ** round(math.log2((PROBE_SIZES[1] - PROBE_SIZES[0]) / grow_h))
    return Stage(int(small.shape[1]), stride, node=node)


@cache
def find_stages(name: str) -> dict[str, Stage]:
    """Readable stages of torchvision model ``name``: ``stride4``, ``stride8``, ... and ``last`` (the deepest)."""
    model = shape_model(name)
    paths = node_paths(name, model)
    measured = measure(name, model, sorted(set(paths.values())))
    best: dict[int, Stage] = {}
    for path, end in paths.items():  # in the order they end: a later path of the same depth wins
        stage = measured.get(end)
        if stage and stage.stride >= MIN_STRIDE and (
                stage.stride not in best or path.count(".") <= best[stage.stride].node.count(".")):
            best[stage.stride] = Stage(stage.channels, stage.stride, node=path)
    if not best:
        raise UsageError(f"backbone {name!r} cannot be cut: no node outside its head gives an (N, C, H, W) "
                         "feature map that grows with the frame")
    strides = sorted(best)
    names = [f"stride{stride}" for stride in strides[:-1]] + ["last"]
    return {stage_name: best[stride] for stage_name, stride in zip(names, strides)}


@cache
def measure_node(name: str, node: str) -> Stage | None:
    """The stage at graph node ``node`` of model ``name`` (any name of ``get_graph_node_names``); None if no map."""
    model = shape_model(name)
    end = node_paths(name, model, max_depth=node.count(".") + 1).get(node)
    stage = measure(name, model, [end]).get(end) if end else None
    return Stage(stage.channels, stage.stride, node=node) if stage else None


def cut_at_node(model: nn.Module, node: str) -> fx.GraphModule:
    """``model`` up to graph node ``node``, returning its map ``(N, C, h, w)`` (train and eval graphs).

    Parameters keep their torchvision names (``features.3.block.0.0.weight``); the
    parts past the node are dropped.
    """
    trunk = create_feature_extractor(model, return_nodes={node: OUTPUT}, suppress_diff_warning=True)
    for graph in (trunk.train_graph, trunk.eval_graph):
        output = next(n for n in graph.nodes if n.op == "output")
        output.args = (output.args[0][OUTPUT],)  # the tensor itself, not {"map": tensor}
    trunk.recompile()
    return trunk

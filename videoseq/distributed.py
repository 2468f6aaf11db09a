"""Training and inference on several processes with PyTorch's own engine (``torchrun``).

``torchrun --nproc_per_node=N -m videoseq train CONFIG`` starts N copies of the
command; each reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from its
environment, joins one process group (NCCL on CUDA, gloo on CPU), trains a
``DistributedDataParallel`` model on its shard of the training clips, and takes
part in evaluation on its shard of the validation clips. Predictions of every
rank are gathered, keyed by item, so each clip counts exactly once. Only rank 0
prints, writes files and saves checkpoints. Inference over many files (``archive``)
joins the same group to split the videos and to wait for every rank before rank 0
merges their parts.

Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) every function here is a cheap
no-op, so single-process code paths need no special case.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from videoseq.errors import UsageError


@dataclass(frozen=True)
class World:
    """Where this process stands: its global rank, the number of processes, its rank on this node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0


def world_from_env() -> World:
    """``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` as torchrun sets them (defaults: one process)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise UsageError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({err}); launch with torchrun") from err
    if size < 1 or not 0 <= rank < size:
        raise UsageError(f"RANK={rank} does not fit WORLD_SIZE={size}; launch with torchrun")
    return World(rank, size, local_rank)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that prints and writes files."""
    return rank() == 0


def setup(device: torch.device, timeout: timedelta | None = None) -> tuple[torch.device, bool]:
    """Join the process group torchrun describes; returns the device to use and whether we joined.

    ``device`` is the one the config asks for; on CUDA each process takes GPU ``LOCAL_RANK``
    and the backend is NCCL, on CPU it is gloo. A process group already set up by the
    caller is used as it is (and not torn down by ``teardown``). ``timeout`` is how long a
    collective (a ``barrier``) waits for the slowest rank (default: torch's).
    """
    world = world_from_env()
    if world.size == 1 or is_distributed():
        return device, False
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                            rank=world.rank, world_size=world.size, timeout=timeout)
    return device, True


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if is_distributed():
        dist.barrier()


def teardown(joined: bool) -> None:
    if joined and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, device: torch.device, *, sync_bn: bool = False) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when distributed (else ``model``).

    ``sync_bn`` turns every BatchNorm into a SyncBatchNorm (statistics over the whole
    global batch); PyTorch implements it for GPUs only, so on CPU it is an error.
    """
    if not is_distributed():
        return model
    if sync_bn:
        if device.type != "cuda":
            raise UsageError("train.sync_bn needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only); "
                               "set train.sync_bn=false on CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and/or ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP averages gradients, so parameters stay equal, but each rank updates its running
    statistics from its own clips; evaluation and checkpoints need one set.
    """
    if is_distributed():
        for buffer in unwrap(model).buffers():
            dist.broadcast(buffer.data, src=0)


def gather_objects(value: object) -> list[object]:
    """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
    if not is_distributed():
        return [value]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Per-key mean of float metrics over the ranks (unchanged in a single process)."""
    if not is_distributed():
        return values
    keys = sorted(values)
    total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(total)
    return {k: float(v) / world_size() for k, v in zip(keys, total.tolist())}


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer, in state-dict order: equal digests, equal weights."""
    digest = hashlib.sha256()
    for name, tensor in unwrap(model).state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_in_sync(model: nn.Module, report: Path) -> None:
    """After training, every rank must hold the same weights: rank 0 writes their digests to ``report``.

    Differing digests (a rank that skipped a step, buffers left unsynchronised) are an error.
    """
    if not is_distributed():
        return
    digests = gather_objects(weights_digest(model))
    if is_main():
        report.write_text(json.dumps({"world_size": world_size(), "backend": dist.get_backend(),
                                      "weights_sha256": digests}, indent=2))
    if len(set(digests)) > 1:
        raise RuntimeError(f"the ranks ended with different weights (digests in {report}); "
                           "a rank must have skipped a step: check bad_videos.csv and the logs of every rank")

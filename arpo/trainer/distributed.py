"""Process group, device, FSDP2 sharding and metric reduction.

One code path for every launch: a plain `python -m arpo train` is world size 1 (no process group,
no sharding); `torchrun` sets RANK/WORLD_SIZE and gets NCCL on GPU or gloo on CPU. Multi-node needs
only torchrun's own flags (--nnodes, --node_rank, --rdzv_endpoint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass
class Dist:
    """This process's place in the launch: its rank, the world size and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, device)


def shutdown(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def all_reduce(values: list[float], dist: Dist, op: str = "sum") -> list[float]:
    """Reduce a list of floats across ranks in one collective."""
    if not dist.enabled:
        return list(values)
    device = dist.device if dist.device.type == "cuda" else "cpu"
    buffer = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(
        buffer,
        op={"sum": torch_dist.ReduceOp.SUM, "max": torch_dist.ReduceOp.MAX, "min": torch_dist.ReduceOp.MIN}[
            op
        ],
    )
    return buffer.tolist()


def reduce_metrics(metrics: dict[str, float], dist: Dist) -> dict[str, float]:
    """Mean over ranks for every metric, except `*/max` (max) and `*/min` (min). All ranks must pass
    the same keys; a rank missing a key reports NaN for it and the result ignores it."""
    if not dist.enabled:
        return dict(metrics)
    keys = sorted(metrics)
    # Every rank must agree on the keys: gather their union first.
    names: list[list[str]] = [None] * dist.world  # type: ignore[list-item]
    torch_dist.all_gather_object(names, keys)
    keys = sorted(set().union(*names))
    nan = float("nan")
    vals = [float(metrics.get(k, nan)) for k in keys]
    present = [0.0 if v != v else 1.0 for v in vals]
    sums = all_reduce([0.0 if v != v else v for v in vals] + present, dist, "sum")
    maxs = all_reduce([-float("inf") if v != v else v for v in vals], dist, "max")
    mins = all_reduce([float("inf") if v != v else v for v in vals], dist, "min")
    n = len(keys)
    out = {}
    for i, k in enumerate(keys):
        count = sums[n + i]
        if count == 0:
            continue
        out[k] = maxs[i] if k.endswith("/max") else mins[i] if k.endswith("/min") else sums[i] / count
    return out


def shard_model(model: torch.nn.Module, dist: Dist, mixed_precision: bool) -> torch.nn.Module:
    """FSDP2: shard each decoder layer, then the root (embeddings, norm, LM head)."""
    if not dist.enabled:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(dist.device.type, (dist.world,))
    mp = None
    if mixed_precision and dist.device.type == "cuda":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    kwargs = {"mesh": mesh} | ({"mp_policy": mp} if mp is not None else {})
    for layer in model.model.layers:
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return model


def full_parameters(model: torch.nn.Module):
    """(name, full tensor) for every parameter; a collective under FSDP2: all ranks must iterate."""
    from torch.distributed.tensor import DTensor

    for name, p in model.named_parameters():
        yield name, (p.full_tensor() if isinstance(p, DTensor) else p).detach()

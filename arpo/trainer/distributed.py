"""Process group, device, FSDP2 sharding and metric reduction.

One code path for every launch: a plain `python -m arpo train` is world size 1 (no process group,
no sharding); `torchrun` sets RANK/WORLD_SIZE and gets NCCL on GPU or gloo on CPU. Multi-node needs
only torchrun's own flags (--nnodes, --node_rank, --rdzv_endpoint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
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
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, device)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(values: list[float], d: Dist, op: str = "sum") -> list[float]:
    """Reduce a list of floats across ranks in one collective."""
    if not d.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t.tolist()


def reduce_metrics(metrics: dict[str, float], d: Dist) -> dict[str, float]:
    """Mean over ranks for every metric, except `*/max` (max) and `*/min` (min). All ranks must pass
    the same keys; a rank missing a key reports NaN for it and the result ignores it."""
    if not d.enabled:
        return dict(metrics)
    keys = sorted(metrics)
    # Every rank must agree on the keys: gather their union first.
    names: list[list[str]] = [None] * d.world  # type: ignore[list-item]
    dist.all_gather_object(names, keys)
    keys = sorted(set().union(*names))
    nan = float("nan")
    vals = [float(metrics.get(k, nan)) for k in keys]
    present = [0.0 if v != v else 1.0 for v in vals]
    sums = all_reduce([0.0 if v != v else v for v in vals] + present, d, "sum")
    maxs = all_reduce([-float("inf") if v != v else v for v in vals], d, "max")
    mins = all_reduce([float("inf") if v != v else v for v in vals], d, "min")
    n = len(keys)
    out = {}
    for i, k in enumerate(keys):
        count = sums[n + i]
        if count == 0:
            continue
        out[k] = maxs[i] if k.endswith("/max") else mins[i] if k.endswith("/min") else sums[i] / count
    return out


def shard_model(model: torch.nn.Module, d: Dist, mixed_precision: bool) -> torch.nn.Module:
    """FSDP2: shard each decoder layer, then the root (embeddings, norm, LM head)."""
    if not d.enabled:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(d.device.type, (d.world,))
    mp = None
    if mixed_precision and d.device.type == "cuda":
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

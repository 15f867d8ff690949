"""AdamW with a linear warm-up, then a constant learning rate."""

from __future__ import annotations

import torch


def build_optimizer(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
):
    params = [p for p in model.parameters() if p.requires_grad]
    # foreach=False: DTensor parameters of FSDP2 and plain tensors take the same path.
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), foreach=False)

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        return 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

"""Atomic checkpoints: `<run_dir>/checkpoints/step-NNNNNN/` holds

    hf/                 the policy as a Hugging Face safetensors directory (transformers, vLLM);
                        also the weights a resume loads (saved in the training dtype)
    optimizer.pt        full optimizer state (gathered out of FSDP2), scheduler state
    trainer_state.pt    the TrainerState (next step, held-out numbers before training, row counts
                        of the per-step logs), RNG states
    config.yaml         the resolved config (secrets redacted)

Everything is written to a `.tmp-` folder, which is renamed when complete; `resume=auto` takes
the newest complete step folder that loads (an unreadable one is skipped with a warning) and the
last `keep_last` are kept.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from arpo.config import Config, to_yaml
from arpo.errors import ArpoError
from arpo.models.export import export_hf
from arpo.trainer import run_logs
from arpo.trainer.components import Learner
from arpo.trainer.distributed import Dist

STEP_DIR = re.compile(r"^step-(\d{6})$")
log = logging.getLogger(__name__)


@dataclass
class TrainerState:
    """What a resumed run needs besides weights, optimizer and RNG: the number of steps done (the
    data position follows from it) and the held-out numbers measured before training."""

    step: int = 0
    eval_before: dict | None = None
    log_rows: dict[str, int] | None = None  # per-step log -> rows it had when this was saved


def checkpoint_root(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    root = checkpoint_root(run_dir)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = STEP_DIR.match(name)
        if m and os.path.isfile(os.path.join(root, name, "trainer_state.pt")):
            found.append((int(m.group(1)), os.path.join(root, name)))
    return sorted(found)


def load_newest_readable(
    run_dir: str, load: Callable[[str], TrainerState]
) -> tuple[TrainerState, str] | None:
    """(state, folder) of the newest checkpoint that `load` restores, None when there is none.
    An unreadable one (ArpoError from `load`) is skipped with a warning; if none is readable the
    run stops rather than start over beside them."""
    found = list_checkpoints(run_dir)
    first_problem = None
    for _, path in reversed(found):
        try:
            return load(path), path
        except ArpoError as e:
            log.warning("%s; trying the checkpoint before it", e)
            first_problem = first_problem or str(e)
    if found:
        raise ArpoError(f"no readable checkpoint in {checkpoint_root(run_dir)} (newest: {first_problem})")
    return None


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(cfg: Config, learner: Learner, state: TrainerState, dist: Dist) -> str | None:
    """Collective under FSDP2 (every rank calls it); rank 0 writes `step-<state.step>`. Returns the
    folder on rank 0."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd, optim_sd = get_state_dict(learner.model, learner.optimizer, options=opts)
    if not dist.is_main:
        return None
    root = checkpoint_root(cfg.run_dir)
    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, f"step-{state.step:06d}")
    tmp = os.path.join(root, f".tmp-step-{state.step:06d}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    export_hf(learner.model, learner.tokenizer, os.path.join(tmp, "hf"), state_dict=model_sd)
    optimizer_state = {"optimizer": optim_sd, "scheduler": learner.scheduler.state_dict()}
    torch.save(optimizer_state, os.path.join(tmp, "optimizer.pt"))
    with open(os.path.join(tmp, "config.yaml"), "w") as f:
        f.write(to_yaml(cfg))
    state.log_rows = run_logs.row_counts(cfg.run_dir)
    torch.save({**asdict(state), "rng": rng_state()}, os.path.join(tmp, "trainer_state.pt"))
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    keep_last = cfg.trainer.keep_last
    for _, old in list_checkpoints(cfg.run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str, learner: Learner) -> TrainerState:
    """Restore weights, optimizer, scheduler and RNG; returns the trainer state."""
    from safetensors.torch import load_file

    try:
        weights = load_file(os.path.join(path, "hf", "model.safetensors"))
        extra = torch.load(os.path.join(path, "optimizer.pt"), weights_only=False)
        state = torch.load(os.path.join(path, "trainer_state.pt"), weights_only=False)
    except Exception as e:
        raise ArpoError(
            f"checkpoint {path} is unreadable: {str(e).splitlines()[0] if str(e) else e!r}"
        ) from None
    model = learner.model
    if getattr(model.config, "tie_word_embeddings", False) and "lm_head.weight" not in weights:
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    # Every rank reads the files (a shared filesystem across nodes) and keeps its own shard.
    opts = StateDictOptions(full_state_dict=True)
    set_state_dict(
        model, learner.optimizer, model_state_dict=weights, optim_state_dict=extra["optimizer"], options=opts
    )
    learner.scheduler.load_state_dict(extra["scheduler"])
    set_rng_state(state["rng"])
    return TrainerState(
        step=state["step"], eval_before=state.get("eval_before"), log_rows=state.get("log_rows")
    )

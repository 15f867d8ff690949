import math
import random
import subprocess
import sys

import pytest
import torch
from arpo.kernels import tree_loss_from_logprob

from arpo.algo.advantages import grpo_advantages
from arpo.algo.losses import flat_token_loss
from arpo.algo.packing import pack_groups
from arpo.algo.policy import compute_logprobs, policy_loss_backward
from arpo.algo.synthetic import synthetic_group
from arpo.config.algo import AlgoConfig
from arpo.errors import ConfigError
from arpo.models.tiny import tiny_model

METRICS = (
    "loss",
    "pg_clipfrac",
    "pg_clipfrac_upper",
    "pg_clipfrac_lower",
    "pg_clipfrac_dual",
    "ppo_kl",
    "entropy",
    "kl_ref",
)


def _setup(seed: int, family: str = "llama", n_groups: int = 3):
    """Random trees (depth 1-3, tool spans, mixed rewards) and old log-probs perturbed by up to
    +-1.5 nats (ratios 0.22-4.5: through both clips and the dual clip), equal on shared tokens."""
    model, _ = tiny_model(family, seed=seed)
    rng = random.Random(seed)
    groups = [
        synthetic_group(
            rng, g, 470, n_traj=rng.randint(3, 7), n_roots=rng.randint(1, 2), max_depth=rng.randint(1, 3)
        )
        for g in range(n_groups)
    ]
    old = compute_logprobs(model, groups)
    for g, og in zip(groups, old):
        by_id = {t.id: i for i, t in enumerate(g.trajectories)}
        for i, t in enumerate(g.trajectories):  # parents come first in synthetic groups
            own = [x + rng.uniform(-1.5, 1.5) for x in og[i][t.fork_pos :]]
            og[i] = (og[by_id[t.parent]][: t.fork_pos] if t.parent is not None else []) + own
    return model, groups, old


def _run(model, groups, cfg, old, ref=None, scale=1.0):
    model.zero_grad(set_to_none=True)
    metrics = policy_loss_backward(model, groups, cfg, old_logprobs=old, ref_model=ref, scale=scale)
    return metrics, {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _assert_grads_close(got, want, rel=1e-5):
    for name in want:
        err = (got[name] - want[name]).abs().max().item()
        assert err <= rel * want[name].abs().max().item() + 1e-12, f"{name}: max error {err}"


@pytest.mark.parametrize(
    "seed,family,attribution",
    [(0, "llama", "soft"), (1, "qwen2", "soft"), (2, "qwen3", "hard"), (3, "llama", "hard")],
)
def test_tree_loss_equals_flat_loss(seed, family, attribution):
    model, groups, old = _setup(seed, family)
    ref, _ = tiny_model(family, seed=seed + 100)
    cfg = AlgoConfig(
        attribution=attribution, kl_coef=0.05, entropy_coef=0.01, eps_high=0.28, micro_batch_tokens=160
    )
    adv = [a for ga in grpo_advantages(groups)[0] for a in ga]
    assert min(adv) < 0 < max(adv)
    assert any(0 in t.loss_mask for g in groups for t in g.trajectories)  # masked tool tokens
    batches = pack_groups(groups, cfg.micro_batch_tokens)
    assert len(batches) > 1 and any(b.input_ids.shape[0] > 1 for b in batches)  # several trees per batch
    tree_m, tree_g = _run(model, groups, cfg, old, ref)
    flat_m, flat_g = _run(model, groups, AlgoConfig(**{**cfg.__dict__, "loss_impl": "flat"}), old, ref)
    assert tree_m["unique_tokens"] < flat_m["linearised_tokens"] <= flat_m["tokens_forwarded"]
    for k in METRICS:
        assert tree_m[k] == pytest.approx(flat_m[k], rel=1e-5, abs=1e-7), k
    # the perturbation reaches every clip region
    assert min(flat_m["pg_clipfrac_upper"], flat_m["pg_clipfrac_lower"], flat_m["pg_clipfrac_dual"]) > 0
    _assert_grads_close(tree_g, flat_g)
    assert all(g.abs().max() > 0 for g in flat_g.values())


def test_kl_without_reference_model_is_rejected():
    model, groups, old = _setup(6, "llama", n_groups=1)
    with pytest.raises(ConfigError, match="reference model"):
        policy_loss_backward(model, groups, AlgoConfig(kl_coef=0.1), old_logprobs=old)


def test_flat_loss_equals_direct_definition():
    """The flat reference against a float64 loop over trajectories run one at a time."""
    model, groups, old = _setup(4, "qwen3", n_groups=2)
    cfg = AlgoConfig(loss_impl="flat", entropy_coef=0.02, dual_clip_c=2.5, eps_low=0.15)
    metrics, _ = _run(model, groups, cfg, old)
    adv, _ = grpo_advantages(groups)
    n_loss = sum(sum(t.loss_mask) for g in groups for t in g.trajectories)
    total = 0.0
    with torch.no_grad():
        for g, ga, og in zip(groups, adv, old):
            for t, a, o in zip(g.trajectories, ga, og):
                logits = model(input_ids=torch.tensor([g.prompt_ids + t.tokens])).logits[0].double()
                logp_all = torch.log_softmax(logits[len(g.prompt_ids) - 1 : -1], -1)
                for pos, tok in enumerate(t.tokens):
                    if not t.loss_mask[pos]:
                        continue
                    r = math.exp(logp_all[pos, tok].item() - o[pos])
                    pg = max(-r * a, -min(max(r, 1 - cfg.eps_low), 1 + cfg.eps_high) * a)
                    if a < 0:
                        pg = min(pg, -cfg.dual_clip_c * a)
                    ent = -(logp_all[pos].exp() * logp_all[pos]).sum().item()
                    total += (pg - cfg.entropy_coef * ent) / n_loss
    assert metrics["loss"] == pytest.approx(total, rel=1e-5)


def test_two_sums_equal_per_branch_losses():
    """Summing the flat per-branch loss over the branches through a token equals the kernel's tree
    loss epilogue with S+ and S-, in value and in d/dlogp and d/dH, for ratios across every clip
    region (float64)."""
    g = torch.Generator().manual_seed(0)
    n_tok, n_branch = 200, 5
    logp = (-torch.rand(n_tok, generator=g, dtype=torch.float64) * 3).requires_grad_()
    old = logp.detach() + (torch.rand(n_tok, generator=g, dtype=torch.float64) - 0.5) * 4
    adv = torch.randn(n_tok, n_branch, generator=g, dtype=torch.float64)
    w = torch.rand(n_tok, n_branch, generator=g, dtype=torch.float64) * (
        torch.rand(n_tok, n_branch, generator=g) > 0.3
    )
    ent = torch.rand(n_tok, generator=g, dtype=torch.float64).requires_grad_()
    ref = logp.detach() + torch.randn(n_tok, generator=g, dtype=torch.float64)
    cfg = AlgoConfig(eps_low=0.2, eps_high=0.28, dual_clip_c=3.0, kl_coef=0.1, entropy_coef=0.01)
    flat = sum(
        flat_token_loss(logp, old, adv[:, b], w[:, b], ent, cfg, ref) for b in range(n_branch)
    ).sum()  # fmt: skip
    flat_grads = torch.autograd.grad(flat, (logp, ent))
    labels = torch.zeros(n_tok, dtype=torch.long)
    tree, _ = tree_loss_from_logprob(
        logp, ent, labels, old, (w * adv.clamp(min=0)).sum(1), (w * adv.clamp(max=0)).sum(1), w.sum(1), ref,
        eps_low=0.2, eps_high=0.28, dual_clip_c=3.0, kl_coef=0.1, entropy_coef=0.01,
    )  # fmt: skip
    tree_grads = torch.autograd.grad(tree, (logp, ent))
    torch.testing.assert_close(tree, flat, rtol=1e-12, atol=1e-12)
    for got, want in zip(tree_grads, flat_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_on_policy_default_and_scale():
    """old_logprobs=None uses the current policy: ratios are 1 (no clipping, ppo_kl 0) and the result
    equals passing freshly computed log-probs; `scale` multiplies the gradients only."""
    model, groups, _ = _setup(5, "llama", n_groups=2)
    cfg = AlgoConfig(micro_batch_tokens=100)
    m_none, g_none = _run(model, groups, cfg, None, scale=3.0)
    m_fresh, g_fresh = _run(model, groups, cfg, compute_logprobs(model, groups))
    assert m_none["pg_clipfrac_upper"] == m_none["pg_clipfrac_lower"] == 0.0
    assert abs(m_none["ppo_kl"]) < 1e-6
    assert m_none["loss"] == pytest.approx(m_fresh["loss"], rel=1e-5, abs=1e-8)
    _assert_grads_close(g_none, {k: 3.0 * v for k, v in g_fresh.items()})


_FSDP_SCRIPT = """
import random, sys
import torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from arpo.config.algo import AlgoConfig
from arpo.algo.policy import compute_logprobs, policy_loss_backward
from arpo.algo.synthetic import synthetic_group
from arpo.models.tiny import tiny_model

dist.init_process_group("gloo")
torch.set_num_threads(1)
model, ref = tiny_model("llama", 0)[0], tiny_model("llama", 0)[0]
rng = random.Random(0)
groups = [synthetic_group(rng, g, 470) for g in range(2)]
cfg = AlgoConfig(micro_batch_tokens=200)
old = compute_logprobs(ref, groups)
policy_loss_backward(ref, groups, cfg, old)
mesh = init_device_mesh("cpu", (2,))
for layer in model.model.layers:
    fully_shard(layer, mesh=mesh)
fully_shard(model, mesh=mesh)
sharded_old = compute_logprobs(model, groups)
assert all(abs(a - b) < 1e-5 for g, h in zip(old, sharded_old) for t, u in zip(g, h) for a, b in zip(t, u))
policy_loss_backward(model, groups, cfg, old)  # the same data on both ranks: the average is the grad
for (name, p), q in zip(model.named_parameters(), ref.parameters()):
    g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
    err = (g - q.grad).abs().max().item()
    assert err <= 1e-5 * q.grad.abs().max().item(), (name, err)
dist.destroy_process_group()
print("grads equal")
"""


@pytest.mark.slow
@pytest.mark.multiproc
def test_tree_path_under_fsdp2(tmp_path):
    """FSDP2 (layers and root sharded, 2 CPU ranks, gloo): the tree path's log-probs and gradients
    equal one process's."""
    script = tmp_path / "fsdp_tree.py"
    script.write_text(_FSDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(script)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("grads equal") == 2

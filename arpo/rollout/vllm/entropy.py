"""Exact full-vocabulary entropy for the vLLM backend.

vLLM's sampler returns at most top-k log-probs, so the entropy ARPO branches on is taken from the
logits themselves: a logits processor sees each step's raw float32 logits (before temperature) and
records, per request and output position, the entropy of softmax(z / T) and logsumexp(z / T) with the
fused kernel. With the engine's `logprobs_mode="raw_logits"` vLLM returns the sampled token's raw logit
z, so its log-prob is z / T - logsumexp(z / T) exactly. The processor changes no logit.

Needs the engine core in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, which `VllmEngine` sets):
the records are a module-level dict that the engine reads and clears.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

KEY = "arpo_key"  # SamplingParams.extra_args entry naming a request's records
# request key -> {output position -> (entropy, logsumexp(z / T))}
RECORDS: dict[str, dict[int, tuple[float, float]]] = {}


def _row(params, _prompt_ids, output_ids):
    key = (params.extra_args or {}).get(KEY)
    if key is None:
        return None
    # Greedy requests report the temperature-1 distribution, as the native sampler does.
    temperature = params.temperature if params.temperature > 0 else 1.0
    return key, temperature, output_ids  # output_ids: vLLM's live list of this request's tokens


class EntropyRecorder(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.rows: dict[int, tuple[str, float, list[int]]] = {}

    def is_argmax_invariant(self) -> bool:
        return False  # vLLM skips argmax-invariant processors for greedy requests; we need every row

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.rows, batch_update, _row)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        from arpo.kernels import logprob_entropy_from_logits

        by_temperature: dict[float, list[int]] = {}
        for index, (_, temperature, _) in self.rows.items():
            by_temperature.setdefault(temperature, []).append(index)
        for temperature, indices in by_temperature.items():
            if indices == list(range(logits.shape[0])):
                z = logits  # the usual case (every row, one temperature): no [rows x vocab] copy
            else:
                z = logits[torch.tensor(indices, device=logits.device)]
            top = z.argmax(-1)  # a finite logit: logsumexp = z_top / T - logprob(top)
            logprob, entropy = logprob_entropy_from_logits(z, top, temperature)
            lse = z.gather(1, top[:, None]).squeeze(1) / temperature - logprob.float()
            for index, h, s in zip(indices, entropy.float().tolist(), lse.tolist()):
                key, _, output_ids = self.rows[index]
                # A position is recorded again if a chunked prefill or a preemption recomputes it.
                RECORDS.setdefault(key, {})[len(output_ids)] = (h, s)
        return logits

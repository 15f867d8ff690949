"""The native paged sampler: continuous batching over a paged KV cache with copy-on-write forks.

Implements `RolloutEngine` (see arpo/rollout/interface.py). Each `step()` serves the runnable sequences in
arrival order: a sequence with uncomputed tokens (new prompt, tool result after `resume`) gets a
prefill chunk, the others one decode token, all in one forward pass; then every sequence whose
tokens are all computed samples one token. When the cache runs out of blocks the latest
sequences are preempted (paused ones first): their blocks are freed and their tokens recomputed
when they run again (`stats["recomputed_tokens"]`).

Forks: the logits at the end of every prefill are kept, so a fork there (right after a tool result)
computes nothing; a fork over tokens not yet computed (right after `resume`) first computes them
once in the parent; a fork anywhere else re-feeds one token per child (counted as recomputed).
Children share the parent's blocks; the partially filled tail block is copied on first write.
"""

from __future__ import annotations

import dataclasses

import torch

from arpo.config.rollout import SamplerConfig
from arpo.rollout.engine_common import SequenceBook, fork_point
from arpo.rollout.interface import SamplingParams, TokenEvent

from .block_manager import BlockManager, OutOfBlocksError
from .model_runner import Chunk, ModelRunner
from .sampling import sample_next
from .sequence import Sequence


class NativeEngine(SequenceBook):
    def __init__(self, model, tokenizer=None, cfg: SamplerConfig | None = None):
        self.cfg = cfg = cfg or SamplerConfig()
        num_blocks = cfg.num_blocks or -(-cfg.kv_cache_tokens // cfg.block_size)
        device = None if cfg.device == "auto" else torch.device(cfg.device)
        dtype = None if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        self.runner = ModelRunner(
            model, num_blocks, cfg.block_size, device, dtype, cfg.compile_decode, cfg.max_batch_seqs
        )
        self.blocks = BlockManager(num_blocks, cfg.block_size)
        self.tokenizer = tokenizer
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.generator = torch.Generator(device=self.runner.device)
        self.generator.manual_seed(cfg.seed)
        self.sequences: dict[int, Sequence] = {}
        self._arrivals = 0
        self.stats = dict.fromkeys(
            (
                "steps",
                "prefill_tokens",
                "decode_tokens",
                "recomputed_tokens",
                "sampled_tokens",
                "forks",
                "preemptions",
                "peak_used_blocks",
            ),
            0,
        )

    # ---- RolloutEngine API -------------------------------------------------------------------
    def add(self, prompt_ids: list[int], params: SamplingParams) -> int:
        self._check_new(prompt_ids, params)
        seq_id = self.blocks.add_sequence()
        self.sequences[seq_id] = Sequence(
            seq_id,
            list(prompt_ids),
            params,
            self._new_generator(params.seed),
            self._next_arrival(),
            turn_start=len(prompt_ids),  # a stop string must end in generated text, not in the prompt
        )
        return seq_id

    def step(self) -> list[TokenEvent]:
        work, ready = self._schedule()
        logits = self._compute(work)
        events = self._sample(ready, logits) if ready else []
        self.stats["steps"] += 1
        return events

    def fork(
        self, seq_id: int, n: int, num_tokens: int | None = None, seeds: list[int | None] | None = None
    ) -> list[int]:
        parent = self._get(seq_id)
        t = fork_point(seq_id, len(parent.tokens), n, num_tokens, seeds)
        if parent.status != "finished" and parent.num_computed < t:
            self._compute_prefix(parent, t)  # once, in the parent, so the children share it
        shared = min(t, parent.num_computed)
        children = []
        for i, child_id in enumerate(self.blocks.fork(seq_id, n, shared)):
            seed = seeds[i] if seeds is not None else None
            child = Sequence(
                child_id,
                parent.tokens[:t],
                dataclasses.replace(parent.params, seed=seed),
                self._new_generator(seed),
                self._next_arrival(),
                generated=parent.generated[:t],
                num_computed=shared,
                recompute_until=min(t, parent.recompute_until),
                turn_start=parent.turn_start if t > parent.turn_start else t,
            )
            if shared == t and t in parent.snapshots:
                child.snapshots[t] = parent.snapshots[t]
            elif shared == t:  # no logits kept at this point: feed the last token again
                child.num_computed = t - 1
                child.recompute_until = max(child.recompute_until, t)
            self.sequences[child_id] = child
            children.append(child_id)
        self.stats["forks"] += n
        return children

    def release(self, seq_id: int) -> None:
        self._get(seq_id)
        self.blocks.remove(seq_id)
        del self.sequences[seq_id]

    def sleep(self) -> None:
        """Kept as it is: the native sampler's cache is sized by `sampler.kv_cache_tokens`, and its
        weights are the policy's own (or a copy under FSDP2)."""

    def close(self) -> None:
        """Nothing to shut down: the cache and the model are ordinary tensors."""

    def update_weights(self, weights) -> None:
        """Copy (name, full tensor) pairs into the model the engine runs; tensors it already shares
        with the trainer (a single-process run) are skipped. A bfloat16 engine then recasts them."""
        params = dict(self.runner.model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights:
                if params[name].data_ptr() != tensor.data_ptr():
                    params[name].copy_(tensor)
        if self.runner.weights.copied:
            self.runner.weights.refresh()

    # ---- read-only helpers ----------------------------------------------------------------------
    @property
    def kv_cache_bytes_used(self) -> int:
        return self.blocks.num_used_blocks * self.runner.kv_cache_bytes_per_block

    # ---- scheduling ---------------------------------------------------------------------------
    def _schedule(self) -> tuple[list[tuple[Sequence, Chunk]], list[tuple[Sequence, int | None]]]:
        """This step's (sequence, chunk) pairs to compute, and (sequence, logits row) pairs to sample
        (row None: sample from the sequence's kept logits)."""
        running = sorted(
            (s for s in self.sequences.values() if s.status == "running"), key=lambda s: s.arrival
        )
        work, ready, scheduled = [], [], set()
        budget = self.cfg.max_prefill_tokens
        rows = 0
        for seq in running:
            if len(scheduled) >= self.cfg.max_batch_seqs:
                break
            end = len(seq.tokens)
            if seq.num_computed == end:  # a fork child at a kept prefill end
                ready.append((seq, None))
                scheduled.add(seq.seq_id)
                continue
            start = seq.num_computed
            if end - start > 1 or seq.in_prefill:
                end = min(end, start + budget)
                if end == start:
                    continue
            if not self._make_room(seq, start, end, scheduled):
                break  # queue: the earlier sequences of this step hold the blocks
            # Copy now: a later preemption may free a source block and hand it out again.
            self.runner.copy_blocks(self.blocks.prepare_write(seq.seq_id, start, end))
            if end - start > 1 or seq.in_prefill:
                budget -= end - start
            last = end == len(seq.tokens)
            work.append((seq, self._chunk(seq, start, end, want_logits=last)))
            if last:
                ready.append((seq, rows))
                rows += 1
            scheduled.add(seq.seq_id)
        self.stats["peak_used_blocks"] = max(self.stats["peak_used_blocks"], self.blocks.num_used_blocks)
        return work, ready

    def _make_room(self, seq: Sequence, start: int, end: int, keep: set[int]) -> bool:
        """Preempt sequences until [start, end) of `seq` fits; False when only `keep` holds the rest."""
        needed = self.blocks.blocks_needed(seq.seq_id, start, end)
        if needed > self.blocks.num_blocks:
            raise OutOfBlocksError(
                f"sequence {seq.seq_id} needs {needed} KV blocks but the cache has {self.blocks.num_blocks}; "
                "raise sampler.num_blocks / kv_cache_tokens"
            )
        while self.blocks.num_free_blocks < self.blocks.blocks_needed(seq.seq_id, start, end):
            victims = [
                s
                for s in self.sequences.values()
                if s.num_computed and s.seq_id != seq.seq_id and s.seq_id not in keep
            ]
            if not victims:
                return False
            victim = max(victims, key=lambda s: (s.status == "paused", s.arrival))
            self.blocks.free(victim.seq_id)
            victim.drop_cache()
            self.stats["preemptions"] += 1
        return True

    def _chunk(self, seq: Sequence, start: int, end: int, want_logits: bool) -> Chunk:
        recomputed = max(0, min(end, seq.recompute_until) - start)
        self.stats["recomputed_tokens"] += recomputed
        kind = "prefill_tokens" if end - start > 1 or seq.in_prefill else "decode_tokens"
        self.stats[kind] += end - start
        return Chunk(
            seq.tokens[start:end],
            start,
            list(self.blocks.block_table(seq.seq_id)),
            self.blocks.slots(seq.seq_id, start, end),
            want_logits,
        )

    def _compute(self, work: list[tuple[Sequence, Chunk]]) -> torch.Tensor | None:
        if not work:
            return None
        logits = self.runner.forward([chunk for _, chunk in work])
        for seq, chunk in work:
            seq.num_computed = chunk.start + len(chunk.token_ids)
        return logits

    def _compute_prefix(self, seq: Sequence, t: int) -> None:
        """Compute `seq`'s tokens up to `t` now (before a fork) and keep the logits at `t`."""
        while seq.num_computed < t:
            start = seq.num_computed
            end = min(t, start + self.cfg.max_prefill_tokens)
            if not self._make_room(seq, start, end, set()):
                raise OutOfBlocksError(
                    f"no KV blocks left to compute sequence {seq.seq_id} before forking it"
                )
            self.runner.copy_blocks(self.blocks.prepare_write(seq.seq_id, start, end))
            seq.in_prefill = True
            logits = self.runner.forward([self._chunk(seq, start, end, want_logits=end == t)])
            seq.num_computed = end
        seq.snapshots[t] = logits[0]
        self.stats["peak_used_blocks"] = max(self.stats["peak_used_blocks"], self.blocks.num_used_blocks)

    # ---- sampling -----------------------------------------------------------------------------
    def _sample(
        self, ready: list[tuple[Sequence, int | None]], logits: torch.Tensor | None
    ) -> list[TokenEvent]:
        rows = [seq.snapshots[len(seq.tokens)] if row is None else logits[row] for seq, row in ready]
        in_order = (
            logits is not None and len(ready) == logits.shape[0] and all(r is not None for _, r in ready)
        )
        stacked = logits if in_order else torch.stack(rows)  # the usual step: no copy of the logits
        params = [seq.params for seq, _ in ready]
        gens = [seq.generator or self.generator for seq, _ in ready]
        tokens, logprobs, entropies = (x.tolist() for x in sample_next(stacked, params, gens))
        events = []
        for (seq, row), tok, lp, ent, seq_logits in zip(ready, tokens, logprobs, entropies, rows):
            if seq.in_prefill:
                seq.snapshots[len(seq.tokens)] = seq_logits if row is None else seq_logits.clone()
                seq.in_prefill = False
            seq.tokens.append(tok)
            seq.generated.append(True)
            seq.num_generated += 1
            self._update_status(seq, tok)
            events.append(TokenEvent(seq.seq_id, tok, lp, ent, seq.status, seq.finish_reason))
        self.stats["sampled_tokens"] += len(ready)
        return events

    # ---- SequenceBook hooks -------------------------------------------------------------------
    def _set_params(self, seq: Sequence, params: SamplingParams) -> None:
        if params.seed is not None and params.seed != seq.params.seed:
            seq.generator = self._new_generator(params.seed)
        seq.params = params

    def _on_resume(self, seq: Sequence) -> None:
        seq.in_prefill = True  # the appended tokens are prefilled on the next step

    def _on_finish(self, seq: Sequence) -> None:
        self.blocks.free(seq.seq_id)
        seq.drop_cache()

    # ---- helpers ------------------------------------------------------------------------------
    def _next_arrival(self) -> int:
        self._arrivals += 1
        return self._arrivals

    def _new_generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        gen = torch.Generator(device=self.runner.device)
        gen.manual_seed(seed)
        return gen

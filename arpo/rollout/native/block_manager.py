"""Paged KV cache bookkeeping: fixed-size blocks, per-sequence block tables, reference counts.

A sequence's token at position p lives in slot `table[p // block_size] * block_size + p % block_size`.
`fork` gives children the parent's leading blocks with their counts incremented; a block shared
by several sequences is copied the first time one of them writes into it (copy-on-write), so only
a partially filled tail block is ever copied. The manager only does the accounting: the caller
copies the KV data for the (src, dst) pairs it returns.
"""

from __future__ import annotations

from arpo.errors import ArpoError


class OutOfBlocksError(ArpoError):
    """Raised when an allocation needs more free blocks than the cache has."""


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 1 or block_size < 1:
            raise ArpoError(
                f"KV cache needs num_blocks >= 1 and block_size >= 1, got {num_blocks}, {block_size}"
            )
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free = list(range(num_blocks - 1, -1, -1))  # a stack: pop() hands out low ids first
        self._ref = [0] * num_blocks
        self._tables: dict[int, list[int]] = {}
        self._lengths: dict[int, int] = {}  # tokens each sequence's blocks hold
        self._next_id = 0
        self.peak_used_blocks = 0

    # ---- accounting -------------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self._free)

    @property
    def num_shared_blocks(self) -> int:
        return sum(1 for r in self._ref if r > 1)

    def block_table(self, seq_id: int) -> list[int]:
        return self._tables[seq_id]

    def length(self, seq_id: int) -> int:
        return self._lengths[seq_id]

    def __contains__(self, seq_id: int) -> bool:
        return seq_id in self._tables

    # ---- sequences ----------------------------------------------------------------------------
    def add_sequence(self) -> int:
        """A new sequence with no blocks; returns its id."""
        seq_id = self._next_id
        self._next_id += 1
        self._tables[seq_id] = []
        self._lengths[seq_id] = 0
        return seq_id

    def fork(self, seq_id: int, n: int, num_tokens: int | None = None) -> list[int]:
        """`n` new sequences sharing the blocks that hold `seq_id`'s first `num_tokens` tokens."""
        length = self._lengths[seq_id] if num_tokens is None else num_tokens
        if not 0 <= length <= self._lengths[seq_id]:
            raise ArpoError(
                f"cannot fork at {length} tokens: sequence {seq_id} holds {self._lengths[seq_id]}"
            )
        shared = self._tables[seq_id][: -(-length // self.block_size)]
        children = []
        for _ in range(n):
            child = self.add_sequence()
            self._tables[child] = list(shared)
            self._lengths[child] = length
            for b in shared:
                self._ref[b] += 1
            children.append(child)
        return children

    def free(self, seq_id: int) -> None:
        """Drop the sequence's blocks (it stays known, empty: preemption refills it later)."""
        for b in self._tables[seq_id]:
            self._release_block(b)
        self._tables[seq_id] = []
        self._lengths[seq_id] = 0

    def _release_block(self, b: int) -> None:
        self._ref[b] -= 1
        if self._ref[b] == 0:
            self._free.append(b)

    def remove(self, seq_id: int) -> None:
        self.free(seq_id)
        del self._tables[seq_id], self._lengths[seq_id]

    # ---- writes -------------------------------------------------------------------------------
    def blocks_needed(self, seq_id: int, start: int, end: int) -> int:
        """Free blocks that `prepare_write(seq_id, start, end)` would take."""
        table, bs = self._tables[seq_id], self.block_size
        new = max(0, -(-end // bs) - len(table))
        copies = sum(1 for i in range(start // bs, min(len(table), -(-end // bs))) if self._ref[table[i]] > 1)
        return new + copies

    def prepare_write(self, seq_id: int, start: int, end: int) -> list[tuple[int, int]]:
        """Make positions [start, end) writable: grow the table and copy shared blocks in that range.

        Returns the (src, dst) block pairs whose KV data the caller must copy before writing.
        Raises OutOfBlocksError (changing nothing) when the free blocks do not suffice.
        """
        if start > self._lengths[seq_id]:
            raise ArpoError(f"write at {start} leaves a gap: sequence {seq_id} holds {self._lengths[seq_id]}")
        needed = self.blocks_needed(seq_id, start, end)
        if needed > len(self._free):
            raise OutOfBlocksError(f"need {needed} KV blocks, {len(self._free)} free")
        table, bs = self._tables[seq_id], self.block_size
        copies = []
        for i in range(start // bs, min(len(table), -(-end // bs))):
            if self._ref[table[i]] > 1:
                dst = self._free.pop()
                self._ref[table[i]] -= 1
                self._ref[dst] = 1
                copies.append((table[i], dst))
                table[i] = dst
        while len(table) * bs < end:
            b = self._free.pop()
            self._ref[b] = 1
            table.append(b)
        # Tokens past `end` (an overwritten tail) are gone: the sequence now holds exactly `end`.
        while len(table) > -(-end // bs):
            self._release_block(table.pop())
        self._lengths[seq_id] = end
        self.peak_used_blocks = max(self.peak_used_blocks, self.num_used_blocks)
        return copies

    def slots(self, seq_id: int, start: int, end: int) -> list[int]:
        table, bs = self._tables[seq_id], self.block_size
        return [table[p // bs] * bs + p % bs for p in range(start, end)]

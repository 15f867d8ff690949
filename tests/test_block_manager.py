import random

import pytest

from arpo.rollout.native.block_manager import BlockManager, OutOfBlocksError


def check_invariants(bm: BlockManager):
    refs = [0] * bm.num_blocks
    for seq_id in list(bm._tables):
        table = bm.block_table(seq_id)
        assert len(table) == -(-bm.length(seq_id) // bm.block_size)
        for b in table:
            refs[b] += 1
    assert refs == bm._ref
    assert sorted(bm._free) == [b for b in range(bm.num_blocks) if refs[b] == 0]
    assert bm.num_used_blocks + bm.num_free_blocks == bm.num_blocks
    assert bm.num_shared_blocks == sum(r > 1 for r in refs)


def test_slots_follow_the_block_table():
    bm = BlockManager(num_blocks=8, block_size=4)
    s = bm.add_sequence()
    assert bm.prepare_write(s, 0, 6) == []
    table = bm.block_table(s)
    assert len(table) == 2 and bm.length(s) == 6
    assert bm.slots(s, 0, 6) == [table[0] * 4 + i for i in range(4)] + [table[1] * 4, table[1] * 4 + 1]
    bm.prepare_write(s, 6, 9)
    assert len(bm.block_table(s)) == 3 and bm.num_used_blocks == 3
    check_invariants(bm)


def test_fork_shares_full_blocks_and_copies_only_the_tail_on_write():
    bm = BlockManager(num_blocks=16, block_size=4)
    parent = bm.add_sequence()
    bm.prepare_write(parent, 0, 10)  # blocks: full, full, tail with 2 tokens
    children = bm.fork(parent, 3)
    assert bm.num_used_blocks == 3 and bm.num_shared_blocks == 3
    tail = bm.block_table(parent)[2]
    copies = bm.prepare_write(children[0], 10, 11)
    assert len(copies) == 1 and copies[0][0] == tail
    assert bm.block_table(children[0])[:2] == bm.block_table(parent)[:2]
    assert bm.block_table(children[0])[2] == copies[0][1] != tail
    # Writing past the tail of the parent: the block is still shared with two children -> copied.
    assert len(bm.prepare_write(parent, 10, 13)) == 1
    assert bm.prepare_write(children[1], 10, 11)[0][0] == tail  # still shared with children[2]
    assert bm.prepare_write(children[2], 10, 11) == []  # the last owner writes in place
    assert bm.num_used_blocks == 2 + 4 + 1  # two shared full blocks, four tails, parent's new block
    check_invariants(bm)


def test_fork_at_an_earlier_point_shares_only_the_leading_blocks():
    bm = BlockManager(num_blocks=16, block_size=4)
    parent = bm.add_sequence()
    bm.prepare_write(parent, 0, 14)
    (child,) = bm.fork(parent, 1, num_tokens=5)
    assert bm.length(child) == 5 and bm.block_table(child) == bm.block_table(parent)[:2]
    with pytest.raises(Exception, match="cannot fork"):
        bm.fork(parent, 1, num_tokens=15)
    check_invariants(bm)


def test_thousand_token_fork_into_eight_grows_by_at_most_eight_blocks():
    bm = BlockManager(num_blocks=128, block_size=16)
    parent = bm.add_sequence()
    bm.prepare_write(parent, 0, 1000)
    before = bm.num_used_blocks
    children = bm.fork(parent, 8)
    assert bm.num_used_blocks == before
    for seq in [parent, *children]:
        bm.prepare_write(seq, 1000, 1001)
    assert bm.num_used_blocks - before <= 8
    assert bm.num_shared_blocks == 1000 // 16
    check_invariants(bm)


def test_out_of_blocks_raises_and_changes_nothing():
    bm = BlockManager(num_blocks=4, block_size=4)
    a = bm.add_sequence()
    bm.prepare_write(a, 0, 12)
    (b,) = bm.fork(a, 1)
    bm.prepare_write(b, 12, 13)  # takes the last free block
    state = (list(bm._free), list(bm._ref), bm.block_table(a)[:], bm.block_table(b)[:], bm.length(b))
    assert bm.blocks_needed(a, 12, 17) == 2
    with pytest.raises(OutOfBlocksError):
        bm.prepare_write(a, 12, 17)
    assert state == (list(bm._free), list(bm._ref), bm.block_table(a), bm.block_table(b), bm.length(b))
    check_invariants(bm)


def test_accounting_returns_to_zero_after_many_forks_and_frees():
    rng = random.Random(0)
    bm = BlockManager(num_blocks=400, block_size=4)
    live = []
    for _ in range(300):
        op = rng.random()
        if op < 0.25 or not live:
            s = bm.add_sequence()
            bm.prepare_write(s, 0, rng.randint(1, 20))
            live.append(s)
        elif op < 0.5:
            parent = rng.choice(live)
            live += bm.fork(parent, rng.randint(1, 4), rng.randint(0, bm.length(parent)))
        elif op < 0.8:
            s = rng.choice(live)
            n = bm.length(s)
            if bm.blocks_needed(s, n, n + 5) <= bm.num_free_blocks:
                bm.prepare_write(s, n, n + rng.randint(1, 5))
        elif op < 0.9:
            s = live.pop(rng.randrange(len(live)))
            bm.remove(s)
        else:
            bm.free(rng.choice(live))
        check_invariants(bm)
    assert bm.peak_used_blocks > 0
    for s in live:
        bm.remove(s)
    assert bm.num_used_blocks == 0 and bm.num_shared_blocks == 0 and bm.num_free_blocks == 400

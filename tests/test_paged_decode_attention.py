"""`torch.ops.arpo.paged_decode_attention` (csrc/) against gather + SDPA, and its bad-input checks."""

import os
import tempfile

import pytest
import torch
import torch.nn.functional as F

from arpo.rollout.native import kv_ops


@pytest.fixture(scope="module")
def ext_ops():
    build_dir = os.path.join(tempfile.gettempdir(), "arpo_block_ops_build")  # cached between runs
    ops = kv_ops.build_extension(build_dir)
    if not hasattr(ops, "paged_decode_attention"):
        pytest.fail("the built extension lacks paged_decode_attention: rebuild it (make setup)")
    return ops


def reference(query, k_cache, v_cache, tables, ctx_lens):
    out = []
    for b, ctx in enumerate(ctx_lens.tolist()):
        keys = k_cache[tables[b]].flatten(0, 1)[:ctx].transpose(0, 1)[None].float()
        values = v_cache[tables[b]].flatten(0, 1)[:ctx].transpose(0, 1)[None].float()
        q = query[b][None, :, None].float()
        out.append(F.scaled_dot_product_attention(q, keys, values, enable_gqa=True)[0, :, 0])
    return torch.stack(out)


def random_inputs(dtype, heads=6, kv_heads=2, dim=16, block_size=4, blocks=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    k_cache = torch.randn(blocks, block_size, kv_heads, dim, generator=g).to(dtype)
    v_cache = torch.randn(blocks, block_size, kv_heads, dim, generator=g).to(dtype)
    ctx_lens = torch.tensor([1, 4, 5, 23, 17])  # one token, a full block, partial tails
    width = 7
    tables = torch.randperm(blocks, generator=g)[: len(ctx_lens) * width].view(len(ctx_lens), width)
    query = torch.randn(len(ctx_lens), heads, dim, generator=g).to(dtype)
    return query, k_cache, v_cache, tables, ctx_lens


@pytest.mark.parametrize("dim", [16, 64, 128])  # 64 and 128 run loops of fixed length, 16 the general ones
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_matches_gather_and_sdpa(ext_ops, dtype, atol, dim):
    query, k_cache, v_cache, tables, ctx_lens = random_inputs(dtype, dim=dim)
    got = ext_ops.paged_decode_attention(query, k_cache, v_cache, tables, ctx_lens, dim**-0.5)
    assert got.dtype == dtype and got.shape == query.shape
    torch.testing.assert_close(
        got.float(), reference(query, k_cache, v_cache, tables, ctx_lens), atol=atol, rtol=0
    )


def test_large_scores_and_long_contexts(ext_ops):
    """Peaked softmaxes (scores of hundreds) over contexts of many blocks, a batch of one included."""
    query, k_cache, v_cache, tables, _ = random_inputs(torch.float32, dim=64, block_size=16, blocks=120)
    ctx_lens = torch.tensor([112, 1, 97, 60, 33])
    for q in (query, query * 30):
        got = ext_ops.paged_decode_attention(q, k_cache, v_cache, tables, ctx_lens, 0.125)
        torch.testing.assert_close(got, reference(q, k_cache, v_cache, tables, ctx_lens), atol=1e-5, rtol=0)


def test_same_result_however_threads_split_the_work(ext_ops):
    """A thread may take only some of a sequence's kv heads; each head's sums are the same anyway."""
    query, k_cache, v_cache, tables, ctx_lens = random_inputs(torch.float32, heads=9, kv_heads=3, dim=64)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            for rows in (slice(0, 1), slice(0, 5)):
                inputs = (query[rows], k_cache, v_cache, tables[rows], ctx_lens[rows])
                results.append(ext_ops.paged_decode_attention(*inputs, 0.1))
    finally:
        torch.set_num_threads(threads)
    for i, got in enumerate(results):
        assert torch.equal(got, results[i % 2])


def test_entries_past_the_context_are_never_read(ext_ops):
    query, k_cache, v_cache, tables, ctx_lens = random_inputs(torch.float32, seed=1)
    tables[:, 6] = 10**6  # the last table column is past every context: any read would be out of range
    before = ext_ops.paged_decode_attention(query, k_cache, v_cache, tables, ctx_lens, 0.25)
    torch.testing.assert_close(before, reference(query, k_cache, v_cache, tables.clamp(max=39), ctx_lens))


def test_rejects_bad_input(ext_ops):
    query, k_cache, v_cache, tables, ctx_lens = random_inputs(torch.float32)
    with pytest.raises(RuntimeError, match="block id out of range"):
        ext_ops.paged_decode_attention(query, k_cache, v_cache, tables + 40, ctx_lens, 1.0)
    with pytest.raises(RuntimeError, match="context length outside the block table"):
        ext_ops.paged_decode_attention(query, k_cache, v_cache, tables, ctx_lens + 100, 1.0)
    with pytest.raises(RuntimeError, match="multiple of kv heads"):
        ext_ops.paged_decode_attention(query[:, :5], k_cache, v_cache, tables, ctx_lens, 1.0)

import os
import tempfile

import pytest
import torch

from arpo.rollout.native import kv_ops

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def random_cache(dtype, layers=3, blocks=10, block_size=4, heads=2, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(layers, 2, blocks, block_size, heads, dim, generator=g).to(dtype)


def copy_blocks_reference(kv, src, dst):
    for s, d in zip(src.tolist(), dst.tolist()):
        for layer in range(kv.shape[0]):
            for j in range(2):
                kv[layer, j, d] = kv[layer, j, s].clone()


def write_kv_reference(k_cache, v_cache, key, value, slots):
    bs = k_cache.shape[1]
    for t, slot in enumerate(slots.tolist()):
        k_cache[slot // bs, slot % bs] = key[t]
        v_cache[slot // bs, slot % bs] = value[t]


@pytest.fixture(scope="module")
def ext_ops():
    build_dir = os.path.join(tempfile.gettempdir(), "arpo_block_ops_build")  # cached between runs
    return kv_ops.build_extension(build_dir)


def make_write_inputs(dtype, tokens=7):
    kv = random_cache(dtype)
    g = torch.Generator().manual_seed(1)
    key = torch.randn(tokens, 2, 8, generator=g).to(dtype)
    value = torch.randn(tokens, 2, 8, generator=g).to(dtype)
    slots = torch.tensor([5, 0, 39, 7, 12, 13, 22][:tokens], dtype=torch.long)
    return kv, key, value, slots


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_fallbacks_match_loops(dtype):
    kv = random_cache(dtype)
    expected = kv.clone()
    src, dst = torch.tensor([1, 4, 4]), torch.tensor([7, 2, 9])
    copy_blocks_reference(expected, src, dst)
    kv_ops.copy_blocks_torch(kv, src, dst)
    assert torch.equal(kv, expected)

    kv, key, value, slots = make_write_inputs(dtype)
    expected = kv.clone()
    write_kv_reference(expected[1, 0], expected[1, 1], key, value, slots)
    kv_ops.write_kv_torch(kv[1, 0], kv[1, 1], key, value, slots)
    assert torch.equal(kv, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extension_matches_fallback(ext_ops, dtype):
    a, b = random_cache(dtype, seed=3), random_cache(dtype, seed=3)
    src, dst = torch.tensor([0, 3, 8, 3]), torch.tensor([5, 1, 2, 6])
    ext_ops.copy_blocks(a, src, dst)
    kv_ops.copy_blocks_torch(b, src, dst)
    assert torch.equal(a, b)

    kv, key, value, slots = make_write_inputs(dtype)
    ref = kv.clone()
    # A non-contiguous key (a transposed view) must be handled too.
    key_t = key.transpose(0, 1).contiguous().transpose(0, 1)
    ext_ops.write_kv(kv[2, 0], kv[2, 1], key_t, value, slots)
    kv_ops.write_kv_torch(ref[2, 0], ref[2, 1], key, value, slots)
    assert torch.equal(kv, ref)


def test_extension_rejects_bad_input(ext_ops):
    kv = random_cache(torch.float32)
    with pytest.raises(RuntimeError, match="block id out of range"):
        ext_ops.copy_blocks(kv, torch.tensor([0]), torch.tensor([10]))
    _, key, value, slots = make_write_inputs(torch.float32)
    with pytest.raises(RuntimeError, match="slot out of range"):
        ext_ops.write_kv(kv[0, 0], kv[0, 1], key, value, slots + 40)
    with pytest.raises(RuntimeError, match="slot out of range"):
        ext_ops.write_kv(kv[0, 0], kv[0, 1], key, value, slots - 1)


def test_copy_blocks_wrapper_takes_pairs():
    kv = random_cache(torch.float32)
    expected = kv.clone()
    copy_blocks_reference(expected, torch.tensor([2, 3]), torch.tensor([8, 9]))
    kv_ops.copy_blocks(kv, [(2, 8), (3, 9)])
    kv_ops.copy_blocks(kv, [])
    assert torch.equal(kv, expected)

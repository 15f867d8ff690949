import os
import shutil

import pytest
import torch

from arpo.errors import ModelLoadError
from arpo.models import ModelConfig, export_hf, load_model, resolve, tiny_model
from arpo.models.tiny import TINY_FAMILIES
from tests.conftest import requires_smollm2

PROMPT = (
    "<|im_start|>user\nWhat is 17 * 23?<|im_end|>\n<|im_start|>assistant\n<python>print(17 * 23)</python>"
)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tiny_models_run_and_are_deterministic(family):
    model, tok = tiny_model(family, seed=3)
    again, _ = tiny_model(family, seed=3)
    other, _ = tiny_model(family, seed=4)
    assert model.config.model_type == family
    assert model.config.vocab_size == len(tok)
    ids = tok(PROMPT, return_tensors="pt").input_ids
    assert tok.decode(ids[0]) == PROMPT  # byte-level: exact round trip
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(logits).all()
    assert torch.equal(logits, again(ids).logits)
    assert not torch.allclose(logits, other(ids).logits)


def test_tiny_family_specifics():
    assert tiny_model("qwen2")[0].model.layers[0].self_attn.q_proj.bias is not None
    assert hasattr(tiny_model("qwen3")[0].model.layers[0].self_attn, "q_norm")
    llama = tiny_model("llama")[0]
    assert llama.lm_head.weight.data_ptr() == llama.model.embed_tokens.weight.data_ptr()


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_export_then_reload_gives_identical_logits(tmp_path, family):
    model, tok = tiny_model(family, seed=1)
    out = export_hf(model, tok, str(tmp_path / "hf"))
    reloaded, tok2 = load_model(ModelConfig(path=out))
    ids = tok(PROMPT, return_tensors="pt").input_ids
    torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, rtol=0, atol=1e-5)
    assert tok2(PROMPT).input_ids == tok(PROMPT).input_ids
    assert tok2.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == (
        tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    )


def test_tiny_by_name_and_bad_paths(tmp_path):
    model, tok = load_model(ModelConfig(path="tiny-qwen3", seed=2))
    assert model.config.model_type == "qwen3"
    with pytest.raises(ModelLoadError, match="unknown tiny model"):
        resolve("tiny-gpt9")
    with pytest.raises(ModelLoadError, match="model path not found: /nonexistent/x"):
        load_model(ModelConfig(path="/nonexistent/x"))
    with pytest.raises(ModelLoadError, match="empty"):
        resolve("")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(ModelConfig(path=str(tmp_path / "empty")))
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"\0" * 10)
    with pytest.raises(ModelLoadError, match=r"\.gguf"):
        resolve(str(weights))


def test_corrupt_safetensors_and_config(tmp_path):
    model, tok = tiny_model("llama")
    out = export_hf(model, tok, str(tmp_path / "hf"))
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    path = bad / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match="corrupt safetensors"):
        load_model(ModelConfig(path=str(bad)))
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json: not valid JSON"):
        load_model(ModelConfig(path=str(bad)))
    os.remove(bad / "model.safetensors")
    (bad / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="no weight files"):
        load_model(ModelConfig(path=str(bad)))


def test_corrupt_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        load_model(ModelConfig(path=str(fake)))
    truncated = tmp_path / "trunc.gguf"
    truncated.write_bytes(b"GGUF" + b"\3\0\0\0" + b"\xff" * 20)
    with pytest.raises(ModelLoadError, match="could not load"):
        load_model(ModelConfig(path=str(truncated)))


@pytest.mark.slow
@requires_smollm2
def test_smollm2_from_gguf_exports_to_hf(tmp_path):
    model, tok = load_model(ModelConfig(path="smollm2-135m-instruct"))
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert resolve("smollm2-135m-instruct").kind == "gguf"
    out = export_hf(model, tok, str(tmp_path / "smol"))
    reloaded, tok2 = load_model(ModelConfig(path=out))
    ids = tok(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, model(ids).logits, rtol=0, atol=1e-5)
    assert tok2(PROMPT).input_ids == tok(PROMPT).input_ids
    # A GGUF loaded from its path directly, too.
    direct, _ = load_model(ModelConfig(path=resolve("smollm2-135m-instruct").path))
    with torch.no_grad():
        torch.testing.assert_close(direct(ids).logits, model(ids).logits, rtol=0, atol=0)

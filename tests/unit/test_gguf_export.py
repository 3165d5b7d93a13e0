"""GGUF export of a tiny random llama: logits survive the round trip through transformers' loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.export.gguf import GgufExportError, compare_gguf, export_gguf, verify_gguf

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A parcel was delivered to the wrong address on Tuesday.",
    "Please reset my password, the login page keeps failing!",
    "Invoices are sent at the end of every month, 2024-05-31.",
    "Numbers like 12345 and symbols like #@% are tokenized too.",
]
SAMPLE = "The courier lost my parcel twice; refund 42 euros please."


def build_tiny_llama(folder: Path, *, tied: bool = True, seed: int = 0) -> Path:
    """A 2-layer, 64-wide llama with grouped-query attention and a freshly trained byte-level BPE."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(SENTENCES * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<|endoftext|>"
    )
    tokenizer.pad_token = tokenizer.eos_token
    config = LlamaConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        initializer_range=0.1,  # logits large enough that a wrong Q/K permutation shows above f16 rounding
        tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # norms of exactly 1 would hide a norm written to the wrong place
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def test_f32_export_reproduces_logits_and_tokenizer(tiny_llama: Path, tmp_path: Path) -> None:
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    out = tmp_path / "gguf" / "tiny.gguf"
    result = export_gguf(tiny_llama, out, dtype="f32")
    assert result.path == out and result.bytes == out.stat().st_size
    assert result.tensors == 2 + 9 * 2  # tied: no output.weight
    assert [p.name for p in out.parent.iterdir()] == ["tiny.gguf"]  # no temporary left behind

    reader = GGUFReader(out)
    fields = reader.fields
    assert fields["general.architecture"].contents() == "llama"
    assert fields["llama.attention.head_count_kv"].contents() == 2
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    # gguf's SpecialVocab finds no add-bos/eos setting here; what the tokenizer does is written.
    assert fields["tokenizer.ggml.add_bos_token"].contents() is False
    assert fields["tokenizer.ggml.add_eos_token"].contents() is False
    assert fields["tokenizer.ggml.bos_token_id"].contents() == 1  # <|im_start|>
    assert "output.weight" not in {t.name for t in reader.tensors}

    comparison = compare_gguf(tiny_llama, out, [SAMPLE, SENTENCES[0]])
    assert comparison.max_abs_diff < 1e-4
    assert comparison.same_next_token

    folder_tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    gguf_tokenizer = AutoTokenizer.from_pretrained(out.parent, gguf_file=out.name)
    text = f"<|im_start|>user\n{SAMPLE}<|im_end|>"
    assert gguf_tokenizer(text)["input_ids"] == folder_tokenizer(text)["input_ids"]
    assert gguf_tokenizer.eos_token == "<|im_end|>"


def test_f16_untied_export_is_close(tmp_path: Path) -> None:
    import gguf

    folder = build_tiny_llama(tmp_path / "untied", tied=False, seed=1)
    out = tmp_path / "untied.gguf"
    result = export_gguf(folder, out)
    assert result.dtype == "f16" and result.tensors == 3 + 9 * 2
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(out).tensors}
    assert types["output.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert verify_gguf(folder, out, [SAMPLE]) < 5e-2


def test_tensor_names_come_from_gguf_package_and_other_llama_tensors_are_refused() -> None:
    """gguf-py's llama map names the tensors; what a plain llama lacks (biases, MoE experts,
    layers past the config's) is refused, and rotary buffers are left out."""
    import gguf

    from lmforge.export.gguf import _gguf_name

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, 2)
    assert _gguf_name(names, "model.layers.1.self_attn.o_proj.weight") == (
        gguf.MODEL_TENSOR.ATTN_OUT,
        "blk.1.attn_output.weight",
    )
    assert _gguf_name(names, "lm_head.weight") == (gguf.MODEL_TENSOR.OUTPUT, "output.weight")
    assert _gguf_name(names, "model.layers.0.self_attn.rotary_emb.inv_freq") is None
    for name in (
        "model.layers.2.mlp.up_proj.weight",
        "model.layers.0.self_attn.q_proj.bias",
        "model.layers.0.block_sparse_moe.gate.weight",
    ):
        with pytest.raises(GgufExportError, match="unexpected tensor"):
            _gguf_name(names, name)


def test_copies_tokenizer_from_source_gguf(tiny_llama: Path, tmp_path: Path) -> None:
    from gguf import GGUFReader

    source = export_gguf(tiny_llama, tmp_path / "source.gguf", dtype="f32").path
    copy = export_gguf(tiny_llama, tmp_path / "copy.gguf", dtype="f32", source_gguf=source).path
    before, after = GGUFReader(source).fields, GGUFReader(copy).fields
    keys = [k for k in before if k.startswith("tokenizer.")]
    assert keys and keys == [k for k in after if k.startswith("tokenizer.")]
    for key in keys:
        assert before[key].contents() == after[key].contents(), key


def test_mistral_without_sliding_window_exports_as_llama(tiny_llama: Path, tmp_path: Path) -> None:
    """Mistral without a sliding window is llama; the folder name "mistral" must not make
    transformers read the file as its own mistral layout."""
    import shutil

    import torch
    from transformers import MistralConfig, MistralForCausalLM

    folder = tmp_path / "mistral"
    config = MistralConfig(
        vocab_size=len(json.loads((tiny_llama / "tokenizer.json").read_text())["model"]["vocab"]),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=None,
        initializer_range=0.1,
    )
    torch.manual_seed(3)
    MistralForCausalLM(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_llama / name, folder / name)
    out = export_gguf(folder, tmp_path / "mistral.gguf", dtype="f32").path
    assert verify_gguf(folder, out, [SAMPLE]) < 1e-4


def test_unsupported_architecture_is_refused_before_writing(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64)).save_pretrained(folder)
    out = tmp_path / "out" / "model.gguf"
    with pytest.raises(GgufExportError, match=r"GPT2LMHeadModel.*only llama"):
        export_gguf(folder, out)
    assert not out.exists()


def test_failed_write_leaves_no_partial_file(tiny_llama: Path, tmp_path: Path) -> None:
    """A failure after the bytes were written (the final rename) leaves neither target nor temporary."""
    out = tmp_path / "model.gguf"
    out.mkdir()  # a directory in the way: os.replace fails once the whole file is written
    with pytest.raises(OSError):
        export_gguf(tiny_llama, out, dtype="f32")
    assert out.is_dir() and list(out.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_vocabulary_mismatch_with_source_gguf_is_refused(tiny_llama: Path, tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    source = export_gguf(tiny_llama, tmp_path / "source.gguf", dtype="f32").path
    bigger = tmp_path / "bigger"
    config = LlamaConfig(
        vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
    )
    LlamaForCausalLM(config).save_pretrained(bigger)
    out = tmp_path / "bigger.gguf"
    with pytest.raises(GgufExportError, match="400 rows"):
        export_gguf(bigger, out, source_gguf=source)
    assert not out.exists()

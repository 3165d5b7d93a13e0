"""Write a merged Hugging Face llama-architecture causal LM folder as one GGUF file.

The file is laid out the way llama.cpp's `convert_hf_to_gguf.py` lays out a llama model, so
llama.cpp, ollama and transformers' own GGUF loader all read it: tensor names come from gguf-py's
llama `TensorNameMap` and the tokenizer's merges, special tokens and chat template from its
`SpecialVocab`, the pieces that converter uses. `verify_gguf` loads the file back with
transformers and compares logits with the folder's. Heavy imports stay inside functions.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lmforge.errors import LmforgeError

if TYPE_CHECKING:
    import gguf
    import numpy as np

# Mistral is llama with another name when it uses no sliding window; llama.cpp writes it as llama too.
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")

# The tensors a plain llama has, as gguf-py's MODEL_TENSOR kinds; their GGUF names, and which
# transformers names map to them, come from gguf-py's llama map (the one llama.cpp's converter
# uses). Anything else the map knows for llama (biases, MoE experts, rope factors) is refused.
_GLOBAL_KINDS = ("TOKEN_EMBD", "OUTPUT_NORM", "OUTPUT")
_BLOCK_KINDS = (
    "ATTN_NORM",
    "ATTN_Q",
    "ATTN_K",
    "ATTN_V",
    "ATTN_OUT",
    "FFN_NORM",
    "FFN_GATE",
    "FFN_UP",
    "FFN_DOWN",
)
# Buffers some older checkpoints saved; they are recomputed from the config at load time.
_SKIPPED_SUFFIXES = ("rotary_emb.inv_freq",)


class GgufExportError(LmforgeError):
    """The model folder cannot be written as GGUF (architecture, weights or tokenizer)."""

    headline = "gguf export failed"


@dataclass(frozen=True)
class GgufExport:
    """What `export_gguf` wrote."""

    path: Path
    bytes: int
    dtype: str
    tensors: int
    seconds: float


@dataclass(frozen=True)
class GgufComparison:
    """How closely the GGUF reproduces the folder's model on some texts."""

    max_abs_diff: float
    same_next_token: bool  # greedy next token after every text agrees


@dataclass(frozen=True)
class _Shape:
    """The llama hyper-parameters GGUF states, read from a transformers config."""

    name: str
    context_length: int
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    rms_eps: float
    rope_theta: float
    vocab_size: int
    tied: bool


def export_gguf(
    model_dir: Path,
    out_file: Path,
    *,
    dtype: Literal["f32", "f16"] = "f16",
    source_gguf: Path | None = None,
) -> GgufExport:
    """Write `model_dir` (a saved LlamaForCausalLM) to `out_file`.

    Tokenizer metadata is copied from `source_gguf` when given (the GGUF the model was first
    loaded from), else built from the folder's tokenizer.json. Everything that can fail on the
    user's input is checked before the file is opened, and the file is written under a temporary
    name and moved into place, so `out_file` is either whole or absent.
    """
    import gguf

    if dtype not in ("f32", "f16"):
        raise GgufExportError(f"dtype must be 'f32' or 'f16', got {dtype!r}")
    start = time.perf_counter()
    shape = _read_shape(model_dir)
    tokenizer = _tokenizer(model_dir, shape, source_gguf)
    plan = _plan_tensors(_weight_files(model_dir), shape)

    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, "llama")  # opens nothing until the header is written
    try:
        _add_model_kv(writer, shape, dtype)
        tokenizer.add_to(writer)
        count = 0
        for name, array in _load_tensors(plan, shape, dtype):
            writer.add_tensor(name, array)
            count += 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_file)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return GgufExport(
        path=out_file,
        bytes=out_file.stat().st_size,
        dtype=dtype,
        tensors=count,
        seconds=time.perf_counter() - start,
    )


def _read_shape(model_dir: Path) -> _Shape:
    """The config's llama hyper-parameters; anything GGUF's llama cannot state is refused."""
    from transformers import AutoConfig

    if not (model_dir / "config.json").exists():
        raise GgufExportError(f"{model_dir}: no config.json", hint="pass a saved model folder")
    config = AutoConfig.from_pretrained(model_dir)
    architectures = getattr(config, "architectures", None) or [type(config).__name__]
    architecture = architectures[0]
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise GgufExportError(
            f"{model_dir}: architecture {architecture} cannot be exported to GGUF; "
            "only llama (LlamaForCausalLM) is supported",
        )
    if getattr(config, "sliding_window", None) is not None:
        raise GgufExportError(
            f"{model_dir}: {architecture} with a sliding window cannot be exported; "
            "only llama (no sliding window) is supported"
        )
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise GgufExportError(f"{model_dir}: llama with attention or MLP biases is not supported")
    # transformers 5 keeps every rope setting in `rope_parameters`; 4.x has `rope_theta` and
    # `rope_scaling` (None for plain rope).
    rope = getattr(config, "rope_parameters", None)
    if rope is None:
        scaling = getattr(config, "rope_scaling", None) or {}
        rope = {**scaling, "rope_theta": getattr(config, "rope_theta", None)}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type != "default":
        raise GgufExportError(
            f"{model_dir}: rope scaling '{rope_type}' is not supported by this exporter",
            hint="only plain rope (rope_type 'default') is written",
        )
    rope_theta = rope.get("rope_theta")
    heads = config.num_attention_heads
    # transformers' GGUF loader reads a llama file named exactly "mistral" as its own mistral
    # layout, which it cannot load; any other name is kept as is.
    name = model_dir.name if model_dir.name != "mistral" else "mistral-llama"
    return _Shape(
        name=name,
        context_length=config.max_position_embeddings,
        hidden=config.hidden_size,
        layers=config.num_hidden_layers,
        intermediate=config.intermediate_size,
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        rms_eps=config.rms_norm_eps,
        rope_theta=float(rope_theta if rope_theta is not None else 10000.0),
        vocab_size=config.vocab_size,
        tied=bool(getattr(config, "tie_word_embeddings", False)),
    )


def _add_model_kv(writer: gguf.GGUFWriter, shape: _Shape, dtype: str) -> None:
    import gguf

    writer.add_name(shape.name)
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.intermediate)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_rope_dimension_count(shape.head_dim)
    if shape.head_dim != shape.hidden // shape.heads:
        # llama.cpp derives the head size from the width unless told otherwise.
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    writer.add_vocab_size(shape.vocab_size)
    file_type = gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32
    writer.add_file_type(int(file_type))


# ---- weights -------------------------------------------------------------------------------------


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / shard for shard in shards]
    single = model_dir / "model.safetensors"
    if single.exists():
        return [single]
    raise GgufExportError(
        f"{model_dir}: no model.safetensors", hint="save the merged model with save_pretrained"
    )


def _gguf_name(names: gguf.TensorNameMap, hf_name: str) -> tuple[gguf.MODEL_TENSOR, str] | None:
    """The GGUF kind and name of a transformers tensor (None for buffers to leave out).

    `names` is gguf-py's llama map for the model's layer count, so a layer index past the
    config's is refused like any unknown tensor.
    """
    import gguf

    if hf_name.endswith(_SKIPPED_SUFFIXES):
        return None
    found = names.get_type_and_name(hf_name, try_suffixes=(".weight",))
    plain = {gguf.MODEL_TENSOR[kind] for kind in (*_GLOBAL_KINDS, *_BLOCK_KINDS)}
    if found is None or found[0] not in plain or not found[1].endswith(".weight"):
        raise GgufExportError(f"unexpected tensor {hf_name} for a llama model; nothing was written")
    return found


def _expected_names(shape: _Shape) -> set[str]:
    """Every GGUF tensor name a plain llama of this shape must have (no output.weight when tied)."""
    import gguf

    kinds = [gguf.MODEL_TENSOR[kind] for kind in _GLOBAL_KINDS if not (shape.tied and kind == "OUTPUT")]
    names = {f"{gguf.TENSOR_NAMES[kind]}.weight" for kind in kinds}
    for kind in (gguf.MODEL_TENSOR[kind] for kind in _BLOCK_KINDS):
        names |= {f"{gguf.TENSOR_NAMES[kind].format(bid=i)}.weight" for i in range(shape.layers)}
    return names


def _permute_rope(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder Q/K rows from transformers' rotate-half rope to llama.cpp's interleaved pairs.

    The same permutation as llama.cpp's converter; transformers' GGUF loader undoes it.
    """
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


_Plan = dict[Path, dict[str, tuple["gguf.MODEL_TENSOR", str]]]


def _plan_tensors(files: list[Path], shape: _Shape) -> _Plan:
    """{file: {transformers name: (GGUF kind, GGUF name)}}, after checking each llama tensor is there."""
    import gguf
    from safetensors import safe_open

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.layers)
    plan: _Plan = {}
    seen: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for hf_name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                found = _gguf_name(names, hf_name)
                # A tied head is the embedding: llama.cpp and transformers read token_embd for both.
                if found is None or (shape.tied and found[0] == gguf.MODEL_TENSOR.OUTPUT):
                    continue
                plan.setdefault(file, {})[hf_name] = found
                seen.add(found[1])
    missing = sorted(_expected_names(shape) - seen)
    if missing:
        raise GgufExportError(f"weights missing from the model folder: {', '.join(missing[:5])}")
    return plan


def _load_tensors(plan: _Plan, shape: _Shape, dtype: str) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, array) for every planned weight, permuted and cast for llama.cpp."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    heads = {gguf.MODEL_TENSOR.ATTN_Q: shape.heads, gguf.MODEL_TENSOR.ATTN_K: shape.kv_heads}
    for file, names in plan.items():
        with safe_open(str(file), framework="pt") as handle:
            for hf_name, (kind, gguf_name) in names.items():
                # float() first: numpy has no bfloat16.
                array = handle.get_tensor(hf_name).float().numpy()
                if kind in heads:
                    array = _permute_rope(array, heads[kind])
                # Norm vectors stay f32, as llama.cpp expects; matrices take the requested type.
                wanted = np.float16 if dtype == "f16" and array.ndim >= 2 else np.float32
                yield gguf_name, np.ascontiguousarray(array.astype(wanted, copy=False))


# ---- tokenizer -----------------------------------------------------------------------------------

_KeyValue = dict[str, tuple[Any, "gguf.GGUFValueType", "gguf.GGUFValueType | None"]]


@dataclass(frozen=True)
class _Tokenizer:
    """The tokenizer metadata to write: raw keys, plus gguf-py's SpecialVocab for a folder.

    SpecialVocab is what llama.cpp's converter uses for merges, special token ids, the
    add-bos/eos flags and the chat template, so those keys say what llama.cpp would write.
    """

    kv: _KeyValue
    special: gguf.SpecialVocab | None = None

    def add_to(self, writer: gguf.GGUFWriter) -> None:
        for key, (value, vtype, sub_type) in self.kv.items():
            writer.add_key_value(key, value, vtype, sub_type)
        if self.special is not None:
            self.special.add_to_gguf(writer, quiet=True)


def _tokenizer(model_dir: Path, shape: _Shape, source_gguf: Path | None) -> _Tokenizer:
    if source_gguf is not None:
        tokenizer = _Tokenizer(_tokenizer_kv_from_gguf(source_gguf))
    else:
        tokenizer = _tokenizer_from_folder(model_dir, shape)
    tokens = tokenizer.kv.get("tokenizer.ggml.tokens")
    if tokens is None or len(tokens[0]) != shape.vocab_size:
        count = 0 if tokens is None else len(tokens[0])
        source = source_gguf or model_dir / "tokenizer.json"
        raise GgufExportError(
            f"{source}: {count} tokens but the model's embedding has {shape.vocab_size} rows",
            hint="pass the GGUF this model was loaded from, or the model's own tokenizer",
        )
    return tokenizer


def _tokenizer_kv_from_gguf(source: Path) -> _KeyValue:
    """Every `tokenizer.*` key of another GGUF, strings kept as raw bytes so nothing is re-encoded."""
    from gguf import GGUFReader, GGUFValueType

    if not source.is_file():
        raise GgufExportError(f"source GGUF {source} does not exist")
    kv: _KeyValue = {}
    for key, field in GGUFReader(source).fields.items():
        if not key.startswith("tokenizer."):
            continue
        main = field.types[0]
        if main == GGUFValueType.ARRAY:
            if len(field.types) != 2:
                raise GgufExportError(f"{source}: nested array {key} cannot be copied")
            sub = field.types[1]
            if sub == GGUFValueType.STRING:
                values: Any = [field.parts[i].tobytes() for i in field.data]
            else:
                values = field.contents()
            kv[key] = (values, main, sub)
        elif main == GGUFValueType.STRING:
            kv[key] = (field.parts[-1].tobytes(), main, None)
        else:
            kv[key] = (field.contents(), main, None)
    return kv


def _tokenizer_from_folder(model_dir: Path, shape: _Shape) -> _Tokenizer:
    """llama.cpp's "gpt2" (byte-level BPE) tokenizer, built from the folder's tokenizer files.

    The vocabulary is written here (embedding rows past the tokenizer get placeholder tokens);
    everything else comes from gguf-py's SpecialVocab.
    """
    from gguf import GGUFValueType, SpecialVocab, TokenType

    path = model_dir / "tokenizer.json"
    if not path.exists():
        raise GgufExportError(
            f"{model_dir}: no tokenizer.json", hint="save the tokenizer with the model, or pass source_gguf"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(data.get("pre_tokenizer")):
        raise GgufExportError(
            f"{path}: only byte-level BPE tokenizers (GPT-2 style) can be exported",
            hint="pass source_gguf to copy the tokenizer from the GGUF the model came from",
        )

    ids: dict[str, int] = dict(model["vocab"])
    types = {token_id: TokenType.NORMAL for token_id in ids.values()}
    for added in data.get("added_tokens") or []:
        ids[added["content"]] = added["id"]
        types[added["id"]] = TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED
    by_id = {token_id: token for token, token_id in ids.items()}
    size = max(shape.vocab_size, max(by_id) + 1)
    # Embedding rows past the tokenizer (padding to a round size) get placeholder tokens, as in llama.cpp.
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
    token_types = [int(types.get(i, TokenType.UNUSED)) for i in range(size)]
    kv: _KeyValue = {
        "tokenizer.ggml.model": ("gpt2", GGUFValueType.STRING, None),
        "tokenizer.ggml.tokens": (tokens, GGUFValueType.ARRAY, GGUFValueType.STRING),
        "tokenizer.ggml.token_type": (token_types, GGUFValueType.ARRAY, GGUFValueType.INT32),
    }
    try:
        special = SpecialVocab(model_dir, load_merges=True, n_vocab=size)
    except ValueError as exc:  # an unknown merges format or a negative token id
        raise GgufExportError(f"{model_dir}: cannot read the tokenizer's special tokens: {exc}") from exc
    # SpecialVocab reads add-bos/eos from tokenizer_config.json or a simple post-processor template
    # and writes nothing when neither says; readers then fall back to different defaults, so the
    # tokenizer is asked what it does and the answer written.
    for role, adds in _probed_adds(path, special.special_token_ids).items():
        special.add_special_token.setdefault(role, adds)
    return _Tokenizer(kv, special)


def _probed_adds(path: Path, special_ids: dict[str, int]) -> dict[str, bool]:
    """Whether encoding a text puts the bos token first and the eos token last."""
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(path)).encode("a").ids
    return {
        "bos": bool(ids) and ids[0] == special_ids.get("bos"),
        "eos": bool(ids) and ids[-1] == special_ids.get("eos"),
    }


# ---- verification --------------------------------------------------------------------------------


def compare_gguf(model_dir: Path, gguf_file: Path, texts: list[str]) -> GgufComparison:
    """Run the folder's model and the GGUF (loaded back by transformers) on `texts`, in float32.

    Both read the same token ids (the folder's tokenizer), so any difference is the weights'.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmforge.models.quiet import quiet_transformers

    if not texts:
        raise ValueError("compare_gguf needs at least one text")
    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    original = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    exported = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    ).eval()
    worst, same = 0.0, True
    with torch.inference_mode():
        for text in texts:  # one at a time: no padding to get wrong
            batch = tokenizer(text, return_tensors="pt")
            expected = original(**batch).logits
            got = exported(**batch).logits
            worst = max(worst, (expected - got).abs().max().item())
            same = same and bool(torch.equal(expected[0, -1].argmax(), got[0, -1].argmax()))
    return GgufComparison(max_abs_diff=worst, same_next_token=same)


def verify_gguf(model_dir: Path, gguf_file: Path, texts: list[str]) -> float:
    """The largest |logit difference| between the folder's model and the GGUF on `texts`."""
    return compare_gguf(model_dir, gguf_file, texts).max_abs_diff

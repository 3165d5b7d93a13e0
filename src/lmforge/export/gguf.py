"""Write a merged Hugging Face llama-architecture causal LM folder as one GGUF file.

The file is laid out the way llama.cpp's `convert_hf_to_gguf.py` lays out a llama model, so
llama.cpp, ollama and transformers' own GGUF loader all read it; `verify_gguf` loads it back
with transformers and compares logits with the folder's. Heavy imports stay inside functions.
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

_GLOBAL_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_TENSORS = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
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
    writer_kv = _tokenizer_kv(model_dir, shape, source_gguf)
    plan = _plan_tensors(_weight_files(model_dir), shape)

    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(tmp, "llama")  # opens nothing until the header is written
    try:
        _add_model_kv(writer, shape, dtype)
        for key, (value, vtype, sub_type) in writer_kv.items():
            writer.add_key_value(key, value, vtype, sub_type)
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


def _gguf_name(hf_name: str, layers: int) -> str | None:
    """The GGUF tensor name for a transformers one (None for names to leave out)."""
    if hf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[hf_name]
    parts = hf_name.split(".", 3)  # model.layers.{i}.{rest}
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[2].isdigit():
        index, rest = int(parts[2]), parts[3]
        if rest in _LAYER_TENSORS and index < layers:
            return f"blk.{index}.{_LAYER_TENSORS[rest]}"
    if hf_name.endswith(_SKIPPED_SUFFIXES):
        return None
    raise GgufExportError(f"unexpected tensor {hf_name} for a llama model; nothing was written")


def _permute_rope(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder Q/K rows from transformers' rotate-half rope to llama.cpp's interleaved pairs.

    The same permutation as llama.cpp's converter; transformers' GGUF loader undoes it.
    """
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def _plan_tensors(files: list[Path], shape: _Shape) -> dict[Path, dict[str, str]]:
    """{file: {transformers name: GGUF name}}, after checking every llama tensor is there once."""
    from safetensors import safe_open

    plan: dict[Path, dict[str, str]] = {}
    seen: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for hf_name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                gguf_name = _gguf_name(hf_name, shape.layers)
                # A tied head is the embedding: llama.cpp and transformers read token_embd for both.
                if gguf_name is None or (shape.tied and gguf_name == "output.weight"):
                    continue
                plan.setdefault(file, {})[hf_name] = gguf_name
                seen.add(gguf_name)
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{suffix}" for i in range(shape.layers) for suffix in _LAYER_TENSORS.values()
    }
    if not shape.tied:
        expected.add("output.weight")
    missing = sorted(expected - seen)
    if missing:
        raise GgufExportError(f"weights missing from the model folder: {', '.join(missing[:5])}")
    return plan


def _load_tensors(
    plan: dict[Path, dict[str, str]], shape: _Shape, dtype: str
) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, array) for every planned weight, permuted and cast for llama.cpp."""
    import numpy as np
    from safetensors import safe_open

    for file, names in plan.items():
        with safe_open(str(file), framework="pt") as handle:
            for hf_name, gguf_name in names.items():
                # float() first: numpy has no bfloat16.
                array = handle.get_tensor(hf_name).float().numpy()
                if gguf_name.endswith("attn_q.weight"):
                    array = _permute_rope(array, shape.heads)
                elif gguf_name.endswith("attn_k.weight"):
                    array = _permute_rope(array, shape.kv_heads)
                # Norm vectors stay f32, as llama.cpp expects; matrices take the requested type.
                wanted = np.float16 if dtype == "f16" and array.ndim >= 2 else np.float32
                yield gguf_name, np.ascontiguousarray(array.astype(wanted, copy=False))


# ---- tokenizer -----------------------------------------------------------------------------------

_KeyValue = dict[str, tuple[Any, "gguf.GGUFValueType", "gguf.GGUFValueType | None"]]


def _tokenizer_kv(model_dir: Path, shape: _Shape, source_gguf: Path | None) -> _KeyValue:
    if source_gguf is not None:
        kv = _tokenizer_kv_from_gguf(source_gguf)
    else:
        kv = _tokenizer_kv_from_folder(model_dir, shape)
    tokens = kv.get("tokenizer.ggml.tokens")
    if tokens is None or len(tokens[0]) != shape.vocab_size:
        count = 0 if tokens is None else len(tokens[0])
        source = source_gguf or model_dir / "tokenizer.json"
        raise GgufExportError(
            f"{source}: {count} tokens but the model's embedding has {shape.vocab_size} rows",
            hint="pass the GGUF this model was loaded from, or the model's own tokenizer",
        )
    return kv


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


def _tokenizer_kv_from_folder(model_dir: Path, shape: _Shape) -> _KeyValue:
    """llama.cpp's "gpt2" (byte-level BPE) tokenizer keys, built from tokenizer.json."""
    from gguf import GGUFValueType, TokenType

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
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]

    string, array, uint32, boolean = (
        GGUFValueType.STRING,
        GGUFValueType.ARRAY,
        GGUFValueType.UINT32,
        GGUFValueType.BOOL,
    )
    kv: _KeyValue = {
        "tokenizer.ggml.model": ("gpt2", string, None),
        "tokenizer.ggml.tokens": (tokens, array, string),
        "tokenizer.ggml.token_type": (token_types, array, GGUFValueType.INT32),
    }
    if merges:
        kv["tokenizer.ggml.merges"] = (merges, array, string)
    special = _special_token_ids(model_dir, ids)
    for key, token_id in special.items():
        kv[f"tokenizer.ggml.{key}"] = (token_id, uint32, None)
    add_bos, add_eos = _adds_bos_eos(model_dir, path, special)
    kv["tokenizer.ggml.add_bos_token"] = (add_bos, boolean, None)
    kv["tokenizer.ggml.add_eos_token"] = (add_eos, boolean, None)
    template = _chat_template(model_dir)
    if template is not None:
        kv["tokenizer.chat_template"] = (template, string, None)
    return kv


def _tokenizer_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _special_token_ids(model_dir: Path, ids: dict[str, int]) -> dict[str, int]:
    """bos/eos/unknown/padding ids: the tokenizer's own tokens first, the model config's ids second."""
    tokenizer_config = _tokenizer_config(model_dir)
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    found: dict[str, int] = {}
    for role, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        token = tokenizer_config.get(f"{role}_token")
        if isinstance(token, dict):  # older files store an AddedToken as a dict
            token = token.get("content")
        token_id: Any = ids.get(token) if isinstance(token, str) else None
        if token_id is None:
            value = config.get(f"{role}_token_id")
            token_id = value[0] if isinstance(value, list) and value else value
        if isinstance(token_id, int):
            found[f"{key}_token_id"] = token_id
    return found


def _adds_bos_eos(model_dir: Path, path: Path, special: dict[str, int]) -> tuple[bool, bool]:
    """Whether encoding adds bos/eos: the tokenizer_config flag, else what the post-processor does."""
    from tokenizers import Tokenizer

    tokenizer_config = _tokenizer_config(model_dir)
    ids = Tokenizer.from_file(str(path)).encode("a").ids
    probed_bos = bool(ids) and ids[0] == special.get("bos_token_id")
    probed_eos = bool(ids) and ids[-1] == special.get("eos_token_id")
    return (
        bool(tokenizer_config.get("add_bos_token", probed_bos)),
        bool(tokenizer_config.get("add_eos_token", probed_eos)),
    )


def _chat_template(model_dir: Path) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    template = _tokenizer_config(model_dir).get("chat_template")
    return template if isinstance(template, str) else None


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

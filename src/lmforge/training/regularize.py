"""Model-side regularisation switches: dropout override and layer freezing."""

from __future__ import annotations

from typing import Any


def override_dropout(config: Any, probability: float) -> list[str]:
    """Set every dropout probability in a transformers config; returns the keys changed."""
    changed = []
    for key, value in list(config.to_dict().items()):
        if "dropout" in key and (isinstance(value, float) or value is None) and hasattr(config, key):
            setattr(config, key, probability)
            changed.append(key)
    return changed


def transformer_layers(model: Any) -> Any:
    """The model's list of transformer blocks (BERT `encoder.layer`, Llama `layers`, ...)."""
    import torch

    count = getattr(model.config, "num_hidden_layers", None)
    for module in model.base_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")


def freeze(model: Any, *, embeddings: bool, layers: int) -> int:
    """Freeze the embeddings (when `embeddings` or `layers` > 0) and the bottom `layers`
    blocks; returns the number of parameters left trainable."""
    if embeddings or layers:
        embedding_module = getattr(model.base_model, "embeddings", None)
        if embedding_module is None:  # Llama-style models keep only `embed_tokens`
            embedding_module = model.get_input_embeddings()
        for parameter in embedding_module.parameters():
            parameter.requires_grad = False
    if layers:
        blocks = transformer_layers(model)
        if layers > len(blocks):
            raise ValueError(f"train.freeze_layers is {layers} but the model has {len(blocks)} layers")
        for block in blocks[:layers]:
            for parameter in block.parameters():
                parameter.requires_grad = False
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def train_top_layers(model: Any, layers: int) -> int:
    """Freeze everything except the top `layers` blocks and what follows them (final norm,
    classification head); returns the number of trainable parameters. Tied input/output
    embeddings stay frozen: training them would move the whole vocabulary."""
    blocks = transformer_layers(model)
    if layers > len(blocks):
        raise ValueError(f"train.trainable_layers is {layers} but the model has {len(blocks)} layers")
    for parameter in model.parameters():
        parameter.requires_grad = False
    top = {id(p) for block in blocks[len(blocks) - layers :] for p in block.parameters()}
    in_blocks = {id(p) for block in blocks for p in block.parameters()}
    embedding = {id(p) for p in model.get_input_embeddings().parameters()}
    seen_top = False
    for parameter in model.parameters():
        if id(parameter) in top:
            seen_top = True
            parameter.requires_grad = True
        elif seen_top and id(parameter) not in in_blocks | embedding:
            parameter.requires_grad = True  # final norm / head, registered after the blocks
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def add_lora(
    model: Any,
    *,
    r: int,
    alpha: int,
    dropout: float,
    targets: list[str] | None,
    causal: bool = False,
) -> Any:
    """Wrap `model` with LoRA adapters (peft). For a classifier the new head stays fully
    trainable; `targets` None takes peft's default modules for the architecture."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        # SEQ_CLS also makes the new head (`classifier` / `score`) trainable.
        task_type=TaskType.CAUSAL_LM if causal else TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
    )
    return get_peft_model(model, config)


def plain_model(model: Any) -> Any:
    """A transformers model to save or serve: LoRA adapters merged into the weights."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model

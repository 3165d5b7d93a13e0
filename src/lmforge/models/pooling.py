"""Sequence classifiers whose head reads the encoder the way it was pretrained.

transformers' `BertForSequenceClassification` classifies from the [CLS] token through BERT's
pooler. Sentence-transformers checkpoints (all-MiniLM-L6-v2 among them) were trained on the
*mean* of the token states; their pooler was never trained for that. Measured on 1,000
emotion rows (docs/decisions.md), the mean-pooling head scores higher at every learning rate.

`MeanPooling<Arch>ForSequenceClassification` is built per architecture from that
architecture's `PreTrainedModel` base, so it loads the encoder's weights, saves, reloads,
merges LoRA and exports to ONNX like the stock class. Its config carries
`lmforge_pooling: mean`; `load_trained_classifier` reads that key to rebuild the right class.
"""

from __future__ import annotations

from typing import Any

POOLING_KEY = "lmforge_pooling"
MAX_LENGTH_KEY = "lmforge_max_length"
POOLINGS = ("mean", "default")

_CLASSES: dict[type, type] = {}


def mean_pooling_class(config: Any) -> type:
    """The mean-pooling classifier class for `config`'s architecture (built once, cached)."""
    key = type(config)
    if key not in _CLASSES:
        _CLASSES[key] = _build(config)
    return _CLASSES[key]


def _build(config: Any) -> type:
    import torch
    from torch import nn
    from transformers import AutoModel, AutoModelForSequenceClassification, PreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    stock: Any = AutoModelForSequenceClassification._model_mapping[type(config)]
    base = next(c for c in stock.__mro__[1:] if issubclass(c, PreTrainedModel) and c is not PreTrainedModel)
    prefix = base.base_model_prefix

    def __init__(self: Any, config: Any) -> None:
        base.__init__(self, config)
        self.num_labels = config.num_labels
        encoder = AutoModel.from_config(config)
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # unused: no dead weights, no unused-parameter errors under DDP
        setattr(self, prefix, encoder)
        dropout = getattr(config, "classifier_dropout", None)
        if dropout is None:
            dropout = getattr(config, "hidden_dropout_prob", None)
        self.dropout = nn.Dropout(0.1 if dropout is None else float(dropout))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self: Any,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        given = {"token_type_ids": token_type_ids, "inputs_embeds": inputs_embeds}
        outputs = getattr(self, prefix)(
            input_ids=input_ids,
            attention_mask=attention_mask,
            **{k: v for k, v in given.items() if v is not None},
            return_dict=True,
        )
        hidden = outputs.last_hidden_state
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)

    name = f"MeanPooling{base.__name__.removesuffix('PreTrainedModel')}ForSequenceClassification"
    # The loss is a per-batch mean: the Trainer must divide it over gradient-accumulation steps.
    attributes = {
        "__init__": __init__,
        "forward": forward,
        "__module__": __name__,
        "accepts_loss_kwargs": False,
    }
    return type(name, (base,), attributes)


def uses_mean_pooling(config: Any) -> bool:
    return getattr(config, POOLING_KEY, None) == "mean"


def classifier_class(config: Any) -> Any:
    """The class that rebuilds a classifier saved with `config`: the mean-pooling one when the
    config says so, else transformers' own `AutoModelForSequenceClassification`."""
    from transformers import AutoModelForSequenceClassification

    return mean_pooling_class(config) if uses_mean_pooling(config) else AutoModelForSequenceClassification

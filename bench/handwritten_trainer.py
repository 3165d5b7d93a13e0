"""What a user would write by hand with transformers: the reference for lmforge's train stage.

Reads the train/validation tables an lmforge `split` stage produced, fine-tunes with the
Trainer using the same hyperparameters, keeps the best checkpoint, saves the model.
Usage: python bench/handwritten_trainer.py SPLIT_DIR MODEL_DIR OUT_DIR EPOCHS LR BATCH MAX_LEN [mean]
With `mean`, the head classifies the mean of the token states (sentence-transformers style),
written the way a user would by hand, and batches are grouped by length.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)


class MeanPooled(torch.nn.Module):
    """What a user writes by hand: encoder, mean of the unpadded token states, dropout, linear."""

    def __init__(self, model_dir, num_labels):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(model_dir, add_pooling_layer=False)
        self.dropout = torch.nn.Dropout(0.1)
        self.classifier = torch.nn.Linear(self.encoder.config.hidden_size, num_labels)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        logits = self.classifier(self.dropout((hidden * mask).sum(1) / mask.sum(1)))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


class Texts:
    def __init__(self, tokenizer, texts, labels, max_length):
        self.enc = tokenizer(texts, truncation=True, max_length=max_length)
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {**{k: v[i] for k, v in self.enc.items()}, "labels": self.labels[i]}


def metrics(pred):
    logits, labels = pred
    p = np.asarray(logits).argmax(-1)
    return {"accuracy": accuracy_score(labels, p), "f1_macro": f1_score(labels, p, average="macro")}


def main() -> None:
    split_dir, model_dir, out_dir, epochs, lr, batch, max_len = sys.argv[1:8]
    mean = sys.argv[8:9] == ["mean"]
    started = time.perf_counter()
    with open(f"{split_dir}/labels.json") as handle:
        labels = json.load(handle)
    ids = {label: i for i, label in enumerate(labels)}
    train = pd.read_parquet(f"{split_dir}/train.parquet")
    val = pd.read_parquet(f"{split_dir}/validation.parquet")
    tok = AutoTokenizer.from_pretrained(model_dir)
    if mean:
        model = MeanPooled(model_dir, len(labels))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id=ids,
        )
    args = TrainingArguments(
        output_dir=out_dir,
        num_train_epochs=float(epochs),
        learning_rate=float(lr),
        per_device_train_batch_size=int(batch),
        per_device_eval_batch_size=64,
        warmup_steps=0.1,
        weight_decay=0.01,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="f1_macro",
        save_total_limit=2,
        seed=42,
        report_to=[],
        disable_tqdm=True,
        logging_steps=10,
        use_cpu=True,
        train_sampling_strategy="group_by_length" if mean else "random",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Texts(tok, train["text"].tolist(), [ids[x] for x in train["label"]], int(max_len)),
        eval_dataset=Texts(tok, val["text"].tolist(), [ids[x] for x in val["label"]], int(max_len)),
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=metrics,
        processing_class=tok,
    )
    trainer.train()
    trainer.save_model(f"{out_dir}/model")
    tok.save_pretrained(f"{out_dir}/model")
    print(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()

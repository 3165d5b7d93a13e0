"""The transformers Trainer with lmforge's additions: divergence checks, FGM adversarial
training, and a learning-rate scale that survives a resume from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.training.monitor import LossWatch

SCALE_FILE = "lmforge_lr_scale.json"


def checkpoint_lr_scale(checkpoint: Path | None) -> float:
    """The learning-rate scale a checkpoint was trained with (1.0 when never restarted)."""
    if checkpoint is None or not (checkpoint / SCALE_FILE).exists():
        return 1.0
    return float(json.loads((checkpoint / SCALE_FILE).read_text())["lr_scale"])


def trainer_class() -> type:
    """Built on first use so importing lmforge does not import transformers."""
    global _TRAINER
    if _TRAINER is None:
        _TRAINER = _build()
    return _TRAINER


_TRAINER: type | None = None


def _build() -> type:
    import torch
    from torch.nn.parallel import DistributedDataParallel
    from transformers import Trainer

    from lmforge.training.row_allreduce import register_row_allreduce

    class LmforgeTrainer(Trainer):
        def __init__(
            self,
            *args: Any,
            loss_watch: LossWatch,
            lr_scale: float = 1.0,
            fgm_epsilon: float | None = None,
            class_weights: list[float] | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.loss_watch = loss_watch
            self.lr_scale = lr_scale
            self.fgm_epsilon = fgm_epsilon
            self.class_weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
            if class_weights is not None:
                # A per-batch mean: the Trainer must divide it over gradient-accumulation steps.
                self.loss_is_scaled_for_ga = False

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            if self.class_weights is None or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # Class-weighted cross-entropy (train.class_weights), with the label smoothing the
            # Trainer would otherwise apply itself.
            labels = inputs["labels"]
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            logits = outputs.logits
            loss = torch.nn.functional.cross_entropy(
                logits.view(-1, logits.shape[-1]),
                labels.view(-1),
                weight=self.class_weights.to(logits.device, logits.dtype),
                label_smoothing=self.args.label_smoothing_factor,
            )
            return (loss, outputs) if return_outputs else loss

        def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
            loss = super().training_step(model, inputs, num_items_in_batch)
            value = loss.detach()
            if self.args.world_size > 1:
                # Data-parallel workers judge the same (mean) loss, so all restart or none does:
                # one rank leaving the loop alone would hang the others in their next all-reduce.
                value = self.accelerator.reduce(value.clone(), reduction="mean")
            # Before the optimizer step: a divergent batch never updates the weights.
            self.loss_watch.check(
                self.state.global_step + 1, float(value) * self.current_gradient_accumulation_steps
            )
            if self.fgm_epsilon:
                self._fgm_step(model, inputs, num_items_in_batch)
            return loss

        def _fgm_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> None:
            """Fast Gradient Method (Miyato et al.): perturb the word embeddings along their
            gradient, add the loss gradient at the perturbed point, restore the embeddings."""
            weight = self.accelerator.unwrap_model(model).get_input_embeddings().weight
            if weight.grad is None:  # frozen embeddings: nothing to attack
                return
            norm = torch.linalg.vector_norm(weight.grad)
            if not torch.isfinite(norm) or norm == 0:
                return
            delta = self.fgm_epsilon * weight.grad / norm
            weight.data.add_(delta)
            try:
                prepared = self._prepare_inputs(inputs)
                with self.compute_loss_context_manager():
                    adversarial = self.compute_loss(model, prepared, num_items_in_batch=num_items_in_batch)
                loss: Any = adversarial
                if num_items_in_batch is None or not self.model_accepts_loss_kwargs:
                    loss = loss / self.current_gradient_accumulation_steps
                self.accelerator.backward(loss)
            finally:
                weight.data.sub_(delta)

        def _prepare_for_training(self, *args: Any, **kwargs: Any) -> Any:
            model, loader = super()._prepare_for_training(*args, **kwargs)
            if isinstance(model, DistributedDataParallel) and not getattr(model, "_lmforge_hook", False):
                # Data-parallel on CPU: send only the word-embedding rows a step touched.
                setattr(model, "_lmforge_hook", register_row_allreduce(model))  # noqa: B010 (a Module's attrs are typed)
            return model, loader

        def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
            super()._load_optimizer_and_scheduler(checkpoint)
            if checkpoint is None:
                return
            # A restart resumes the optimizer state but at a lower learning rate.
            ratio = self.lr_scale / checkpoint_lr_scale(Path(checkpoint))
            if ratio != 1.0 and self.optimizer is not None and self.lr_scheduler is not None:
                for group in self.optimizer.param_groups:
                    group["lr"] *= ratio
                    if "initial_lr" in group:
                        group["initial_lr"] *= ratio
                self.lr_scheduler.base_lrs = [lr * ratio for lr in self.lr_scheduler.base_lrs]

        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            super()._save_checkpoint(model, trial)
            folder = Path(str(self.args.output_dir)) / f"checkpoint-{self.state.global_step}"
            if folder.exists():
                (folder / SCALE_FILE).write_text(json.dumps({"lr_scale": self.lr_scale}))

    return LmforgeTrainer

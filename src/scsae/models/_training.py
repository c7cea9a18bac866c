"""The one Lightning training path for SAE modules.

:class:`ShuffledBatches` streams minibatches straight from the stored matrix
(no copy of the embedding; :class:`~scsae.models._scale.ChunkedShuffledBatches`
does the same out of core), :class:`SAETrainingPlan` holds the loss, the
decoder constraints, the dead-feature counters and the learning-rate
schedule, :class:`BestWeights` selects the epoch with the lowest held-out
FVU, and :func:`fit` runs Lightning's ``Trainer`` with quiet defaults. The same path runs on one device or several (``strategy="ddp"``):
batch streams shard themselves per rank and epoch statistics and dead
counters are reduced across ranks.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from typing import Any

import lightning.pytorch as pl
import torch

from .._utils._progress import quiet_lightning, show_progress
from ._inference import Inference
from ._inference._dictionary import sparse_coding_step
from ._sae_module import SAEModule
from ._scale import ShardBatches, ShuffledBatches, reduce_sum, world_size

GRADIENT_CLIP = 1.0
WARMUP_FRACTION = 0.05
DECAY_FRACTION = 0.2


def lr_lambda(total_steps: int) -> Any:
    """Linear warm-up over the first 5% of steps, linear decay to zero over the last 20%."""
    warmup = max(1, int(WARMUP_FRACTION * total_steps))
    decay_start = int((1 - DECAY_FRACTION) * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step >= decay_start:
            return max(0.0, (total_steps - step) / max(1, total_steps - decay_start))
        return 1.0

    return factor


class BestWeights(pl.Callback):
    """Keep the weights of the epoch with the lowest held-out FVU; restore them at the end.

    Model selection on the held-out cells: with early stopping, training ends
    at the best epoch, never after it. The copy lives in memory (an SAE is
    small beside its data). Under DDP every rank sees the same global metric,
    so all keep the same epoch.
    """

    def __init__(self, monitor: str = "validation_fvu") -> None:
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not float(value) < self.best:
            return
        self.best = float(value)
        self.best_epoch = trainer.current_epoch
        self.state = copy.deepcopy(pl_module.module.state_dict())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.state is not None:
            pl_module.module.load_state_dict(self.state)


class SAETrainingPlan(pl.LightningModule):
    """Lightning wrapper: losses, decoder constraints, schedule, logging.

    Parameters
    ----------
    module
        The SAE to train.
    lr
        Peak Adam learning rate.
    code_inference
        Dictionary learning by sparse coding: if given, each step infers the
        batch's codes with this strategy (no gradient), updates the decoder to
        reconstruct from them, and trains the encoder to amortise codes over
        the current decoder. `None` (default) trains the SAE end to end.
    """

    def __init__(
        self, module: SAEModule, *, lr: float, code_inference: Inference | None = None
    ) -> None:
        super().__init__()
        self.module = module
        self.lr = lr
        self.code_inference = code_inference
        self.unit_norm_decoder = module.activation.unit_norm_decoder
        self._sums: dict[str, torch.Tensor] = {}
        self.history: dict[str, list[float]] = defaultdict(list)

    def _step(self, batch: torch.Tensor, prefix: str) -> torch.Tensor:
        if self.code_inference is not None:
            x = self.module.normalize(batch)
            out, encoder_fvu = sparse_coding_step(self.module, x, self.code_inference)
            loss = out.fvu + encoder_fvu + out.sparsity_loss
        else:
            out = self.module(self.module.normalize(batch))
            loss = out.fvu + self.module.config.aux_coefficient * out.aux_loss + out.sparsity_loss
        n = batch.shape[0]
        with torch.no_grad():
            fired, l0 = self.module.firing(out)
            if prefix == "train":
                n_cells = n
                if world_size(self) > 1:  # dead counters see every rank's cells
                    fired = reduce_sum(self, fired.int()) > 0
                    n_cells = int(reduce_sum(self, fired.new_tensor(n, dtype=torch.long)))
                self.module.record_firing(fired, n_cells)
            # sums per epoch, logged once at its end: per-step logging costs more than the step
            stats = torch.stack(
                [loss.detach() * n, out.fvu.detach() * n, l0.to(loss.dtype), loss.new_tensor(n)]
            )
        self._sums[prefix] = stats if prefix not in self._sums else self._sums[prefix] + stats
        return loss

    def _log_epoch(self, prefix: str) -> None:
        stats = self._sums.pop(prefix, None)
        if world_size(self) > 1:  # every rank takes part, even one without batches
            local = stats if stats is not None else torch.zeros(4, device=self.device)
            stats = reduce_sum(self, local)
        if stats is None or not stats[3]:
            return
        loss, fvu, l0, _n = (stats / stats[3]).unbind()
        values = {f"{prefix}_loss": loss, f"{prefix}_fvu": fvu, f"{prefix}_l0": l0}
        # already summed over ranks: the logged values are global
        self.log_dict(values, prog_bar=True)
        for key, value in values.items():
            self.history[key].append(float(value))

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("validation")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        self.history["dead_fraction"].append(float(self.module.dead_mask().float().mean()))
        self.history["lr"].append(float(self.trainer.optimizers[0].param_groups[0]["lr"]))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self._step(batch, "validation")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.unit_norm_decoder:
            self.module.remove_gradient_parallel_to_decoder()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.unit_norm_decoder:
            self.module.set_decoder_norm_to_unit()

    def decoder_lr(self) -> float:
        """Peak learning rate of ``W_dec``: ``lr`` over the encoder's initial scale.

        Adam moves every weight by about ``lr`` whatever its size, so with an
        encoder scaled down at initialisation (least-squares init) an equal lr
        would turn its rows fast and the unit-norm decoder rows slowly; dividing
        by the scale moves both by the same fraction of their norm.
        """
        return self.lr / self.module.encoder_scale

    def configure_optimizers(self) -> Any:
        decoder = self.module.W_dec
        rest = [p for p in self.module.parameters() if p is not decoder]
        optimizer = torch.optim.Adam(
            [{"params": rest}, {"params": [decoder], "lr": self.decoder_lr()}], lr=self.lr
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def fit(
    plan: SAETrainingPlan,
    train_batches: ShuffledBatches,
    validation_batches: ShuffledBatches | None,
    *,
    max_epochs: int,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    early_stopping: bool = False,
    early_stopping_patience: int = 10,
    enable_progress_bar: bool | None = None,
    **trainer_kwargs: Any,
) -> tuple[dict[str, list[float]], int | None]:
    """Train with Lightning; return the per-epoch history (lists of floats) and the best epoch.

    With ``early_stopping``, training stops once the validation FVU has not
    improved for ``early_stopping_patience`` epochs and the weights of its best
    epoch are restored (:class:`BestWeights`), whose index is returned;
    otherwise the last weights are kept and `None` returned.
    Extra keyword arguments go to :class:`lightning.pytorch.Trainer`
    (e.g. ``strategy="ddp"`` with ``devices=2``, ``precision="bf16-mixed"``).
    Under DDP every rank runs this function and returns the same history.
    """
    callbacks: list[pl.Callback] = [ShardBatches(train_batches, validation_batches)]
    best = None
    if early_stopping:
        if validation_batches is None:
            msg = "early_stopping needs a validation split; pass train_size < 1."
            raise ValueError(msg)
        best = BestWeights()
        callbacks += [
            best,
            pl.callbacks.EarlyStopping(
                monitor="validation_fvu", patience=early_stopping_patience, mode="min"
            ),
        ]
    # quiet defaults; a user's trainer_kwargs override them
    trainer_kwargs = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "gradient_clip_val": GRADIENT_CLIP,
        **trainer_kwargs,
    }
    cell_passes = len(train_batches) * train_batches.batch_size * max_epochs
    with quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            callbacks=callbacks,
            enable_progress_bar=show_progress(
                requested=enable_progress_bar, cell_passes=cell_passes
            ),
            **trainer_kwargs,
        )
        trainer.fit(plan, train_dataloaders=train_batches, val_dataloaders=validation_batches)
    best_epoch = best.best_epoch if best is not None and best.state is not None else None
    return dict(plan.history), best_epoch

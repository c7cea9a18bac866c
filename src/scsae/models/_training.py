"""The one training path of every SAE-family model: Lightning plans run by scvi-tools' TrainRunner.

:class:`SAETrainingPlan` holds the SAE's loss, decoder constraints,
dead-feature counters and learning-rate schedule; :class:`BestWeights` selects
the epoch with the lowest held-out FVU. :func:`run_training` runs any plan
(the SAE's, LISTA's unrolled encoder) through :class:`Runner`, scvi-tools'
:class:`~scvi.train.TrainRunner` (the runner SAMS-VAE uses) with quiet
defaults, on :class:`BatchDataModule`: our own data module, whose batch streams
read rows straight from the stored matrix (no copy of the embedding;
:class:`~scsae.models._scale.ChunkedShuffledBatches` does the same out of core,
where scvi's loader would read a backed or dask matrix row by row). The same
path runs on one device or several (``strategy="ddp"``): batch streams shard
themselves per rank and epoch statistics and dead counters are reduced across
ranks. No other code in the package loops over epochs.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from scvi.train import TrainRunner

from .._utils._progress import quiet_lightning, show_progress
from ._inference import Inference
from ._inference._dictionary import sparse_coding_step
from ._sae_module import SAEModule
from ._scale import ShardBatches, reduce_sum, world_size

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


def model_selection(
    early_stopping: bool,  # noqa: FBT001
    patience: int,
    monitor: str = "validation_fvu",
) -> tuple[BestWeights | None, list[pl.Callback]]:
    """Callbacks that stop after ``patience`` epochs without improvement and keep the best epoch."""
    if not early_stopping:
        return None, []
    best = BestWeights(monitor)
    stop = pl.callbacks.EarlyStopping(monitor=monitor, patience=patience, mode="min")
    return best, [best, stop]


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


class LossPlan(pl.LightningModule):
    """Minimise ``loss(batch)`` over the parameters of ``net`` with Adam.

    For networks trained against a fixed model (LISTA's unrolled encoder over
    a frozen dictionary): ``loss`` holds the maths, the plan the optimiser
    and the per-epoch mean loss (``history``, one float per epoch: no
    per-step synchronisation).

    Parameters
    ----------
    net
        The network trained (moved to the training device by Lightning).
    loss
        Scalar loss of a batch.
    lr
        Adam learning rate.
    """

    def __init__(
        self, net: torch.nn.Module, loss: Callable[[torch.Tensor], torch.Tensor], *, lr: float
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.lr = lr
        self._sum: torch.Tensor | None = None
        self._n = 0
        self.history: list[float] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self._sum = loss.detach() if self._sum is None else self._sum + loss.detach()
        self._n += 1
        return loss

    def on_train_epoch_end(self) -> None:
        if self._n:
            self.history.append(float(self._sum) / self._n)
        self._sum, self._n = None, 0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)


class BatchDataModule(pl.LightningDataModule):
    """Our data module: hands Lightning the plan's batch streams as they are.

    A stream is any re-iterable of batches with a ``batch_size`` (and
    ``set_shard`` for DDP), e.g. :class:`~scsae.models._scale.ShuffledBatches`;
    each iteration is one epoch. ``train_idx`` and ``val_idx`` are the rows
    they draw from, which :class:`~scvi.train.TrainRunner` copies onto the
    model (``train_indices``, ``validation_indices``). Made by
    :func:`batch_data`, which gives it a validation loader only when there are
    validation batches.

    Parameters
    ----------
    train
        Training batches.
    validation
        Validation batches, or `None`.
    train_idx
        Rows of the training batches.
    val_idx
        Rows of the validation batches.
    """

    def __init__(
        self,
        train: Iterable[Any],
        validation: Iterable[Any] | None = None,
        *,
        train_idx: np.ndarray | None = None,
        val_idx: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.train = train
        self.validation = validation
        empty = np.array([], dtype=np.int64)
        self.train_idx = empty if train_idx is None else np.asarray(train_idx)
        self.val_idx = empty if val_idx is None else np.asarray(val_idx)
        self.test_idx = empty
        self.n_train, self.n_val = len(self.train_idx), len(self.val_idx)

    def train_dataloader(self) -> Iterable[Any]:
        return self.train


class _WithValidation(BatchDataModule):
    def val_dataloader(self) -> Iterable[Any]:
        return self.validation


def batch_data(
    train: Iterable[Any],
    validation: Iterable[Any] | None = None,
    *,
    train_idx: np.ndarray | None = None,
    val_idx: np.ndarray | None = None,
) -> BatchDataModule:
    """A :class:`BatchDataModule` of the streams (arguments as its own)."""
    cls = BatchDataModule if validation is None else _WithValidation
    return cls(train, validation, train_idx=train_idx, val_idx=val_idx)


class PlanOwner:
    """What :class:`~scvi.train.TrainRunner` touches of a model, for plans trained without one.

    LISTA trains an unrolled encoder over a fixed dictionary: no AnnData, no
    model class. The runner moves ``module`` to the training device, puts it
    in eval mode and records the split and the trainer here.

    Parameters
    ----------
    module
        The trained network.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.history_: dict[str, Any] | None = None
        self.is_trained_ = False

    def to_device(self, device: str | torch.device) -> None:
        """Move the trained network."""
        self.module.to(device)


class Runner(TrainRunner):
    """scvi-tools' TrainRunner; each plan keeps its own per-epoch history.

    The history is kept by the plan (floats per epoch, already reduced over
    ranks), so the logger is off and the runner does not read it back.
    """

    def _update_history(self) -> None:
        return


#: scvi's Trainer warns that it turns *its* early stopping off under DDP; ours is a callback that works there
_SCVI_DDP_NOTE = ".*early_stopping was automatically disabled due to the use of DDP.*"


def run_training(
    plan: pl.LightningModule,
    data: BatchDataModule,
    *,
    owner: Any,
    max_epochs: int,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    enable_progress_bar: bool | None = None,
    callbacks: Sequence[pl.Callback] = (),
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """Train ``plan`` on ``data`` for at most ``max_epochs``; return the trainer.

    Parameters
    ----------
    plan
        Lightning module: its ``training_step`` (and ``validation_step``) take a
        batch of the streams in ``data``.
    data
        The batch streams.
    owner
        The model trained (a :class:`~scvi.model.base.BaseModelClass`), or a
        :class:`PlanOwner`: :class:`~scvi.train.TrainRunner` marks it trained
        and moves its ``module`` to the training device.
    max_epochs
        Passes over the training batches.
    accelerator
        Lightning accelerator.
    devices
        Lightning devices.
    enable_progress_bar
        `None` applies the rule of :func:`scsae._utils._progress.show_progress`.
    callbacks
        Lightning callbacks (early stopping, model selection...).
    **trainer_kwargs
        Passed to :class:`scvi.train.Trainer` (a :class:`lightning.pytorch.Trainer`):
        e.g. ``strategy="ddp"``, ``precision="bf16-mixed"``, ``gradient_clip_val``.
        They override the quiet defaults (no logger, checkpoints or summary).
    """
    batch_size = getattr(data.train, "batch_size", 1)
    cell_passes = len(data.train) * batch_size * max_epochs
    user_callbacks = list(trainer_kwargs.pop("callbacks", []))
    has_validation = data.validation is not None
    trainer_kwargs = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        # scvi's Trainer validates never unless told
        "check_val_every_n_epoch": 1 if has_validation else None,
        **trainer_kwargs,
    }
    streams = [data.train, data.validation]
    all_callbacks = [ShardBatches(*streams), *callbacks, *user_callbacks]
    with quiet_lightning(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SCVI_DDP_NOTE)
        runner = Runner(
            owner,
            training_plan=plan,
            data_splitter=data,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            callbacks=all_callbacks,
            enable_progress_bar=show_progress(
                requested=enable_progress_bar, cell_passes=cell_passes
            ),
            **trainer_kwargs,
        )
        runner()
    return runner.trainer

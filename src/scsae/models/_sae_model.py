"""AnnData-facing sparse autoencoder model class (scvi-tools ``BaseModelClass``)."""

from __future__ import annotations

import logging
import math
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scipy import sparse
from scvi.data import AnnDataManager
from scvi.data._constants import _MANAGER_UUID_KEY, _SCVI_UUID_KEY
from scvi.data._utils import _assign_adata_uuid
from scvi.model.base import BaseModelClass
from scvi.model.base._constants import SAVE_KEYS

from .._utils._docs import DOC_ARCHITECTURE, DOC_TRAIN, DOC_USE_REP, doc_params
from .._utils._embedding import Embedding, describe_rep, embedding_diagnostics, get_embedding
from .._utils._progress import DOC_PROGRESS_BAR
from ._architectures import Architecture, get_architecture
from ._defaults import (
    default_batch_size,
    default_k,
    default_lr,
    default_max_epochs,
    default_n_features,
)
from ._encode import encode_chunk
from ._inference import Inference, get_inference
from ._inference._dictionary import check_code_inference
from ._metrics import (
    MetricAccumulator,
    linear_baseline_reconstruction,
    rank_k_baseline,
    split_report,
)
from ._sae_config import SAEConfig
from ._sae_module import SAEModule
from ._sae_saving import (
    check_version,
    input_field,
    is_legacy,
    legacy_to_scvi,
    read_saved,
    registry_n_dims,
    scsae_version,
    uses_var_names,
)
from ._scale import ChunkedShuffledBatches, CSRBuilder, ShuffledBatches
from ._training import (
    GRADIENT_CLIP,
    SAETrainingPlan,
    batch_data,
    model_selection,
    run_training,
)

MIN_CELLS = 10
INFERENCE_BATCH = 8192
MEDIAN_SAMPLE = 10_000
CALIBRATION_SAMPLE = 50_000


class SparseAutoencoder(BaseModelClass):
    """Sparse autoencoder on a single-cell embedding.

    Use :meth:`setup_anndata` to register the input, then construct, :meth:`train`
    and read activations with :meth:`get_feature_activations`. Activations are
    in the units of the embedding: cell ``i`` is reconstructed as
    ``bias + activations[i] @ decoder`` with unit-norm decoder rows.

    The class is a scvi-tools :class:`~scvi.model.base.BaseModelClass`: the
    input is registered with an :class:`~scvi.data.AnnDataManager`
    (:meth:`view_anndata_setup`), copies of registered data and data read
    back from h5ad in the same session carry the registration, and
    :meth:`save` writes the scvi-tools save format.

    Parameters
    ----------
    adata
        AnnData or MuData registered with :meth:`setup_anndata`.
    {n_features_etc}
    random_state
        Seed of the weight initialisation (and default seed of training).
    **config_kwargs
        Further fields of :class:`~scsae.models.SAEConfig` (``aux_k``,
        ``aux_coefficient``, ``dead_after_cells``).

    Examples
    --------
    >>> import scanpy as sc, scsae
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> scsae.SAE.setup_anndata(adata, use_rep="X_pca")
    >>> model = scsae.SAE(adata)
    >>> model.train(max_epochs=50)
    >>> acts = model.get_feature_activations()  # cells x features, CSR
    """

    @classmethod
    @doc_params(use_rep=DOC_USE_REP)
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        use_rep: str | None = "X_pca",
        layer: str | None = None,
        check: bool = True,
        **kwargs: Any,
    ) -> None:
        """Register which matrix of ``adata`` the model reads.

        The matrix is registered with a scvi-tools :class:`~scvi.data.AnnDataManager`
        (an ``ObsmField`` for ``use_rep``, a ``LayerField`` for ``X`` or a layer),
        which writes only the usual ``_scvi_uuid`` and ``_scvi_manager_uuid`` keys
        into ``adata.uns``; the data are not copied or rewritten. With ``check`` the
        embedding is checked as by :func:`scsae.pp.check_embedding` (a warning per
        problem found).

        Parameters
        ----------
        adata
            AnnData or MuData (not a view: ``adata = adata.copy()`` first).
        {use_rep}
        check
            Check the embedding for outlier cells, an uncentred mean, duplicated
            cells and near-constant dims.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`
            (``source_registry`` when a saved model is loaded).
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        emb = get_embedding(adata, use_rep=use_rep, layer=layer)
        if emb.n_dims < 2:
            msg = (
                f"{emb.name} has 1 dimension; an SAE splits an embedding of several dims "
                "into directions. Pass a multi-dimensional embedding (e.g. use_rep='X_pca')."
            )
            raise ValueError(msg)
        if getattr(adata, "is_view", False):
            msg = (
                "adata is a view; register a copy instead: `adata = adata.copy()` "
                "(a view cannot hold the registration)."
            )
            raise ValueError(msg)
        if check and kwargs.get("source_registry") is None:
            embedding_diagnostics(emb)
        # a copy of registered data carries its uuid: give it its own, so that
        # registering it does not take the registration away from the original
        known = cls._setup_adata_manager_store.get(adata.uns.get(_SCVI_UUID_KEY))
        if known is not None and known.adata is not adata:
            _assign_adata_uuid(adata, overwrite=True)
        manager = AnnDataManager(
            fields=[input_field(use_rep, layer)], setup_method_args=setup_method_args
        )
        with quiet_scvi():
            manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    @classmethod
    def _get_most_recent_anndata_manager(
        cls,
        adata: AnnData,
        required: bool = False,  # noqa: FBT001, FBT002 - the signature of BaseModelClass
    ) -> AnnDataManager | None:
        """The registration of ``adata``; a copy of registered data gets the original's setup.

        Data registered only on a model instance (given to it after setup) count
        as registered too.
        """
        uns = getattr(adata, "uns", None)
        uuid = None if uns is None else uns.get(_SCVI_UUID_KEY)
        known = cls._setup_adata_manager_store.get(uuid)
        if known is None and uuid is not None:
            instances = cls._per_instance_manager_store.values()
            known = next((store[uuid] for store in instances if uuid in store), None)
        if known is not None:
            if known.adata is not adata:
                # a copy (or data read back from h5ad in this session): carry the setup over
                _assign_adata_uuid(adata, overwrite=True)
                with quiet_scvi():
                    known = known.transfer_fields(adata)
            cls.register_manager(known)
        return super()._get_most_recent_anndata_manager(adata, required=required)

    @doc_params(n_features_etc=DOC_ARCHITECTURE)
    def __init__(
        self,
        adata: AnnData,
        *,
        n_features: int | None = None,
        expansion_factor: float = 16,
        k: int | None = None,
        architecture: str = "topk",
        sparsity_coefficient: float | None = None,
        random_state: int = 0,
        **config_kwargs: Any,
    ) -> None:
        super().__init__(adata)
        # the instance's managers go with the instance (scvi-tools would keep them, and the data, alive)
        weakref.finalize(self, type(self)._per_instance_manager_store.pop, self.id, None)
        setup = self.adata_manager.registry["setup_args"]
        self.use_rep: str | None = setup["use_rep"]
        self.layer: str | None = setup["layer"]
        self.n_dims = n_dims = registry_n_dims(self.registry_)
        n_obs = self._embedding().n_obs
        arch = get_architecture(architecture)
        k = default_k(n_dims) if k is None else int(k)
        if n_features is None:
            n_features = default_n_features(n_dims, n_obs, k, expansion_factor)
        n_features = int(n_features)
        if n_features < 2:
            msg = f"n_features={n_features} is too small; use at least 2 (typically 8-32 x n_dims)."
            raise ValueError(msg)
        if arch.uses_k and k >= n_dims:
            msg = (
                f"k={k} active features for {n_dims} input dims: the SAE could reconstruct "
                f"every cell without being sparse. Pass k < {n_dims} (or leave k=None)."
            )
            raise ValueError(msg)
        if arch.uses_k and not 1 <= k < n_features:
            msg = f"k={k} must be between 1 and n_features - 1 = {n_features - 1}; lower k or raise n_features."
            raise ValueError(msg)
        self.random_state = random_state
        config = SAEConfig(
            n_input=n_dims,
            n_features=n_features,
            architecture=architecture,
            k=k,
            sparsity_coefficient=sparsity_coefficient,
            **config_kwargs,
        )
        generator = torch.Generator().manual_seed(random_state)
        self.module = SAEModule(config, generator=generator)
        self.train_params_: dict[str, Any] = {}
        self.history_: dict[str, pd.DataFrame] = {}
        #: cells of the training data held out of training (boolean mask), fixed by the first train()
        self.heldout_mask_: np.ndarray | None = None
        #: rank-k PCA of the training cells (``mean``, ``components``): the linear baseline
        self.baseline_: dict[str, np.ndarray] | None = None
        self._model_summary_string = self._describe()
        # resolved sizes (not None) are what a saved model is rebuilt with
        self.init_params_ = self._get_init_params(locals())

    def _describe(self) -> str:
        cfg = self.module.config
        return (
            f"SparseAutoencoder({cfg.architecture}, {cfg.n_input} dims -> {cfg.n_features} features, "
            f"k={cfg.k}, input {describe_rep(self.use_rep, self.layer)}"
        )

    def __repr__(self) -> str:
        state = "trained" if self.is_trained_ else "untrained"
        return f"{self._describe()}; {state})"

    def view_anndata_setup(
        self,
        adata: AnnData | None = None,
        hide_state_registries: bool = False,  # noqa: FBT001, FBT002 - the signature of BaseModelClass
    ) -> None:
        """Print the registration of the training data or of ``adata``.

        Parameters
        ----------
        adata
            Data registered with :meth:`setup_anndata` or transferred to the model
            (a copy of registered data, or data given to the model).
        hide_state_registries
            Print only the summary.
        """
        import rich.pretty  # noqa: F401 - scvi-tools prints with it but does not import it

        with quiet_scvi():
            super().view_anndata_setup(adata, hide_state_registries=hide_state_registries)

    @property
    def device(self) -> torch.device:
        """Device of the module's weights."""
        return next(self.module.parameters()).device

    # --- data ------------------------------------------------------------------
    def _embedding(self, adata: AnnData | None = None) -> Embedding:
        """The registered input of ``adata`` (default: the training data), width checked.

        Other data are registered (the setup transferred, as scvi-tools models
        do) unless they are a view, which is read without being touched.
        """
        target = self.adata if adata is None else adata
        emb = get_embedding(target, use_rep=self.use_rep, layer=self.layer)
        if emb.n_dims != self.n_dims:
            msg = (
                f"{emb.name} has {emb.n_dims} dims but the model was built for {self.n_dims}. "
                "Use the same embedding the model was trained on (same key and number of components)."
            )
            raise ValueError(msg)
        if target is not self.adata and not getattr(target, "is_view", False):
            with quiet_scvi():
                self._validate_anndata(target)
        return emb

    def _batches(
        self,
        emb: Embedding,
        indices: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool,
        seed: int = 0,
        out_of_core: bool,
    ) -> ShuffledBatches | ChunkedShuffledBatches:
        """Minibatch stream: random rows in memory, or chunk-wise from disk."""
        cls = ChunkedShuffledBatches if out_of_core else ShuffledBatches
        return cls(emb, indices, batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)

    # --- training --------------------------------------------------------------
    @doc_params(train=DOC_TRAIN, progress_bar=DOC_PROGRESS_BAR)
    def train(
        self,
        *,
        max_epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        train_size: float = 0.9,
        early_stopping: bool | None = None,
        early_stopping_patience: int | None = None,
        random_state: int | None = None,
        accelerator: str = "auto",
        devices: int | str | list[int] = "auto",
        enable_progress_bar: bool | None = None,
        code_inference: str | Inference | None = None,
        out_of_core: bool | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        """Train with Lightning (Adam, warm-up and decay, gradient clipping, AuxK).

        A seeded ``1 - train_size`` of the cells is held out (``heldout_mask_``);
        by default training stops when their FVU stops improving and ends with
        the weights of the best epoch. Calling ``train`` again continues from the
        current weights, normalisation and held-out cells.

        Parameters
        ----------
        {train}
        early_stopping_patience
            Epochs without improvement before stopping; `None`: a tenth of
            ``max_epochs``, at least 10 (small data sets run hundreds of short
            epochs, and a held-out FVU of few cells is noisy).
        accelerator
            Lightning accelerator (``"cpu"``, ``"gpu"``, ``"auto"``...).
        devices
            Lightning devices.
        {progress_bar}
        code_inference
            `None` (default): train the SAE end to end. A strategy name (e.g.
            ``"omp"``) or instance: learn the dictionary by sparse coding instead,
            alternating code inference with that strategy and decoder updates,
            while the encoder learns to amortise codes over the decoder (see
            :mod:`scsae.models._inference._dictionary`).
        out_of_core
            Stream minibatches by contiguous chunks in random order, shuffled
            within a bounded buffer on a background thread, instead of reading
            random rows; memory stays bounded whatever the number of cells.
            `None` (default): only when the embedding is not in memory
            (``backed="r"`` AnnData, :func:`anndata.experimental.read_lazy`,
            dask, zarr or h5py arrays).
        **trainer_kwargs
            Passed to :class:`lightning.pytorch.Trainer`: e.g. ``strategy="ddp"``
            with ``devices=N`` for data-parallel training (``batch_size`` is the
            global batch; each rank reads its own shard), ``precision="bf16-mixed"``
            for autocast on GPU (the default is fp32).
        """
        seed = self.random_state if random_state is None else random_state
        if code_inference is not None:
            if isinstance(code_inference, str):
                code_inference = get_inference(code_inference)
            check_code_inference(code_inference)
        emb = self._embedding()
        n_obs = emb.n_obs
        if n_obs < MIN_CELLS:
            msg = f"{emb.name} has {n_obs} cells; an SAE needs at least {MIN_CELLS}."
            raise ValueError(msg)
        if not 0 < train_size <= 1:
            msg = f"train_size={train_size} must be in (0, 1]."
            raise ValueError(msg)
        emb.check_finite()
        if out_of_core is None:
            out_of_core = emb.is_lazy
        resume = self.is_trained_
        heldout = self._split(n_obs, train_size, seed, resume=resume)
        train_idx, val_idx = np.flatnonzero(~heldout), np.flatnonzero(heldout)
        n_train = len(train_idx)
        if early_stopping is None:
            early_stopping = len(val_idx) > 0
        if early_stopping and not len(val_idx):
            msg = "early_stopping needs a validation split; pass train_size < 1."
            raise ValueError(msg)
        if batch_size is None:
            batch_size = default_batch_size(n_train)
        elif not 1 <= batch_size <= n_train:
            msg = (
                f"batch_size={batch_size} exceeds the {n_train} training cells "
                f"(of {n_obs}); pass batch_size<={n_train} or leave it as None."
            )
            raise ValueError(msg)
        if max_epochs is None:
            max_epochs = default_max_epochs(n_train, batch_size)
        if early_stopping_patience is None:
            early_stopping_patience = max(10, math.ceil(max_epochs / 10))
        cfg = self.module.config
        lr = default_lr(cfg.n_features) if lr is None else float(lr)
        if not resume:
            if "dead_after_cells" not in self.init_params_["kwargs"]["config_kwargs"]:
                # a feature silent for a whole pass over the data is dead (capped for atlases)
                cfg.dead_after_cells = int(min(n_train, 1_000_000))
            self._fit_normalization(emb, train_idx, seed=seed)
            self.module.cells_since_fired.zero_()
        plan = SAETrainingPlan(self.module, lr=lr, code_inference=code_inference)
        train_batches = self._batches(
            emb,
            train_idx,
            batch_size,
            shuffle=True,
            drop_last=True,
            seed=seed,
            out_of_core=out_of_core,
        )
        val_batches = (
            self._batches(
                emb,
                val_idx,
                min(len(val_idx), INFERENCE_BATCH),
                shuffle=False,
                drop_last=False,
                out_of_core=out_of_core,
            )
            if len(val_idx)
            else None
        )
        best, callbacks = model_selection(early_stopping, early_stopping_patience)
        run_training(
            plan,
            batch_data(train_batches, val_batches, train_idx=train_idx, val_idx=val_idx),
            owner=self,
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            enable_progress_bar=enable_progress_bar,
            callbacks=callbacks,
            **{"gradient_clip_val": GRADIENT_CLIP, **trainer_kwargs},
        )
        history = dict(plan.history)
        best_epoch = best.best_epoch if best is not None and best.state is not None else None
        self.module.cpu()
        if not self.module.activation.unit_norm_decoder:
            self.module.fold_decoder_norms()
        self.module.eval()
        self._calibrate(emb, train_idx, seed=seed)
        if resume:  # continue the curves of the earlier calls
            history = {
                key: [*self.history_.get(key, pd.DataFrame({key: []}))[key].tolist(), *values]
                for key, values in history.items()
            }
        self.history_ = {key: pd.DataFrame({key: values}) for key, values in history.items()}
        rank = cfg.k if self.module.activation.uses_k else round(history["train_l0"][-1])
        self.baseline_ = rank_k_baseline(
            emb.iter_rows(train_idx, INFERENCE_BATCH), min(max(1, rank), self.n_dims)
        )
        previous = self.train_params_
        self.train_params_ = {
            "max_epochs": int(max_epochs),
            "epochs_trained": len(history.get("train_loss", [])),
            "best_epoch": -1 if best_epoch is None else int(best_epoch),
            "batch_size": int(batch_size),
            "lr": lr,
            "train_size": float(train_size),
            "n_train": int(n_train),
            "n_heldout": len(val_idx),
            "early_stopping": bool(early_stopping),
            "early_stopping_patience": int(early_stopping_patience),
            "random_state": int(seed),
            "split_random_state": int(previous.get("split_random_state", seed)),
            "dead_after_cells": int(cfg.dead_after_cells),
            "out_of_core": bool(out_of_core),
            "kernel": self.module.kernel,
            "encoder_init": self.module.encoder_init,
            "decoder_lr": plan.decoder_lr(),
            "precision": str(trainer_kwargs.get("precision", "32-true")),
            "n_train_calls": int(previous.get("n_train_calls", 0)) + 1,
        }
        if code_inference is not None:
            self.train_params_["code_inference"] = code_inference.params()
        self.is_trained_ = True

    def _split(self, n_obs: int, train_size: float, seed: int, *, resume: bool) -> np.ndarray:
        """Boolean mask of held-out cells: seeded on the first call, kept by later ones."""
        if resume:
            mask = self.heldout_mask_
            if mask is None or len(mask) != n_obs:
                msg = (
                    f"The data now have {n_obs} cells, not the "
                    f"{0 if mask is None else len(mask)} of the first train() call; "
                    "train a new model on the new data."
                )
                raise ValueError(msg)
            if train_size != self.train_params_.get("train_size", train_size):
                msg = (
                    f"train() continues training on the cells of its first call "
                    f"(train_size={self.train_params_['train_size']}); the held-out cells "
                    "cannot change. Leave train_size as it was, or train a new model."
                )
                raise ValueError(msg)
            return mask
        mask = np.zeros(n_obs, dtype=bool)
        if train_size < 1:
            order = np.random.default_rng(seed).permutation(n_obs)
            n_train = max(1, min(n_obs - 1, round(train_size * n_obs)))
            mask[order[n_train:]] = True
        else:
            warnings.warn(
                "train_size=1.0: no cells are held out, so every metric is measured on "
                "training cells (the held-out 'fvu' is NaN) and no model selection runs. "
                "Keep train_size < 1 for figures a reviewer can trust.",
                UserWarning,
                stacklevel=3,
            )
        self.heldout_mask_ = mask
        return mask

    @torch.no_grad()
    def _fit_normalization(self, emb: Embedding, train_idx: np.ndarray, *, seed: int) -> None:
        """Store the mean and the scale giving unit mean squared norm; start ``b_dec`` and encoder scale."""
        total = np.zeros(emb.n_dims)
        total_sq = 0.0
        for rows in emb.iter_rows(train_idx, INFERENCE_BATCH):
            block = rows.astype(np.float64)
            total += block.sum(0)
            total_sq += float(np.einsum("ij,ij->", block, block))
        n = len(train_idx)
        mean = total / n
        mean_sq_norm = max(total_sq / n - float(mean @ mean), 1e-12)
        self.module.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.module.input_scale.fill_(math.sqrt(mean_sq_norm))
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(train_idx, size=min(n, MEDIAN_SAMPLE), replace=False))
        sample = self.module.normalize(torch.from_numpy(emb.take(rows)))
        self.module.initialize_decoder_bias(sample)
        self.module.initialize_encoder_scale(sample)

    @torch.no_grad()
    def _calibrate(self, emb: Embedding, train_idx: np.ndarray, *, seed: int) -> None:
        """Let the architecture fix its inference state on a sample of training cells."""
        if type(self.module.activation).calibrate is Architecture.calibrate:
            return  # nothing to calibrate: skip reading the sample
        rng = np.random.default_rng([seed, 1])
        sample = np.sort(
            rng.choice(train_idx, size=min(len(train_idx), CALIBRATION_SAMPLE), replace=False)
        )
        pre = torch.cat(
            [
                self.module.pre_activations(self.module.normalize(torch.from_numpy(rows)))
                for rows in emb.iter_rows(sample, INFERENCE_BATCH)
            ]
        )
        self.module.activation.calibrate(pre)

    @property
    def history(self) -> dict[str, pd.DataFrame]:
        """Per-epoch training metrics (``train_fvu``, ``validation_fvu``, ``train_l0``...)."""
        return self.history_

    # --- outputs ---------------------------------------------------------------
    def _check_trained(self) -> None:
        if not self.is_trained_:
            msg = "The model is not trained yet; call model.train() first."
            raise RuntimeError(msg)

    @property
    def decoder(self) -> np.ndarray:
        """Unit-norm feature directions in embedding space, features x dims."""
        return self.module.W_dec.detach().cpu().numpy().copy()

    @property
    def bias(self) -> np.ndarray:
        """Reconstruction of a cell with no active feature, in embedding units."""
        m = self.module
        return (m.input_mean + m.input_scale * m.b_dec).detach().cpu().numpy()

    def get_inference(self, inference: str | Inference = "amortized", **options: Any) -> Inference:
        """An inference strategy over this model's dictionary, fitted if it learns.

        Parameters
        ----------
        inference
            Name in :data:`scsae.models.INFERENCE`, or a strategy instance.
        **options
            Settings of the named strategy.
        """
        self._check_trained()
        strategy = get_inference(inference, **options) if isinstance(inference, str) else inference
        if strategy.needs_fit:
            emb = self._embedding()
            seed = self.train_params_.get("random_state", self.random_state)
            batch_size = self.train_params_.get("batch_size", default_batch_size(emb.n_obs))
            batches = self._batches(
                emb,
                np.arange(emb.n_obs),
                batch_size,
                shuffle=True,
                drop_last=True,
                seed=seed,
                out_of_core=self.train_params_.get("out_of_core", emb.is_lazy),
            )
            module = self.module
            with torch.no_grad():
                normalised = (module.normalize(b) for b in batches)
                strategy.train(module, normalised)
        return strategy

    @torch.no_grad()
    def _transform(
        self,
        adata: AnnData | None,
        *,
        batch_size: int,
        activations: bool,
        reconstruction: bool,
        inference: str | Inference = "amortized",
    ) -> tuple[sparse.csr_matrix | None, np.ndarray | None, dict[str, float], np.ndarray]:
        """One pass over the cells: activations (CSR), reconstructions, metrics, frequencies.

        Reads the embedding by contiguous chunks and assembles the CSR matrix
        incrementally (:class:`~scsae.models._scale.CSRBuilder`), so lazy
        (on-disk) inputs are never materialised. On the training data the
        metrics are split into held-out and training cells; on other data
        every cell is held out.
        """
        strategy = self.get_inference(inference)
        emb = self._embedding(adata)
        emb.check_finite()
        module = self.module.eval()
        device = next(module.parameters()).device
        cfg = module.config
        heldout = self.heldout_mask_ if adata is None or adata is self.adata else None
        if heldout is not None and len(heldout) != emb.n_obs:
            msg = f"{emb.name} has {emb.n_obs} cells, not the {len(heldout)} the model was trained on."
            raise ValueError(msg)
        accs = {"heldout": MetricAccumulator(cfg.n_features)}
        if heldout is not None:
            accs["train"] = MetricAccumulator(cfg.n_features)
        capacity = emb.n_obs * cfg.k if module.activation.uses_k else 0
        builder = CSRBuilder(cfg.n_features, capacity=capacity) if activations else None
        recon = np.empty((emb.n_obs, emb.n_dims), dtype=np.float32) if reconstruction else None
        for sl, rows in emb.chunks(batch_size):
            x = torch.from_numpy(rows).to(device)
            # forward pass straight to CSR (top-k fast path for the SAE encoder)
            acts, x_hat = encode_chunk(module, module.normalize(x), strategy)
            x_hat = module.denormalize(x_hat).cpu().numpy()
            active = acts > 0
            base = (
                linear_baseline_reconstruction(rows, self.baseline_)
                if self.baseline_ is not None
                else None
            )
            mask = heldout[sl] if heldout is not None else np.ones(len(rows), dtype=bool)
            for name, keep in (("heldout", mask), ("train", ~mask)):
                if name in accs and keep.any():
                    accs[name].update(
                        rows[keep],
                        x_hat[keep],
                        np.asarray(active[keep].sum(0)).ravel(),
                        int(active[keep].sum()),
                        None if base is None else base[keep],
                    )
            if builder is not None:
                acts.data *= float(module.input_scale)
                builder.append(acts)
            if recon is not None:
                recon[sl] = x_hat
        acts_csr = builder.to_csr() if builder is not None else None
        n_heldout = accs["heldout"].n
        train = accs.get("train")
        metrics = split_report(
            accs["heldout"].result() if n_heldout else None,
            train.result() if train is not None and train.n else None,
        )
        metrics["n_heldout_cells"] = int(n_heldout)
        metrics["n_train_cells"] = int(train.n) if train is not None else 0
        counts = sum(acc.feature_counts for acc in accs.values())
        frequency = counts / max(emb.n_obs, 1)
        return acts_csr, recon, metrics, frequency

    def get_feature_activations(
        self,
        adata: AnnData | None = None,
        *,
        inference: str | Inference = "amortized",
        batch_size: int = INFERENCE_BATCH,
    ) -> sparse.csr_matrix:
        """Sparse feature activations, cells x features, in embedding units (float32 CSR).

        Parameters
        ----------
        adata
            Data to encode (same embedding key and width); defaults to the training data.
        inference
            Strategy that infers codes from the dictionary: a name in
            :data:`scsae.models.INFERENCE` (``"amortized"`` is the SAE encoder) or an
            instance from :meth:`get_inference` (to pass options or reuse a fitted one).
        batch_size
            Cells per inference batch.
        """
        acts, _, _, _ = self._transform(
            adata,
            batch_size=batch_size,
            activations=True,
            reconstruction=False,
            inference=inference,
        )
        return acts

    def get_reconstruction(
        self,
        adata: AnnData | None = None,
        *,
        inference: str | Inference = "amortized",
        batch_size: int = INFERENCE_BATCH,
    ) -> np.ndarray:
        """Reconstructed embedding, cells x dims (float32); arguments as :meth:`get_feature_activations`."""
        _, recon, _, _ = self._transform(
            adata,
            batch_size=batch_size,
            activations=False,
            reconstruction=True,
            inference=inference,
        )
        return recon

    def get_metrics(
        self,
        adata: AnnData | None = None,
        *,
        inference: str | Inference = "amortized",
        batch_size: int = INFERENCE_BATCH,
    ) -> dict[str, float]:
        """Quality metrics, held out; arguments as :meth:`get_feature_activations`.

        On the training data (``adata=None``) the figures come from the cells
        held out of training, with the training cells' beside them; on other
        data every cell is held out by nature.

        Returns
        -------
        ``fvu`` (the headline: held-out FVU), ``explained_variance``,
        ``baseline_fvu_rank_k`` (held-out FVU of a rank-``k`` PCA of the training
        cells), ``heldout_mean_l0``, ``heldout_dead_fraction``,
        ``heldout_dense_fraction``, ``heldout_shrinkage``, the same for the
        training cells prefixed ``train_`` (training data only), ``has_heldout``,
        ``n_heldout_cells`` and ``n_train_cells`` (definitions in
        :mod:`scsae.models._metrics`). Without held-out cells (``train_size=1``)
        the held-out figures are NaN.
        """
        _, _, metrics, _ = self._transform(
            adata,
            batch_size=batch_size,
            activations=False,
            reconstruction=False,
            inference=inference,
        )
        return metrics

    def transform(
        self,
        adata: AnnData | None = None,
        *,
        inference: str | Inference = "amortized",
        batch_size: int = INFERENCE_BATCH,
    ) -> tuple[sparse.csr_matrix, dict[str, float], np.ndarray]:
        """Activations, metrics and feature frequencies in one pass over the cells.

        Returns
        -------
        ``(activations, metrics, feature_frequency)``; see :meth:`get_feature_activations`
        and :meth:`get_metrics`.
        """
        acts, _, metrics, frequency = self._transform(
            adata,
            batch_size=batch_size,
            activations=True,
            reconstruction=False,
            inference=inference,
        )
        return acts, metrics, frequency

    # --- persistence -----------------------------------------------------------
    def save(
        self,
        dir_path: str | Path,
        *,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        **anndata_write_kwargs: Any,
    ) -> None:
        """Save the model in the scvi-tools format (``model.pt`` in ``dir_path``).

        The file holds the module's weights and buffers, the registry of the
        input, the init parameters and the model's state (``train_params_``,
        ``history_``, ``heldout_mask_``, ``baseline_``, the module configuration).

        Parameters
        ----------
        dir_path
            Directory to create (or to write into with ``overwrite``).
        prefix
            Prefix of the file names.
        overwrite
            Replace an existing saved model.
        save_anndata
            Also write the data (``adata.h5ad``), so that :meth:`load` needs none.
        **anndata_write_kwargs
            Passed to :meth:`anndata.AnnData.write_h5ad`.
        """
        target = Path(dir_path) / f"{prefix or ''}{SAVE_KEYS.MODEL_FNAME}"
        if target.exists() and not overwrite:
            msg = f"{target} exists; pass overwrite=True to replace it."
            raise FileExistsError(msg)
        # state of the module outside its state_dict, saved as model attributes
        self.config_ = self.module.config.to_dict()
        self.encoder_scale_ = float(self.module.encoder_scale)
        self.scsae_version_ = scsae_version()
        super().save(
            str(dir_path),
            prefix=prefix,
            overwrite=True,
            save_anndata=save_anndata,
            **anndata_write_kwargs,
        )

    @classmethod
    def load(
        cls,
        dir_path: str | Path,
        adata: AnnData | None = None,
        *,
        prefix: str | None = None,
        map_location: str | torch.device = "cpu",
    ) -> SparseAutoencoder:
        """Load a model saved with :meth:`save` onto ``adata``.

        Checks that the file holds this class, was written by this or an older
        scsae, and that ``adata`` has the embedding it was trained on with the
        same number of dims; ``adata`` is registered from the saved registry. A
        model saved by scsae 0.2 (its own format) is converted while loading,
        with a warning saying how to convert the files once
        (:meth:`convert_legacy_save`).

        Parameters
        ----------
        dir_path
            Directory given to :meth:`save`.
        adata
            Data holding the same embedding (key and width); `None` reads the
            data saved with ``save_anndata=True``.
        prefix
            Prefix of the file names.
        map_location
            Device to load the weights onto.
        """
        saved, path = read_saved(dir_path, prefix)
        if is_legacy(saved):
            saved = legacy_to_scvi(saved, cls.__name__, path)
            warnings.warn(
                f"{path} is in the save format of scsae 0.2; it was converted while loading. "
                f"Convert the files once with SparseAutoencoder.convert_legacy_save({str(dir_path)!r}, "
                "<new directory>) and load the new directory.",
                FutureWarning,
                stacklevel=2,
            )
        attrs = dict(saved[SAVE_KEYS.ATTR_DICT_KEY])
        registry = attrs.pop("registry_")
        name = registry.get("model_name")
        if name != cls.__name__:
            msg = f"{path} holds a {name!r}, not a {cls.__name__}."
            raise ValueError(msg)
        check_version(attrs.get("scsae_version_"), path)
        if adata is None:
            adata = cls._saved_data(path)
        args = registry["setup_args"]
        emb = get_embedding(adata, use_rep=args["use_rep"], layer=args["layer"])
        n_dims = registry_n_dims(registry)
        if emb.n_dims != n_dims:
            msg = (
                f"{emb.name} has {emb.n_dims} dims but the saved model expects {n_dims}; "
                "load it onto data with the embedding it was trained on."
            )
            raise ValueError(msg)
        var_names = saved[SAVE_KEYS.VAR_NAMES_KEY]
        if var_names is not None and uses_var_names(registry):
            _warn_other_genes(adata, var_names)
        cls.setup_anndata(adata, source_registry=registry, **{**args, "check": False})
        init = attrs.pop("init_params_")
        kwargs = {key: value for group in init["kwargs"].values() for key, value in group.items()}
        model = cls(adata, **init["non_kwargs"], **kwargs)
        for attr, value in attrs.items():
            setattr(model, attr, value)
        module = model.module
        for field, value in attrs.get("config_", {}).items():
            setattr(module.config, field, value)
        module.encoder_scale = float(attrs.get("encoder_scale_", 1.0))
        state = dict(saved[SAVE_KEYS.MODEL_STATE_DICT_KEY])
        state.pop("pyro_param_store", None)
        module.load_state_dict(state)
        module.to(map_location).eval()
        mask = model.heldout_mask_
        # the held-out cells belong to the training data: kept only for data of that size
        if mask is not None and len(mask) != emb.n_obs:
            model.heldout_mask_ = None
        return model

    @staticmethod
    def _saved_data(path: Path) -> AnnData:
        """The data written beside ``model.pt`` by ``save_anndata=True``."""
        prefix = path.name[: -len(SAVE_KEYS.MODEL_FNAME)]
        for file_name in (SAVE_KEYS.ADATA_FNAME, SAVE_KEYS.MDATA_FNAME):
            data_path = path.with_name(prefix + file_name)
            if data_path.exists():
                if file_name == SAVE_KEYS.MDATA_FNAME:
                    import mudata

                    return mudata.read_h5mu(data_path)
                import anndata

                return anndata.read_h5ad(data_path)
        msg = f"No data saved beside {path}; pass the data to load the model onto (adata=...)."
        raise ValueError(msg)

    @classmethod
    def convert_legacy_save(
        cls,
        dir_path: str | Path,
        output_dir_path: str | Path,
        overwrite: bool = False,  # noqa: FBT001, FBT002 - the signature of BaseModelClass
        prefix: str | None = None,
        **save_kwargs: Any,
    ) -> None:
        """Convert a model saved by scsae 0.2 to the scvi-tools format of this release.

        Parameters
        ----------
        dir_path
            Directory of the old save.
        output_dir_path
            Directory to write the converted ``model.pt`` into.
        overwrite
            Replace an existing converted model.
        prefix
            Prefix of the file names (in both directories).
        **save_kwargs
            Passed to :func:`torch.save`.
        """
        saved, path = read_saved(dir_path, prefix)
        if not is_legacy(saved):
            msg = f"{path} is already in the scvi-tools format; load it with {cls.__name__}.load."
            raise ValueError(msg)
        converted = legacy_to_scvi(saved, cls.__name__, path)
        target = Path(output_dir_path) / f"{prefix or ''}{SAVE_KEYS.MODEL_FNAME}"
        if target.exists() and not overwrite:
            msg = f"{target} exists; pass overwrite=True to replace it."
            raise FileExistsError(msg)
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(converted, target, **save_kwargs)


@contextmanager
def quiet_scvi() -> Iterator[None]:
    """Silence scvi-tools' INFO lines ("Generating sequential column names"...) in a registration."""
    logger = logging.getLogger("scvi")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _warn_other_genes(adata: AnnData, var_names: Any) -> None:
    """Warn when ``X`` or the layer read has other columns than the model was trained on."""
    names = adata.var_names.astype(str).to_numpy() if hasattr(adata, "var_names") else None
    if isinstance(var_names, dict) or names is None:  # MuData: the joint embedding is in obsm
        return
    if not np.array_equal(np.asarray(var_names, dtype=str), names):
        warnings.warn(
            "The genes (var_names) of adata differ from those the model was trained on; "
            "X or the layer must have the same columns in the same order.",
            UserWarning,
            stacklevel=3,
        )


@contextmanager
def registration_scope(adata: AnnData, *, keep: bool) -> Iterator[None]:
    """Undo the :class:`SparseAutoencoder` registration made inside the block.

    Always on error (the AnnData is left as it was); on success unless
    ``keep``. For functions such as :func:`scsae.tl.sae` that set up data only
    to train on it: ``adata.uns`` gets no scvi-tools keys and the class keeps no
    reference to the data.
    """
    uns = getattr(adata, "uns", None)
    keys = (_SCVI_UUID_KEY, _MANAGER_UUID_KEY)
    before = {key: uns[key] for key in keys if uns is not None and key in uns}
    store = SparseAutoencoder._setup_adata_manager_store
    old_id = before.get(_SCVI_UUID_KEY)
    old_manager = store.get(old_id)
    done = False
    try:
        yield
        done = True
    finally:
        if uns is not None and not (done and keep):
            new_id = uns.get(_SCVI_UUID_KEY)
            if new_id is not None and new_id in store and store[new_id].adata is adata:
                del store[new_id]
            for key in keys:
                uns.pop(key, None)
            uns.update(before)
            if old_manager is not None:
                store[old_id] = old_manager

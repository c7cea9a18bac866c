"""AnnData-facing SAMS-VAE model class (scvi-tools ``BaseModelClass``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data._utils import _check_if_view
from scvi.data.fields import CategoricalObsField, LayerField, ObsmField
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass
from scvi.train import TrainingPlan, TrainRunner

from .._utils._docs import doc_params
from .._utils._perturbation import DOC_PERTURBATION, check_controls, dosage_matrix
from .._utils._progress import quiet_lightning, show_progress
from ._samsvae_alignment import alignment_map, sparse_rotation, varimax
from ._samsvae_module import (
    DOSAGE_KEY,
    Covariance,
    Decoder,
    Guide,
    OffsetGuide,
    SAMSVAEModule,
    Variant,
)
from ._samsvae_predict import PREDICT_BATCH, log_normalize, sample_counterfactuals, seeded

DOSAGE_OBSM_KEY = "_samsvae_dosage"
# re-exported: tl and the benchmarks read them from here
__all__ = ["SAMSVAE", "log_normalize", "sparse_rotation", "varimax"]


class SAMSVAE(BaseModelClass):
    """Sparse Additive Mechanism Shift VAE for perturbation screens.

    Cell ``i`` with dosage row ``d_i`` (one-hot for a single perturbation,
    multi-hot for combinations, zero for controls) has latent
    ``z_i = z_b,i + sum_t d_it (e_t * m_t)``: a basal state plus sparse
    (masked) shifts, one per perturbation, that add up for combinations. Counts
    follow a negative binomial with the observed library size times a softmax
    decoder and per-gene dispersion (Bereket & Karaletsos, NeurIPS 2023).
    ``variant="additive"`` (no masks, a CPA-VAE-like baseline) and
    ``variant="cvae"`` (conditional VAE) are trained and evaluated the same way.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata` (raw counts).
    n_latent
        Latent dimensions. Room is needed for basal variation and for directions of their
        own for perturbations whose effect is not a basal programme (a single knocked-down
        transcript): the tilted guide lets the likelihood move a shift only in dimensions the
        counts leave undetermined. On Papalexi (26 targets) 10 dimensions recovered 3 of 8
        own-gene knockdowns, 32 recovered 6-7 of 8 (see the docs).
    n_hidden
        Width of hidden layers.
    n_layers
        Hidden layers of encoder and decoder.
    variant
        ``"samsvae"``, ``"additive"`` (no masks) or ``"cvae"``.
    guide
        ``"mean_field"`` or ``"correlated"`` (``q(e_t | m_t)`` by a small network).
    mask_prior
        Prior probability that a perturbation moves a latent dimension.
    temperature
        Relaxed-Bernoulli temperature of the straight-through masks.
    n_particles
        Monte Carlo particles per training step.
    offset_guide
        How the basal posterior ``q(z_b | x, s)`` uses the perturbation's sampled offset
        ``s``. ``"tilt"`` (default): the encoder's Gaussian ``N(g(x), S(x))`` for an
        unperturbed cell is re-weighted to the perturbed prior ``z ~ N(s, I)``, which gives
        ``q(z_b | x, s) = N(g(x) + S(x) s - s, S(x))``: where the counts pin a latent
        dimension (small ``S``) the latent follows the counts, where they say little (a
        knocked-down transcript of a few UMIs per cell) it follows the prior shift, so the
        likelihood reaches the shift and the decoder learns what it does. ``"subtract"``:
        ``N(g(x) - s, S(x))``, the latent follows the counts whatever ``s`` and the shifts
        only follow the encoded cells (missed most single-gene knockdowns on Papalexi).
        ``"none"``: ``N(g(x), S(x))``, the encoder ignores ``s``. See the docs.
    offset_input
        Let the encoder's hidden layer read the offset too, so that ``g`` and ``S`` may
        depend on it (see :class:`~scsae.models._samsvae_module.SAMSVAEModule`). Off by
        default: no gain on Papalexi in our runs.
    dropout_rate
        Dropout in encoder and decoder.
    mask_init
        Initial mask logit; 0 (the default) starts every mask at probability 0.5, `None`
        at the prior, ``logit(mask_prior)``. With straight-through masks an entry that
        is rarely sampled open gets gradient only through its embedding, which in turn
        learns only while the mask is open; started at a sparse prior the masks stayed
        closed in our runs (no mask above 0.5 on the simulation, see the docs). Starting
        undecided lets the likelihood open the masks it needs and the KL to the sparse
        prior close the rest. Irrelevant with ``train(align_rounds > 0)``, whose first
        phase keeps the masks open.
    basal_covariance
        Covariance of the Gaussian ``q(z_b | x, ...)``: ``"full"`` (a Cholesky factor from
        the encoder) or ``"diagonal"`` (mean field, as in the paper). The likelihood and
        the ``N(0, I)`` priors are invariant to rotations of the latent space and only the
        sparse mask prior singles out a basis; a diagonal posterior adds a pull of its
        own, towards the axes in which each cell's posterior is uncorrelated. That pull
        grows with the number of cells while the mask prior's does not, so on our
        simulations it overrode the sparse basis (see docs). ``"full"`` removes it at a
        cost of ``n_latent * (n_latent - 1) / 2`` extra encoder outputs.
    embedding_init
        Standard deviation of the random initial embedding means, in units of the basal
        prior's (1). Shifts started near zero lie inside the basal cloud ``N(0, I)``, where
        a perturbation-specific response of the decoder costs about as much likelihood in
        basal noise as it gains (a saddle that training leaves slowly); started three
        prior standard deviations out, each perturbation's cells sit apart from the basal
        ones and the decoder learns their effect at once, as a conditional VAE's decoder
        does from its one-hot input; the ``N(0, I)`` prior then pulls the shifts back.
    decoder
        ``"mlp"`` (``n_layers`` hidden layers) or ``"linear"``: gene proportions
        ``softmax(W z + b)``, under which shifts that add in the latent add in log
        expression, so a combination's predicted effect is the sum of its parts' (up to
        the normalisation of the softmax). Through an MLP the sum of two shifts lands
        where no training cell was and the decoder's response there is unconstrained.
        ``"linear_shift"``: ``softmax(f(z_b) + W s)``, an MLP ``f`` of the basal latent
        plus a linear map of the perturbation offset ``s = sum_t d_t (e_t * m_t)`` (of the
        dosage for ``variant="cvae"``): basal variation stays non-linear while
        perturbation effects add in log expression.
    random_state
        Seed of the weight initialisation (the global torch RNG is left untouched).

    Examples
    --------
    >>> import scsae
    >>> adata = scsae.datasets.simulate_perturbations()
    >>> scsae.SAMSVAE.setup_anndata(adata, perturbation_key="target", control="non-targeting")
    >>> model = scsae.SAMSVAE(adata, n_latent=6)
    >>> model.train(max_epochs=50)
    >>> model.get_mask_probabilities()
    >>> cells = model.predict(["P0+P3"], n_cells=200)
    """

    _module_cls = SAMSVAEModule

    def __init__(
        self,
        adata: AnnData,
        *,
        n_latent: int = 32,
        n_hidden: int = 128,
        n_layers: int = 1,
        variant: Variant = "samsvae",
        guide: Guide = "mean_field",
        mask_prior: float = 0.1,
        temperature: float = 0.5,
        n_particles: int = 5,
        offset_guide: OffsetGuide = "tilt",
        offset_input: bool = False,
        dropout_rate: float = 0.0,
        mask_init: float | None = 0.0,
        basal_covariance: Covariance = "full",
        embedding_init: float = 3.0,
        decoder: Decoder = "mlp",
        random_state: int = 0,
    ) -> None:
        super().__init__(adata)
        self.perturbations_ = [str(p) for p in self._registered_perturbations()]
        n_batch = int(self.summary_stats.get("n_batch", 1))
        with seeded(random_state):
            self.module = self._build_module(
                n_batch=n_batch,
                n_latent=n_latent,
                n_hidden=n_hidden,
                n_layers=n_layers,
                variant=variant,
                guide=guide,
                mask_prior=mask_prior,
                temperature=temperature,
                n_particles=n_particles,
                offset_guide=offset_guide,
                offset_input=offset_input,
                dropout_rate=dropout_rate,
                mask_init=mask_init,
                basal_covariance=basal_covariance,
                embedding_init=embedding_init,
                decoder=decoder,
            )
        self._model_summary_string = (
            f"SAMSVAE(variant={variant!r}, guide={guide!r}, n_latent={n_latent}, "
            f"{len(self.perturbations_)} perturbations, {self.summary_stats.n_vars} genes)"
        )
        self.train_params_: dict[str, Any] = {}
        self.init_params_ = self._get_init_params(locals())

    def _build_module(self, *, n_batch: int, **kwargs: Any) -> SAMSVAEModule:
        return SAMSVAEModule(
            n_input=self.summary_stats.n_vars,
            n_perturbations=len(self.perturbations_),
            n_batch=n_batch,
            **kwargs,
        )

    # --- setup ---------------------------------------------------------------------
    @classmethod
    @doc_params(perturbation=DOC_PERTURBATION)
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        *,
        perturbation_key: str | None = "target",
        control: str | Sequence[str] = "non-targeting",
        delimiter: str = "+",
        dosage_key: str | None = None,
        batch_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Register raw counts, the perturbation dosage and an optional batch.

        Parameters
        ----------
        adata
            AnnData with raw counts in ``X`` or ``layer``.
        layer
            Layer of raw counts; `None` uses ``adata.X``.
        {perturbation}
        dosage_key
            Use this ``adata.obsm`` entry (cells x perturbations, a DataFrame whose
            columns name the perturbations, e.g. from
            :func:`scsae.pp.perturbation_dosage`) instead of parsing
            ``perturbation_key``.
        batch_key
            Column of ``adata.obs`` with a batch (replicate) covariate.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.

        Notes
        -----
        When the dosage is parsed from ``perturbation_key`` it is written to
        ``adata.obsm['_samsvae_dosage']`` (a DataFrame, perturbations as columns),
        besides the usual scvi-tools keys in ``adata.uns``. The perturbation
        names are kept in the registry and saved with the model; data given
        later (test cells, :meth:`~scvi.model.base.BaseModelClass.load`) are parsed against them. ``adata`` is
        unchanged if an error is raised.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        source_registry = kwargs.get("source_registry")
        known = None
        if source_registry is not None:
            known = source_registry["field_registries"][DOSAGE_KEY]["state_registry"][
                "column_names"
            ]
        if layer is not None and layer not in adata.layers:
            msg = f"layer={layer!r} is not in adata.layers; layers are {list(adata.layers)}."
            raise KeyError(msg)
        if batch_key is not None and batch_key not in adata.obs:
            msg = f"batch_key={batch_key!r} is not a column of adata.obs; columns are {list(adata.obs.columns)}."
            raise KeyError(msg)
        if dosage_key is None:
            if perturbation_key is None or perturbation_key not in adata.obs:
                msg = (
                    f"perturbation_key={perturbation_key!r} is not a column of adata.obs; columns are "
                    f"{list(adata.obs.columns)}. Name the perturbation column or pass dosage_key."
                )
                raise KeyError(msg)
            if source_registry is None:  # data transferred to a trained model may lack controls
                check_controls(
                    adata.obs[perturbation_key], control=control, perturbation_key=perturbation_key
                )
            dosage = dosage_matrix(
                adata.obs[perturbation_key],
                control=control,
                delimiter=delimiter,
                perturbations=known,
                index=adata.obs_names,
            )
            if dosage.shape[1] == 0:
                msg = f"adata.obs[{perturbation_key!r}] holds only controls ({control!r}); nothing to model."
                raise ValueError(msg)
            adata.obsm[DOSAGE_OBSM_KEY] = dosage
            obsm_key = DOSAGE_OBSM_KEY
        else:
            if dosage_key not in adata.obsm:
                msg = (
                    f"dosage_key={dosage_key!r} is not in adata.obsm; keys are {list(adata.obsm)}."
                )
                raise KeyError(msg)
            if not isinstance(adata.obsm[dosage_key], pd.DataFrame):
                msg = (
                    f"adata.obsm[{dosage_key!r}] must be a DataFrame whose columns name the "
                    "perturbations (scsae.pp.perturbation_dosage writes one)."
                )
                raise TypeError(msg)
            obsm_key = dosage_key
        anndata_fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            ObsmField(DOSAGE_KEY, obsm_key),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        ]
        adata_manager = AnnDataManager(fields=anndata_fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    def _registered_perturbations(self) -> list[str]:
        return list(self.adata_manager.get_state_registry(DOSAGE_KEY)["column_names"])

    @property
    def _setup_args(self) -> dict[str, Any]:
        return self.adata_manager.registry["setup_args"]

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True) -> AnnData:  # noqa: FBT001, FBT002
        """Parse the labels of ``adata`` against the registered perturbations, then transfer.

        The labels are parsed on every call, so a dosage left in ``adata.obsm`` by an
        earlier call is rewritten when the labels have changed since (never reused stale).
        """
        if self.adata_manager is not None and self._setup_args.get("dosage_key") is None:
            target = self.adata if adata is None else adata
            if target is None:  # loaded without data: the saved registry sets up ``adata``
                return super()._validate_anndata(adata, copy_if_view=copy_if_view)
            args = self._setup_args
            key = args["perturbation_key"]
            if key not in target.obs:
                msg = f"adata.obs has no column {key!r}, the perturbation column the model was set up with."
                raise KeyError(msg)
            dosage = dosage_matrix(
                target.obs[key],
                control=args["control"],
                delimiter=args["delimiter"],
                perturbations=self.perturbations_,
                index=target.obs_names,
            )
            stale = target.obsm.get(DOSAGE_OBSM_KEY)
            if stale is None or not (isinstance(stale, pd.DataFrame) and stale.equals(dosage)):
                if adata is not None:
                    _check_if_view(adata, copy_if_view=copy_if_view)
                target.obsm[DOSAGE_OBSM_KEY] = dosage
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    def _dosage(self, adata: AnnData) -> np.ndarray:
        data = self.get_anndata_manager(adata, required=True).get_from_registry(DOSAGE_KEY)
        return np.asarray(data, dtype=np.float32)

    # --- training ------------------------------------------------------------------
    def train(
        self,
        *,
        max_epochs: int = 120,
        batch_size: int = 128,
        lr: float = 1e-3,
        global_lr_factor: float = 10.0,
        align_rounds: int = 0,
        train_size: float = 0.9,
        random_state: int = 0,
        early_stopping: bool = False,
        accelerator: str = "auto",
        devices: int | str | list[int] = "auto",
        n_epochs_kl_warmup: int | None = None,
        enable_progress_bar: bool | None = None,
        plan_kwargs: dict[str, Any] | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        """Maximise the multi-particle ELBO with scvi-tools' Lightning training plan.

        Parameters
        ----------
        max_epochs
            Passes over the training cells; 120 (with ``batch_size=128``, the paper's
            batch) is the recipe of the Papalexi benchmark (see the docs).
        batch_size
            Cells per minibatch.
        lr
            Adam learning rate of the networks.
        global_lr_factor
            The variational parameters of masks and embeddings learn ``global_lr_factor``
            times faster: they see each perturbation's cells only, a small part of
            every minibatch.
        align_rounds
            Re-expressions of the latent basis during training (SAMS-VAE only):
            training is split into ``align_rounds + 1`` equal phases. The first phase
            keeps every mask open (the no-mask model) so that the shift vectors are
            fitted in full; between phases the latent space is whitened (the aggregate
            ``q(z_b)`` of the training cells gets identity covariance, the linear
            reparameterisation that minimises the basal KL) and rotated to the basis
            in which the expected shifts ``E[e_t * m_t]`` have the smallest L1 norm
            (``sparse_rotation`` in ``scsae.models._samsvae_alignment``), and the masks restart at the prior. The
            likelihood is unchanged by these maps; with ``basal_covariance="full"`` so
            is ``q(z_b)``, and the sparse mask prior is the only term that prefers a
            basis, while its gradient alone turns a basis very slowly (see the docs).
            Not part of the paper's procedure; 0 switches it off.
        train_size
            Fraction of cells used for training; the rest is scvi-tools'
            validation split (``elbo_validation``, early stopping). The
            per-perturbation KL weights count training cells only.
        random_state
            Seed of the split, the initialisation of the sampling and the shuffling.
        early_stopping
            Stop when ``elbo_validation`` stops improving (needs ``train_size < 1``).
        accelerator, devices
            Lightning accelerator and devices.
        n_epochs_kl_warmup
            Epochs over which the KL weight rises from 0 to 1; `None`: no warm-up.
        enable_progress_bar
            Show Lightning's progress bar; `None` (default): the rule of :func:`scsae.tl.sae`.
        plan_kwargs
            Further arguments of :class:`scvi.train.TrainingPlan` (``weight_decay``...).
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer` (``check_val_every_n_epoch``...).

        Notes
        -----
        Sets ``model.history`` (per-epoch losses), ``model.is_trained_`` and
        ``model.train_params_`` (arguments, ``n_train``, ``epochs_trained`` and
        ``seconds_per_epoch``).
        """
        self._validate_anndata()  # labels changed since setup: parse them again
        n_obs = self.adata.n_obs
        if not 0 < train_size <= 1:
            msg = f"train_size={train_size} must be in (0, 1]."
            raise ValueError(msg)
        if early_stopping and train_size >= 1:
            msg = "early_stopping needs a validation split; pass train_size < 1."
            raise ValueError(msg)
        max_epochs = int(max_epochs)
        rng = np.random.default_rng(random_state)
        order = rng.permutation(n_obs)
        n_train = (
            n_obs if train_size >= 1 else int(min(n_obs - 1, max(1, round(train_size * n_obs))))
        )
        train_idx, val_idx = np.sort(order[:n_train]), np.sort(order[n_train:])
        counts = (self._dosage(self.adata)[train_idx] != 0).sum(0)
        self.module.perturbation_counts.copy_(torch.as_tensor(counts, dtype=torch.float32))
        unseen = [p for p, c in zip(self.perturbations_, counts, strict=True) if c == 0]
        if unseen:
            logg.warning(f"no training cells carry {unseen}; their effects stay at the prior.")
        with seeded(random_state):
            self._fit(
                train_idx,
                val_idx,
                max_epochs=max_epochs,
                batch_size=batch_size,
                lr=lr,
                global_lr_factor=global_lr_factor,
                align_rounds=align_rounds,
                early_stopping=early_stopping,
                accelerator=accelerator,
                devices=devices,
                n_epochs_kl_warmup=n_epochs_kl_warmup,
                enable_progress_bar=enable_progress_bar,
                plan_kwargs=plan_kwargs,
                trainer_kwargs=trainer_kwargs,
            )
        self.train_params_.update(
            {
                "train_size": float(train_size),
                "n_train": int(n_train),
                "random_state": int(random_state),
            }
        )

    def _fit(
        self,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        *,
        max_epochs: int,
        batch_size: int,
        lr: float,
        global_lr_factor: float,
        align_rounds: int,
        early_stopping: bool,
        accelerator: str,
        devices: int | str | list[int],
        n_epochs_kl_warmup: int | None,
        enable_progress_bar: bool,
        plan_kwargs: dict[str, Any] | None,
        trainer_kwargs: dict[str, Any],
    ) -> None:
        """The training phases of :meth:`train` (run inside its seeded block)."""
        n_train = len(train_idx)
        splitter = DataSplitter(
            self.adata_manager,
            external_indexing=[train_idx, val_idx, np.array([], dtype=int)],
            batch_size=min(batch_size, n_train),
        )
        plan_kwargs = dict(plan_kwargs or {})
        plan_kwargs.setdefault("n_epochs_kl_warmup", n_epochs_kl_warmup)
        plan_kwargs.setdefault("n_steps_kl_warmup", None)
        if (
            "optimizer_creator" not in plan_kwargs
            and plan_kwargs.get("optimizer", "Adam") == "Adam"
        ):
            plan_kwargs["optimizer"] = "Custom"
            plan_kwargs["optimizer_creator"] = self._optimizer_creator(
                lr,
                global_lr_factor,
                plan_kwargs.pop("weight_decay", 1e-6),
                plan_kwargs.pop("eps", 0.01),
            )
        trainer_kwargs.setdefault("early_stopping_monitor", "elbo_validation")
        check_val = trainer_kwargs.pop("check_val_every_n_epoch", 1 if len(val_idx) else None)
        if self.module.variant != "samsvae":
            align_rounds = 0  # without masks the ELBO is rotation invariant: nothing to align
        phases = np.diff(np.linspace(0, max_epochs, align_rounds + 2).round().astype(int))
        start = logg.info(f"training {self.module.variant} on {n_train} cells")
        t0 = time.perf_counter()
        epochs, histories = 0, []
        for k, phase_epochs in enumerate(phases):
            if k > 0:
                self.module.transform_latent(self._alignment_map(train_idx))
            # the first phase before an alignment fits the full shift vectors with every
            # mask open: the sparsest basis can only be found from unmasked shifts
            self.module.open_masks = k == 0 and len(phases) > 1
            # Lightning keeps the module's mode: after an earlier fit (or a previous call
            # of ``train``) it is in eval mode, where masks are plain Bernoulli draws
            # without gradients, so switch back to training mode explicitly
            self.module.train()
            plan = TrainingPlan(self.module, lr=lr, **plan_kwargs)
            with quiet_lightning():  # Lightning prints its banners when the Trainer is built
                runner = TrainRunner(
                    self,
                    training_plan=plan,
                    data_splitter=splitter,
                    max_epochs=max(1, int(phase_epochs)),
                    accelerator=accelerator,
                    devices=devices,
                    early_stopping=early_stopping,
                    enable_progress_bar=show_progress(
                        requested=enable_progress_bar, cell_passes=n_train * max_epochs
                    ),
                    check_val_every_n_epoch=check_val,
                    **trainer_kwargs,
                )
                runner()
            epochs += max(1, int(runner.trainer.current_epoch))
            histories.append(self.history_)
        if len(histories) > 1 and all(isinstance(h, dict) for h in histories):
            self.history_ = {
                key: pd.concat([h[key] for h in histories if key in h], ignore_index=True)
                for key in histories[-1]
            }
        seconds = time.perf_counter() - t0
        self.module.eval()
        self.train_params_ = {
            "max_epochs": max_epochs,
            "epochs_trained": int(epochs),
            "batch_size": int(batch_size),
            "lr": float(lr),
            "global_lr_factor": float(global_lr_factor),
            "align_rounds": int(align_rounds),
            "seconds": float(seconds),
            "seconds_per_epoch": float(seconds / max(1, epochs)),
        }
        logg.info(
            "    finished",
            time=start,
            deep=f"{epochs} epochs, {seconds / max(1, epochs):.2f} s/epoch",
        )

    def _alignment_map(self, indices: np.ndarray) -> torch.Tensor:
        """Linear map of the alignment step over the training cells ``indices``."""
        return alignment_map(self.module, self._batches(None, indices, PREDICT_BATCH), len(indices))

    def _optimizer_creator(self, lr: float, factor: float, weight_decay: float, eps: float):
        glob = self.module.global_parameters()
        ids = {id(p) for p in glob}
        local = [p for p in self.module.parameters() if id(p) not in ids and p.requires_grad]

        def create(_params: Any) -> torch.optim.Optimizer:
            groups = [{"params": local}]
            if glob:
                groups.append({"params": glob, "lr": lr * factor, "weight_decay": 0.0})
            return torch.optim.Adam(groups, lr=lr, eps=eps, weight_decay=weight_decay)

        return create

    # --- outputs -------------------------------------------------------------------
    def _check_trained(self) -> None:
        if not self.is_trained_:
            msg = "The model is not trained yet; call model.train() first."
            raise RuntimeError(msg)

    def _batches(self, adata: AnnData | None, indices: Sequence[int] | None, batch_size: int):
        adata = self._validate_anndata(adata)
        loader = self._make_data_loader(
            adata=adata, indices=indices, batch_size=batch_size, shuffle=False
        )
        device = self.device
        for tensors in loader:
            yield {
                k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in tensors.items()
            }

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        *,
        indices: Sequence[int] | None = None,
        kind: Literal["basal", "full"] = "basal",
        batch_size: int = PREDICT_BATCH,
    ) -> np.ndarray:
        """Posterior mean latent per cell (cells x ``n_latent``).

        Parameters
        ----------
        adata
            Data to encode (defaults to the training data); labels are parsed
            against the registered perturbations.
        indices
            Cells of ``adata`` to use.
        kind
            ``"basal"``: ``z_b`` (perturbation effect removed); ``"full"``:
            ``z_b + sum_t d_t (e_t * m_t)`` with the posterior point estimate of the
            shifts (most probable masks, mean embeddings). The CVAE has only ``"basal"``.
        batch_size
            Cells per forward pass.
        """
        self._check_trained()
        if kind not in ("basal", "full"):
            msg = f"kind={kind!r} must be 'basal' or 'full'."
            raise ValueError(msg)
        module = self.module.eval()
        if kind == "full" and not module.has_globals:
            msg = "variant='cvae' has no perturbation shift in latent space; use kind='basal'."
            raise ValueError(msg)
        shift = module.point_shift() if module.has_globals else None
        out = []
        for tensors in self._batches(adata, indices, batch_size):
            x, dosage = tensors[REGISTRY_KEYS.X_KEY], tensors[DOSAGE_KEY]
            offset = dosage @ shift if shift is not None else None
            batch = module._batch_onehot(tensors.get(REGISTRY_KEYS.BATCH_KEY), x.shape[0])
            mean, _ = module.encode(x, offset=offset, dosage=dosage, batch=batch)
            out.append((mean + offset if kind == "full" else mean).cpu().numpy())
        return np.concatenate(out)

    def get_perturbation_embeddings(self, *, masked: bool = False) -> pd.DataFrame:
        """Posterior mean embeddings ``e_t``, perturbations x latent dims.

        Parameters
        ----------
        masked
            Return ``e_t * m_t`` with the most probable mask (the shift that
            perturbation applies in latent space) instead of ``e_t``.
        """
        self._check_trained()
        module = self.module
        if not module.has_globals:
            msg = "variant='cvae' has no perturbation embeddings; use variant='samsvae' or 'additive'."
            raise ValueError(msg)
        with torch.no_grad():
            if masked:
                values = module.point_shift()
            elif module.variant == "samsvae":
                mask = (module.mask_probabilities() > 0.5).float()
                values = module._embedding_params(mask[None])[0][0]
            else:
                values = module.emb_mean
        return self._latent_frame(values.detach().cpu().numpy())

    def get_mask_probabilities(self) -> pd.DataFrame:
        """Posterior probability ``q(m_t,k = 1)`` that perturbation ``t`` moves latent dim ``k``."""
        self._check_trained()
        if self.module.variant != "samsvae":
            msg = f"variant={self.module.variant!r} has no masks; only variant='samsvae' does."
            raise ValueError(msg)
        with torch.no_grad():
            probs = self.module.mask_probabilities().cpu().numpy()
        return self._latent_frame(probs)

    def _latent_frame(self, values: np.ndarray) -> pd.DataFrame:
        columns = [f"latent_{k}" for k in range(values.shape[1])]
        return pd.DataFrame(
            values, index=pd.Index(self.perturbations_, name="perturbation"), columns=columns
        )

    @torch.inference_mode()
    def get_iwelbo(
        self,
        adata: AnnData | None = None,
        *,
        indices: Sequence[int] | None = None,
        n_particles: int = 100,
        batch_size: int = 128,
        return_mean: bool = True,
        random_state: int = 0,
    ) -> float | np.ndarray:
        """Importance-weighted ELBO of held-out cells, ``log p(x | d)`` in nats.

        Globals are drawn from their posterior in every particle, ``z_b`` from the
        encoder, so the bound is comparable across variants (higher is better).

        Parameters
        ----------
        adata
            Cells to score (e.g. a test split); labels are parsed against the
            registered perturbations.
        indices
            Cells of ``adata`` to use.
        n_particles
            Importance samples per cell.
        batch_size
            Cells per forward pass.
        return_mean
            Return the mean over cells instead of one value per cell.
        random_state
            Seed of the Monte Carlo samples.
        """
        self._check_trained()
        module = self.module.eval()
        with seeded(random_state):
            values = [
                module.iwelbo(
                    t[REGISTRY_KEYS.X_KEY],
                    t[DOSAGE_KEY],
                    t.get(REGISTRY_KEYS.BATCH_KEY),
                    n_particles=n_particles,
                )
                .cpu()
                .numpy()
                for t in self._batches(adata, indices, batch_size)
            ]
        per_cell = np.concatenate(values)
        return float(per_cell.mean()) if return_mean else per_cell

    def _parse_perturbations(
        self, perturbations: str | Sequence[str]
    ) -> tuple[list[str], np.ndarray]:
        labels = (
            [perturbations] if isinstance(perturbations, str) else [str(p) for p in perturbations]
        )
        if not labels:
            msg = "perturbations is empty; name at least one perturbation or combination."
            raise ValueError(msg)
        args = self._setup_args
        control = args.get("control") if args.get("dosage_key") is None else None
        delimiter = args.get("delimiter") or "+"
        dosage = dosage_matrix(
            labels, control=control, delimiter=delimiter, perturbations=self.perturbations_
        )
        return labels, dosage.to_numpy()

    @torch.inference_mode()
    def predict(
        self,
        perturbations: str | Sequence[str],
        *,
        n_cells: int = 500,
        from_controls: bool = True,
        adata: AnnData | None = None,
        random_state: int = 0,
    ) -> AnnData:
        """Counterfactual cells under perturbations, including unseen combinations.

        Parameters
        ----------
        perturbations
            Labels such as ``"STAT1"`` or ``"IFNGR1+JAK2"`` (targets joined by the
            registered delimiter; any combination of registered perturbations,
            seen in training or not). The control label gives unperturbed cells.
        n_cells
            Cells per perturbation.
        from_controls
            Start from control cells of ``adata`` (their encoded basal state,
            library size and batch; the same cells for every perturbation, so
            differences are paired). `False` draws ``z_b`` from the prior and
            library sizes from the cells of ``adata``.
        adata
            Source of control cells (defaults to the training data).
        random_state
            Seed of the choice of cells and of the sampling.

        Returns
        -------
        AnnData with ``len(perturbations) * n_cells`` cells and the genes of the
        model: ``X`` and ``layers['counts']`` sampled counts (CSR),
        ``layers['normalized']`` the noise-free expression normalised to 10,000
        per cell, ``obs['perturbation']`` (categorical), ``obs['source_cell']``
        and ``obs['library_size']``, ``uns['samsvae_predict']`` the arguments.
        """
        self._check_trained()
        labels, dosage = self._parse_perturbations(perturbations)
        with seeded(random_state):
            return self._predict(
                labels,
                dosage,
                n_cells=n_cells,
                from_controls=from_controls,
                adata=adata,
                random_state=random_state,
            )

    @torch.inference_mode()
    def _predict(
        self,
        labels: list[str],
        dosage: np.ndarray,
        *,
        n_cells: int,
        from_controls: bool,
        adata: AnnData | None,
        random_state: int,
    ) -> AnnData:
        if n_cells < 1:
            msg = f"n_cells={n_cells} must be at least 1."
            raise ValueError(msg)
        adata = self._validate_anndata(adata)
        module = self.module.eval()
        rng = np.random.default_rng(random_state)
        manager = self.get_anndata_manager(adata, required=True)
        source_dosage = self._dosage(adata)
        if from_controls:
            pool = np.flatnonzero((source_dosage == 0).all(1))
            if len(pool) == 0:
                msg = "adata has no control cells to start from; pass from_controls=False or other data."
                raise ValueError(msg)
        else:
            pool = np.arange(adata.n_obs)
        source = np.sort(rng.choice(pool, size=n_cells, replace=len(pool) < n_cells))
        counts, normalized, library = sample_counterfactuals(
            module, manager, source, dosage, from_controls=from_controls, device=self.device
        )
        X = sparse.vstack(counts, format="csr")
        obs = pd.DataFrame(
            {
                "perturbation": pd.Categorical(
                    np.repeat(labels, n_cells), categories=list(dict.fromkeys(labels))
                ),
                "source_cell": np.tile(np.asarray(adata.obs_names[source]), len(labels)),
                "library_size": np.tile(library.cpu().numpy().ravel(), len(labels)),
            },
            index=[f"{label}-{i}" for label in labels for i in range(n_cells)],
        )
        out = AnnData(X=X, obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))
        out.layers["counts"] = X.copy()
        out.layers["normalized"] = np.concatenate(normalized)
        out.uns["samsvae_predict"] = {
            "perturbations": list(labels),
            "n_cells": int(n_cells),
            "from_controls": bool(from_controls),
            "random_state": int(random_state),
            "variant": self.module.variant,
        }
        return out

    def get_average_treatment_effect(
        self,
        perturbation: str | Sequence[str],
        *,
        n_cells: int = 2000,
        adata: AnnData | None = None,
        from_controls: bool = True,
        random_state: int = 0,
    ) -> pd.Series | pd.DataFrame:
        """Predicted per-gene average treatment effect against controls.

        Counterfactual cells are sampled for the perturbation and for the
        control from the same source cells (see :meth:`predict`), normalised
        to 10,000 counts, ``log2(x + 1)``-transformed and averaged; the ATE is
        the difference of the means, as in Perturb-seq analyses.

        Parameters
        ----------
        perturbation
            A label (``"STAT1"``, ``"IFNGR1+JAK2"``) or a list of labels.
        n_cells
            Counterfactual cells per perturbation.
        adata
            Source of control cells (defaults to the training data).
        from_controls
            See :meth:`predict`.
        random_state
            Seed.

        Returns
        -------
        :class:`~pandas.Series` indexed by gene for one label, else a
        :class:`~pandas.DataFrame` labels x genes.
        """
        self._check_trained()
        labels, dosage = self._parse_perturbations(perturbation)
        control = "__control__"
        dosage = np.vstack([dosage, np.zeros((1, dosage.shape[1]), dtype=dosage.dtype)])
        with seeded(random_state):
            pred = self._predict(
                [*labels, control],
                dosage,
                n_cells=n_cells,
                from_controls=from_controls,
                adata=adata,
                random_state=random_state,
            )
        lognorm = log_normalize(pred.layers["counts"])
        groups = pred.obs["perturbation"].to_numpy()
        base = lognorm[groups == control].mean(0)
        ate = pd.DataFrame(
            [lognorm[groups == label].mean(0) - base for label in labels],
            index=pd.Index(labels, name="perturbation"),
            columns=pred.var_names,
        )
        return ate.iloc[0].rename(labels[0]) if isinstance(perturbation, str) else ate

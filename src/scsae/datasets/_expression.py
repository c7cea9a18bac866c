"""Counts driven by hidden upstream programmes, with the truth kept for scoring."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._superposition import _check, _choose_active, _magnitudes

#: genes x cells entries generated at once (float64 working arrays)
CHUNK_ENTRIES = 2**22


def simulate_hierarchical_expression(
    n_obs: int = 5000,
    n_genes: int = 1000,
    n_hidden: int = 40,
    *,
    n_active: float = 3,
    active_distribution: Literal["fixed", "poisson"] = "poisson",
    n_targets: int = 30,
    target_effect: float = 1.5,
    repression_fraction: float = 0.0,
    n_cell_types: int = 4,
    cell_type_effect: float = 0.5,
    library_size: float = 5000,
    library_size_sd: float = 0.3,
    dispersion: float = 10.0,
    random_state: int = 0,
) -> AnnData:
    """Simulate single-cell counts whose variation comes from hidden programmes.

    A three-level generative process: an observed variable (cell type) and
    sparse hidden upstream variables (regulatory programmes) set each gene's
    expression, and counts are drawn around it. Any embedding of the counts
    (PCA, an autoencoder or scVI latent) with fewer dimensions than there are
    programmes must then hold the programmes in superposition.

    Per cell ``c`` and gene ``g``:

    1. Cell type ``t_c`` uniform over ``n_cell_types`` (stored in ``obs``);
       each type shifts every gene's log-mean by ``N(0, cell_type_effect^2)``.
    2. Hidden activities ``h_c``: ``n_active`` programmes per cell (exactly,
       or Poisson), chosen uniformly, each with a magnitude uniform on
       ``[0.5, 1.5]``; the rest are zero.
    3. Every programme targets ``n_targets`` genes drawn at random (targets of
       different programmes may overlap), with log fold change per unit
       activity ``target_effect * U(0.5, 1.5)``, negative (repression) for a
       ``repression_fraction`` of targets.
    4. Log-mean ``eta_cg = log p_g + type_effect[t_c, g] + sum_p h_cp W_pg``,
       with baseline gene proportions ``p_g`` log-normal (normalised to sum 1).
    5. Library size ``L_c = library_size * LogNormal(0, library_size_sd)``;
       counts ``X_cg ~ NegativeBinomial(mean = L_c exp(eta_cg), dispersion)``,
       drawn as a Gamma-Poisson mixture.

    Counts are generated in chunks of cells and stored sparse.

    Parameters
    ----------
    n_obs
        Number of cells.
    n_genes
        Number of genes.
    n_hidden
        Number of hidden programmes.
    n_active
        Active programmes per cell (exact or Poisson mean).
    active_distribution
        ``"fixed"`` or ``"poisson"``.
    n_targets
        Target genes per programme.
    target_effect
        Typical log fold change of a target per unit programme activity.
    repression_fraction
        Fraction of targets that are repressed rather than induced.
    n_cell_types
        Number of observed cell types (1: none).
    cell_type_effect
        Standard deviation of the cell-type shifts of log-means.
    library_size
        Median total counts per cell (before programme effects).
    library_size_sd
        Log-scale standard deviation of library sizes.
    dispersion
        Negative-binomial inverse overdispersion ``theta`` (variance
        ``mu + mu^2 / theta``); larger is closer to Poisson.
    random_state
        Seed.

    Returns
    -------
    AnnData of counts (cells x genes) holding

    ``X``
        Counts, CSR float32.
    ``obs['cell_type']``
        Observed cell type (categorical).
    ``obs['library_size']``
        Library-size factor ``L_c`` used to draw the counts.
    ``obsm['true_hidden']``
        True programme activities, CSR cells x ``n_hidden``.
    ``varm['true_targets']``
        Log fold change of each gene per unit activity of each programme,
        genes x ``n_hidden`` (zero for non-targets).
    ``var['n_programmes']``
        Number of programmes that target the gene.
    ``uns['simulation']['cell_type_effects']``
        Log-mean shifts, cell types x genes.
    ``uns['simulation']['baseline']``
        Baseline gene proportions ``p_g``.
    ``uns['simulation']['params']``
        Every argument above.

    Examples
    --------
    >>> import scanpy as sc, scsae
    >>> adata = scsae.datasets.simulate_hierarchical_expression(5000, 1000, 40)
    >>> sc.pp.normalize_total(adata)
    >>> sc.pp.log1p(adata)
    >>> sc.pp.pca(adata, n_comps=20)
    """
    params = {
        "n_obs": n_obs,
        "n_genes": n_genes,
        "n_hidden": n_hidden,
        "n_active": n_active,
        "active_distribution": active_distribution,
        "n_targets": n_targets,
        "target_effect": target_effect,
        "repression_fraction": repression_fraction,
        "n_cell_types": n_cell_types,
        "cell_type_effect": cell_type_effect,
        "library_size": library_size,
        "library_size_sd": library_size_sd,
        "dispersion": dispersion,
        "random_state": random_state,
    }
    for name in ("n_obs", "n_genes", "n_hidden", "n_cell_types"):
        _check(params[name] >= 1, f"{name}={params[name]} must be at least 1.")
    _check(
        1 <= n_targets <= n_genes, f"n_targets={n_targets} must be between 1 and n_genes={n_genes}."
    )
    _check(
        active_distribution in ("fixed", "poisson"),
        f"active_distribution={active_distribution!r}; use 'fixed' or 'poisson'.",
    )
    if active_distribution == "fixed":
        _check(
            float(n_active).is_integer() and 0 <= n_active <= n_hidden,
            f"n_active={n_active} must be an integer between 0 and n_hidden={n_hidden}.",
        )
    else:
        _check(n_active >= 0, f"n_active={n_active} must be non-negative.")
    _check(
        0 <= repression_fraction <= 1,
        f"repression_fraction={repression_fraction} must be in [0, 1].",
    )
    for name in ("library_size", "dispersion"):
        _check(params[name] > 0, f"{name}={params[name]} must be positive.")
    for name in ("target_effect", "cell_type_effect", "library_size_sd"):
        _check(params[name] >= 0, f"{name}={params[name]} must be non-negative.")

    rng = np.random.default_rng(random_state)

    # gene-level truth: baseline, cell-type shifts, programme targets
    baseline = rng.lognormal(0.0, 1.0, n_genes)
    baseline /= baseline.sum()
    type_effects = rng.normal(0.0, cell_type_effect, (n_cell_types, n_genes))
    targets = np.zeros((n_hidden, n_genes))
    for p in range(n_hidden):
        genes = rng.choice(n_genes, n_targets, replace=False)
        sign = np.where(rng.random(n_targets) < repression_fraction, -1.0, 1.0)
        targets[p, genes] = sign * target_effect * rng.uniform(0.5, 1.5, n_targets)

    # cell-level truth: type, library size, sparse programme activities
    cell_type = rng.integers(0, n_cell_types, n_obs)
    lib = library_size * rng.lognormal(0.0, library_size_sd, n_obs)
    if active_distribution == "fixed":
        counts_active = np.full(n_obs, int(n_active), dtype=np.int64)
    else:
        counts_active = np.minimum(rng.poisson(n_active, n_obs), n_hidden)
    indptr, indices = _choose_active(
        rng, n_obs, np.zeros(n_hidden), counts_active, modules=None, correlation=0.0
    )
    values = _magnitudes(rng, indices.shape[0], "uniform", 1.0).astype(np.float32)
    hidden = sparse.csr_matrix((values, indices, indptr), shape=(n_obs, n_hidden))
    hidden.sort_indices()

    # counts, chunk by chunk
    log_base = np.log(baseline)
    blocks = []
    chunk = max(1, CHUNK_ENTRIES // n_genes)
    for start in range(0, n_obs, chunk):
        stop = min(n_obs, start + chunk)
        eta = log_base + type_effects[cell_type[start:stop]] + hidden[start:stop] @ targets
        mean = lib[start:stop, None] * np.exp(eta)
        rate = mean * rng.gamma(dispersion, 1.0 / dispersion, mean.shape)
        blocks.append(sparse.csr_matrix(rng.poisson(rate).astype(np.float32)))
    x = sparse.vstack(blocks, format="csr")

    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(
                cell_type, categories=[f"type_{i}" for i in range(n_cell_types)]
            ),
            "library_size": lib.astype(np.float32),
        },
        index=pd.Index([f"cell_{i}" for i in range(n_obs)]),
    )
    var = pd.DataFrame(
        {"n_programmes": (targets != 0).sum(0).astype(np.int64)},
        index=pd.Index([f"gene_{g}" for g in range(n_genes)]),
    )
    adata = AnnData(X=x, obs=obs, var=var)
    adata.obsm["true_hidden"] = hidden
    adata.varm["true_targets"] = targets.T.astype(np.float32)
    adata.uns["simulation"] = {
        "cell_type_effects": type_effects.astype(np.float32),
        "baseline": baseline,
        "params": params,
    }
    return adata

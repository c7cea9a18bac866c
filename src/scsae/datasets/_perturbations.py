"""Perturbation screens: a simulator with ground truth and the Papalexi 2021 and Norman 2019 loaders."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations as _pairs
from pathlib import Path
from types import ModuleType

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData
from scanpy import logging as logg
from scipy import sparse

PAPALEXI_URL = "https://github.com/Katsevich-Lab/sceptredata/raw/main/data/lowmoi_example_data.rda"
PAPALEXI_FILE = "papalexi2021_sceptredata.h5ad"
# PerturBench's development file (BSD-3), pinned: its Norman part is the subset below
NORMAN_URL = (
    "https://github.com/altoslabs/perturbench/raw/4dd6a03c54ef348f6be6e46e21ea7f80eb2daaa2/"
    "src/perturbench/data/resources/devel.h5ad"
)
NORMAN_FILE = "norman2019_subset.h5ad"


def simulate_perturbations(
    *,
    n_perturbations: int = 6,
    n_latent: int = 6,
    n_genes: int = 100,
    n_cells_per_perturbation: int = 100,
    n_control_cells: int = 300,
    n_combinations: int | Sequence[tuple[str, str]] = 4,
    n_cells_per_combination: int | None = None,
    mask_probability: float = 0.25,
    masks: np.ndarray | None = None,
    effect_size: float = 1.5,
    decoder_scale: float = 1.0,
    library_size: float = 2000.0,
    dispersion: float = 10.0,
    perturbation_key: str = "target",
    control: str = "non-targeting",
    random_state: int = 0,
) -> AnnData:
    """Simulate a perturbation screen with sparse additive latent effects.

    Cells follow the SAMS-VAE generative model with a linear-softmax decoder:
    ``z = z_b + sum_t d_t (e_t * m_t)``, ``z_b ~ N(0, I)``, masks ``m_t`` with on
    average ``mask_probability * n_latent`` active dimensions (at least one),
    embedding entries of magnitude ``effect_size`` to ``2 * effect_size`` with
    random signs, gene proportions ``softmax(W z + b)`` and negative binomial
    counts around a log-normal library size.

    Parameters
    ----------
    n_perturbations
        Number of single perturbations (named ``"P0"``, ``"P1"``...).
    n_latent
        Latent dimensions.
    n_genes
        Genes.
    n_cells_per_perturbation
        Cells per single perturbation.
    n_control_cells
        Control cells.
    n_combinations
        Number of random pairs of perturbations, or the pairs themselves
        (e.g. ``[("P0", "P1")]``); their cells are labelled ``"P0+P1"``.
    n_cells_per_combination
        Cells per combination; defaults to ``n_cells_per_perturbation``.
    mask_probability
        Probability that a perturbation acts on a latent dimension.
    masks
        Ground-truth masks (perturbations x latent, 0/1) instead of random ones;
        sets ``n_perturbations`` and ``n_latent``.
    effect_size
        Smallest magnitude of an active embedding entry.
    decoder_scale
        Standard deviation of the decoder weights ``W``.
    library_size
        Median total counts per cell.
    dispersion
        Negative binomial inverse dispersion ``theta`` (larger: less noise).
    perturbation_key
        Name of the ``obs`` column of labels.
    control
        Label of control cells.
    random_state
        Seed.

    Returns
    -------
    AnnData of raw counts (CSR float32) with

    ``obs[perturbation_key]``
        Labels: ``control``, ``"P3"`` or ``"P0+P3"``.
    ``obsm['z_basal']``, ``obsm['z']``
        True basal and perturbed latents.
    ``varm['decoder']``
        True decoder weights ``W`` (genes x latent); ``var['decoder_bias']`` is ``b``.
    ``uns['simulation']``
        ``perturbations``, ``masks`` (perturbations x latent, 0/1), ``embeddings``,
        ``combinations`` and ``params`` (the arguments above).
    """
    if masks is not None:
        masks = np.asarray(masks).astype(bool)
        if masks.ndim != 2 or not masks.any(1).all():
            msg = "masks must be a 2-d 0/1 array (perturbations x latent) with an active entry per row."
            raise ValueError(msg)
        n_perturbations, n_latent = masks.shape
    if n_perturbations < 1 or n_latent < 1 or n_genes < 2:
        msg = "n_perturbations and n_latent must be at least 1, n_genes at least 2."
        raise ValueError(msg)
    if not 0 < mask_probability <= 1:
        msg = f"mask_probability={mask_probability} must be in (0, 1]."
        raise ValueError(msg)
    rng = np.random.default_rng(random_state)
    names = [f"P{t}" for t in range(n_perturbations)]
    if masks is None:
        masks = rng.random((n_perturbations, n_latent)) < mask_probability
        for t in range(n_perturbations):  # every perturbation acts somewhere
            if not masks[t].any():
                masks[t, rng.integers(n_latent)] = True
    magnitude = effect_size * (1 + rng.random((n_perturbations, n_latent)))
    embeddings = magnitude * rng.choice([-1.0, 1.0], size=(n_perturbations, n_latent))

    if isinstance(n_combinations, int):
        all_pairs = list(_pairs(range(n_perturbations), 2))
        n_pick = min(n_combinations, len(all_pairs))
        picked = [
            all_pairs[i] for i in np.sort(rng.choice(len(all_pairs), size=n_pick, replace=False))
        ]
        pairs = [(names[a], names[b]) for a, b in picked]
    else:
        pairs = [tuple(p) for p in n_combinations]
        unknown = sorted({p for pair in pairs for p in pair} - set(names))
        if unknown:
            msg = f"Combinations name unknown perturbations {unknown}; known are {names}."
            raise ValueError(msg)
    n_comb_cells = (
        n_cells_per_perturbation if n_cells_per_combination is None else n_cells_per_combination
    )

    labels = [control] * n_control_cells
    for name in names:
        labels += [name] * n_cells_per_perturbation
    for pair in pairs:
        labels += ["+".join(pair)] * n_comb_cells
    n_obs = len(labels)
    dosage = np.zeros((n_obs, n_perturbations))
    index = {name: t for t, name in enumerate(names)}
    for i, label in enumerate(labels):
        if label != control:
            for part in label.split("+"):
                dosage[i, index[part]] += 1

    z_basal = rng.standard_normal((n_obs, n_latent))
    z = z_basal + dosage @ (embeddings * masks)
    weights = decoder_scale * rng.standard_normal((n_genes, n_latent))
    bias = rng.standard_normal(n_genes)
    logits = z @ weights.T + bias
    proportions = np.exp(logits - logits.max(1, keepdims=True))
    proportions /= proportions.sum(1, keepdims=True)
    library = library_size * np.exp(0.3 * rng.standard_normal((n_obs, 1)))
    mu = library * proportions
    counts = rng.negative_binomial(dispersion, dispersion / (dispersion + mu))

    obs = pd.DataFrame(
        {perturbation_key: pd.Categorical(labels, categories=list(dict.fromkeys(labels)))},
        index=[f"cell{i}" for i in range(n_obs)],
    )
    adata = AnnData(
        X=sparse.csr_matrix(counts.astype(np.float32)),
        obs=obs,
        var=pd.DataFrame({"decoder_bias": bias}, index=[f"gene{g}" for g in range(n_genes)]),
    )
    adata.obsm["z_basal"] = z_basal.astype(np.float32)
    adata.obsm["z"] = z.astype(np.float32)
    adata.varm["decoder"] = weights.astype(np.float32)
    adata.uns["simulation"] = {
        "perturbations": np.asarray(names, dtype=object),
        "masks": masks.astype(np.int8),
        "embeddings": (embeddings * masks).astype(np.float32),
        "combinations": np.asarray(["+".join(p) for p in pairs], dtype=object),
        "params": {
            "n_perturbations": n_perturbations,
            "n_latent": n_latent,
            "n_genes": n_genes,
            "n_cells_per_perturbation": n_cells_per_perturbation,
            "n_control_cells": n_control_cells,
            "n_cells_per_combination": n_comb_cells,
            "mask_probability": mask_probability,
            "effect_size": effect_size,
            "decoder_scale": decoder_scale,
            "library_size": library_size,
            "dispersion": dispersion,
            "perturbation_key": perturbation_key,
            "control": control,
            "random_state": random_state,
        },
    }
    return adata


def papalexi2021(path: str | Path | None = None) -> AnnData:
    """Papalexi et al. 2021 THP-1 ECCITE-seq CRISPR knockout screen (low MOI).

    20,729 cells x 299 genes of raw UMI counts; ``obs['target']`` is the targeted
    gene (26 targets and ``"non-targeting"`` controls), ``obs['grna']`` the guide,
    ``obs['bio_rep']`` the replicate and ``obsm['grna_counts']`` guide UMI counts.
    Source: the ``lowmoi_example_data`` of the sceptredata R package (MIT),
    https://github.com/Katsevich-Lab/sceptredata.

    Parameters
    ----------
    path
        Local ``.h5ad`` copy to read. `None` reads
        ``scanpy.settings.datasetdir / 'papalexi2021_sceptredata.h5ad'`` and, when it
        is missing, downloads the R data file from sceptredata with :mod:`pooch`
        and converts it with R through ``rpy2`` (needs R and its Matrix package),
        then caches the ``.h5ad`` there.

    Returns
    -------
    :class:`~anndata.AnnData`
        Raw UMI counts in ``X`` (CSR, float32) with the guide assignment in ``obs``.
    """
    if path is not None:
        path = Path(path)
        if not path.exists():
            msg = f"No file at {path}; pass the path of papalexi2021_sceptredata.h5ad or path=None to download."
            raise FileNotFoundError(msg)
        return ad.read_h5ad(path)
    import scanpy as sc

    target = Path(sc.settings.datasetdir) / PAPALEXI_FILE
    if target.exists():
        return ad.read_h5ad(target)
    adata = _download_papalexi(Path(sc.settings.datasetdir))
    target.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(target)
    return adata


def _download_papalexi(folder: Path) -> AnnData:  # pragma: no cover - needs internet and R
    """Download sceptredata's ``lowmoi_example_data.rda`` and convert it with R (rpy2).

    The file is an R list of sparse (``dgCMatrix``) gene x cell and gRNA x cell
    matrices, the gRNA target table and the replicate of each cell; Python
    readers of ``.rda`` files cannot read sparse S4 matrices, so R does the unpacking.
    Each cell is assigned the gRNA with the most UMIs (the screen is low MOI).
    """
    try:
        import pooch
        import rpy2.robjects as ro
    except ImportError as err:
        msg = (
            "Downloading the Papalexi data needs `pooch` and `rpy2` with R and its Matrix package. "
            "Alternatively convert sceptredata's lowmoi_example_data to .h5ad yourself and call "
            "scsae.datasets.papalexi2021(path=...)."
        )
        raise ImportError(msg) from err
    start = logg.info(f"downloading {PAPALEXI_URL}")
    file = _retrieve(
        pooch,
        PAPALEXI_URL,
        folder / "lowmoi_example_data.rda",
        name="Papalexi",
        local="papalexi2021_sceptredata.h5ad: scsae.datasets.papalexi2021(path=...)",
    )
    ro.r["load"](file)
    ro.r(
        "suppressMessages(library(Matrix)); d <- lowmoi_example_data; "
        "x <- as.matrix(d$response_matrix); g <- as.matrix(d$grna_matrix)"
    )
    counts = np.asarray(ro.r("x"), dtype=np.float32).T
    grna = np.asarray(ro.r("g"), dtype=np.float32).T
    genes = np.asarray(ro.r("rownames(x)"), dtype=str)
    cells = np.asarray(ro.r("colnames(x)"), dtype=str)
    grna_names = np.asarray(ro.r("rownames(g)"), dtype=str)
    target_of = dict(
        zip(
            np.asarray(ro.r("as.character(d$grna_target_data_frame$grna_id)"), dtype=str),
            np.asarray(ro.r("as.character(d$grna_target_data_frame$grna_target)"), dtype=str),
            strict=True,
        )
    )
    rep = np.asarray(ro.r("as.character(d$extra_covariates$bio_rep)"), dtype=str)
    best = grna.argmax(1)
    obs = pd.DataFrame(
        {
            "bio_rep": pd.Categorical(rep),
            "grna": grna_names[best],
            "grna_umis": grna[np.arange(len(best)), best],
            "target": pd.Categorical([target_of.get(g, g) for g in grna_names[best]]),
        },
        index=cells,
    )
    adata = AnnData(X=sparse.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    adata.obsm["grna_counts"] = sparse.csr_matrix(grna)
    adata.uns["grna_names"] = grna_names
    logg.info("    finished", time=start)
    return adata


def norman2019(path: str | Path | None = None) -> AnnData:
    """Norman et al. 2019 K562 CRISPRa Perturb-seq subset with double perturbations.

    3,375 cells x 500 highly variable genes of raw UMI counts: controls, 18 single and
    15 double activations, about 100 cells each. Five doubles have both their singles in
    the file (``KLF1+MAP2K6``, ``KLF1+TGFBR2``, ``MAP2K3+MAP2K6``, ``MAP2K3+SLC38A2``,
    ``MAPK1+TGFBR2``): held out, they test the prediction of unseen combinations. Source:
    the Norman part of PerturBench's development file (Wu et al. 2024, BSD-3),
    https://github.com/altoslabs/perturbench.

    Parameters
    ----------
    path
        Local ``.h5ad`` copy to read (this function's output, or PerturBench's
        ``devel.h5ad``, which is converted). `None` reads
        ``scanpy.settings.datasetdir / 'norman2019_subset.h5ad'`` and, when it is missing,
        downloads ``devel.h5ad`` with :mod:`pooch`, converts it and caches the result there.

    Returns
    -------
    :class:`~anndata.AnnData`
        Raw UMI counts in ``X`` (CSR, float32) with

        ``obs['perturbation']``
            ``"control"``, a gene (``"KLF1"``) or a pair (``"KLF1+MAP2K6"``).
        ``obs['total_counts']``
            The cell's whole-transcriptome library size; the 500 genes hold about 1% of
            it.
        ``obs['n_counts_in_panel']``, ``obs['n_perturbed_genes']``
            Counts over the 500 genes; 0, 1 or 2 activated genes.
    """
    if path is not None:
        path = Path(path)
        if not path.exists():
            msg = f"No file at {path}; pass the path of {NORMAN_FILE} (or PerturBench's devel.h5ad) or path=None to download."
            raise FileNotFoundError(msg)
        adata = ad.read_h5ad(path)
        return adata if "perturbation" in adata.obs else norman_from_perturbench(adata)
    import scanpy as sc

    target = Path(sc.settings.datasetdir) / NORMAN_FILE
    if target.exists():
        return ad.read_h5ad(target)
    adata = norman_from_perturbench(ad.read_h5ad(_download_norman(target.parent)))
    target.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(target)
    return adata


def _download_norman(folder: Path) -> Path:  # pragma: no cover - needs internet
    try:
        import pooch
    except ImportError as err:
        msg = "Downloading the Norman data needs `pooch`; or call scsae.datasets.norman2019(path=...)."
        raise ImportError(msg) from err
    start = logg.info(f"downloading {NORMAN_URL}")
    file = _retrieve(
        pooch,
        NORMAN_URL,
        folder / "perturbench_devel.h5ad",
        name="Norman",
        local=f"{NORMAN_FILE}: scsae.datasets.norman2019(path=...)",
    )
    logg.info("    finished", time=start)
    return Path(file)


def _retrieve(pooch: ModuleType, url: str, file: Path, *, name: str, local: str) -> str:
    """Download ``url`` to ``file``; offline, a ``ConnectionError`` naming the ``path=`` to pass."""
    try:
        return pooch.retrieve(url, known_hash=None, path=file.parent, fname=file.name)
    except OSError as err:  # requests' and urllib's connection errors are OSErrors
        msg = f"Could not download the {name} data ({err}); offline, pass path= a local {local}."
        raise ConnectionError(msg) from err


def counts_from_log1p(
    x: sparse.spmatrix | np.ndarray, *, target_sum: float = 1e4
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Integer counts and library sizes behind ``log1p(counts / library * target_sum)``.

    In each cell the smallest non-zero value of ``expm1(x)`` is one count (every cell of
    a sparse screen has a gene seen once), so dividing by it gives the counts and
    ``target_sum`` divided by it the library size the data were normalised with.
    """
    x = sparse.csr_matrix(x, dtype=np.float64)
    x.data = np.expm1(x.data)
    one = np.array([row.data.min() if row.nnz else 1.0 for row in x])
    counts = (sparse.diags(1 / one) @ x).tocsr()
    if not np.allclose(counts.data, np.rint(counts.data), atol=0.02):
        msg = "The values are not log1p of scaled integer counts; pass raw counts instead."
        raise ValueError(msg)
    counts.data = np.rint(counts.data)
    return counts.astype(np.float32).tocsr(), target_sum / one


def norman_from_perturbench(devel: AnnData) -> AnnData:
    """The Norman 2019 cells of PerturBench's ``devel.h5ad`` as raw counts (see :func:`norman2019`)."""
    obs = devel.obs
    missing = [c for c in ("condition", "dataset") if c not in obs]
    if missing:
        msg = (
            f"Not PerturBench's devel.h5ad: obs lacks {missing}; pass a {NORMAN_FILE} or that file."
        )
        raise KeyError(msg)
    cells = obs["dataset"].astype(str).str.contains("norman", case=False).to_numpy()
    if not cells.any():
        msg = (
            f"No Norman cells in obs['dataset'] (values {sorted(set(obs['dataset'].astype(str)))})."
        )
        raise ValueError(msg)
    part = devel[cells]
    counts, library = counts_from_log1p(part.X)
    label = part.obs["condition"].astype(str)
    var = pd.DataFrame(
        index=part.var["gene_symbol"].astype(str) if "gene_symbol" in part.var else part.var_names
    )
    out = AnnData(
        X=counts,
        obs=pd.DataFrame(
            {
                "perturbation": pd.Categorical(label),
                "n_counts_in_panel": np.asarray(counts.sum(1)).ravel(),
                "total_counts": np.rint(library),
                "n_perturbed_genes": [0 if p == "control" else p.count("+") + 1 for p in label],
            },
            index=part.obs_names,
        ),
        var=var,
    )
    out.uns["source"] = (
        "Norman et al. 2019 (Science 365:786) via altoslabs/perturbench devel.h5ad (BSD-3)"
    )
    return out

"""Scale: out-of-core training and inference, chunked CSR, sparse kernel, DDP."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
import torch
from anndata import AnnData
from anndata.experimental import read_lazy
from scipy import sparse

import scsae
from scsae._utils._embedding import get_embedding
from scsae.models import SAEConfig, SAEModule
from scsae.models._scale import ChunkedShuffledBatches, CSRBuilder

from .conftest import superposition

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

FAST = {"max_epochs": 4, "batch_size": 200, "enable_progress_bar": False, "accelerator": "cpu"}


@pytest.fixture(scope="module")
def memory_adata() -> AnnData:
    x, _, _ = superposition(n_obs=3000, n_dims=16, n_features=64)
    return AnnData(X=x.copy(), obsm={"X_emb": x})


@pytest.fixture(scope="module")
def trained(memory_adata):
    scsae.SAE.setup_anndata(memory_adata, use_rep="X_emb")
    model = scsae.SAE(memory_adata, n_features=96, k=3)
    model.train(**FAST)
    return model


def _lazy(kind: str, memory_adata: AnnData, tmp: Path) -> tuple[AnnData, str]:
    """The same embedding, not in memory; returns (adata, use_rep)."""
    if kind == "backed_h5ad":  # backed mode keeps X on disk (obsm is read into memory)
        memory_adata.write_h5ad(tmp / "a.h5ad")
        return ad.read_h5ad(tmp / "a.h5ad", backed="r"), "X"
    if kind == "lazy_h5ad":
        memory_adata.write_h5ad(tmp / "a.h5ad")
        return read_lazy(h5py.File(tmp / "a.h5ad", "r")), "X_emb"
    if kind == "zarr":
        memory_adata.write_zarr(tmp / "a.zarr", chunks=(700, 16))
        return read_lazy(zarr.open(tmp / "a.zarr", mode="r")), "X_emb"
    dask_emb = da.from_array(memory_adata.obsm["X_emb"], chunks=(512, 16))
    return AnnData(obs=memory_adata.obs[[]], obsm={"X_emb": dask_emb}), "X_emb"


@pytest.mark.parametrize("kind", ["backed_h5ad", "lazy_h5ad", "zarr", "dask"])
def test_out_of_core_sources_train_and_encode_like_memory(kind, memory_adata, trained, tmp_path):
    lazy, use_rep = _lazy(kind, memory_adata, tmp_path)
    assert get_embedding(lazy, use_rep=use_rep).is_lazy
    # inference: chunk-wise CSR equals the in-memory one exactly
    scsae.SAE.setup_anndata(lazy, use_rep=use_rep)
    expected = trained.get_feature_activations()
    model_on_lazy = copy.copy(trained)
    model_on_lazy.use_rep = use_rep
    got = model_on_lazy.get_feature_activations(lazy)
    assert got.dtype == np.float32
    assert (got != expected).nnz == 0
    if kind in ("backed_h5ad", "dask"):  # training is slower: two sources suffice
        model = scsae.SAE(lazy, n_features=96, k=3)
        model.train(**FAST)
        assert model.train_params_["out_of_core"] is True
        fvu = model.get_metrics()["fvu"]
        assert fvu < trained.get_metrics()["fvu"] + 0.05


def test_tl_sae_picks_out_of_core_for_dask(memory_adata):
    lazy = AnnData(
        obs=memory_adata.obs[[]],
        obsm={"X_emb": da.from_array(memory_adata.obsm["X_emb"], chunks=(512, 16))},
    )
    scsae.tl.sae(lazy, use_rep="X_emb", n_features=64, k=3, max_epochs=2, batch_size=200)
    params = lazy.uns["X_sae"]["params"]
    assert params["out_of_core"] is True
    assert sparse.issparse(lazy.obsm["X_sae"])
    assert lazy.obsm["X_sae"].shape == (3000, 64)


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_chunked_batches_cover_each_row_once_per_epoch(world_size):
    n, d = 5003, 4
    x = np.arange(n * d, dtype=np.float32).reshape(n, d)
    emb = get_embedding(AnnData(obsm={"e": da.from_array(x, chunks=(300, d))}), use_rep="e")
    train = np.sort(np.random.default_rng(0).choice(n, 4500, replace=False))
    seen, lengths = [], set()
    for rank in range(world_size):
        stream = ChunkedShuffledBatches(
            emb, train, 96, shuffle=True, drop_last=True, chunk_rows=700, buffer_rows=1500
        )
        stream.set_shard(rank, world_size)
        batches = list(stream)
        assert len(batches) == len(stream)
        lengths.add(len(stream))
        seen.append(np.concatenate([b[:, 0].numpy() // d for b in batches]).astype(int))
    assert len(lengths) == 1  # same number of steps on every rank
    rows = np.concatenate(seen)
    assert len(np.unique(rows)) == len(rows)  # no row twice, ranks disjoint
    assert np.isin(rows, train).all()
    assert len(rows) >= len(train) - world_size * 96 * 2  # at most ~a batch dropped per rank
    # shuffled across chunks: a batch mixes rows from several chunks
    assert len(np.unique(seen[0][:96] // 700)) > 1


def test_chunked_batches_reraise_reader_errors():
    class Broken:
        shape = (1000, 4)
        dtype = np.float32

        def __getitem__(self, index):
            if isinstance(index, slice) and index.start and index.start > 0:
                msg = "disk gone"
                raise OSError(msg)
            return np.zeros((1 if isinstance(index, slice) else len(index), 4), np.float32)

    from scsae._utils._embedding import Embedding

    stream = ChunkedShuffledBatches(
        Embedding(Broken(), "broken"),
        np.arange(1000),
        50,
        shuffle=False,
        drop_last=True,
        chunk_rows=100,
    )
    with pytest.raises(OSError, match="disk gone"):
        list(stream)


def test_csr_builder_matches_vstack_and_grows():
    rng = np.random.default_rng(0)
    blocks = [sparse.random(50, 30, density=0.2, random_state=rng) for _ in range(7)]
    builder = CSRBuilder(30, capacity=10)  # forces growth
    for b in blocks:
        builder.append(b.toarray().astype(np.float32))
    got = builder.to_csr()
    expected = sparse.vstack(blocks, format="csr", dtype=np.float32)
    assert got.shape == expected.shape
    assert abs(got - expected).max() == 0
    with pytest.raises(ValueError, match="columns"):
        CSRBuilder(5).append(np.zeros((2, 4)))


@pytest.mark.parametrize("architecture", ["topk", "batchtopk"])
def test_sparse_and_dense_kernels_give_the_same_gradients(architecture):
    config = SAEConfig(n_input=16, n_features=128, architecture=architecture, k=4)
    module = SAEModule(config, generator=torch.Generator().manual_seed(0))
    module.cells_since_fired[::3] = 10**9  # a third dead: AuxK takes part
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(1))
    results = {}
    for kernel in ("dense", "sparse"):
        m = copy.deepcopy(module).train()
        m.kernel = kernel
        out = m(x)
        (out.fvu + out.aux_loss).backward()
        fired, l0 = m.firing(out)
        grads = {name: p.grad.clone() for name, p in m.named_parameters()}
        results[kernel] = (out, grads, fired, int(l0), m.activation.state_dict())
    (dense, g_dense, f_dense, l0_dense, s_dense) = results["dense"]
    (sp, g_sparse, f_sparse, l0_sparse, s_sparse) = results["sparse"]
    assert sp.activations is None and sp.indices is not None
    torch.testing.assert_close(sp.reconstruction, dense.reconstruction)
    torch.testing.assert_close(sp.fvu, dense.fvu)
    assert float(dense.aux_loss.detach()) > 0
    torch.testing.assert_close(sp.aux_loss, dense.aux_loss)
    for name in g_dense:
        torch.testing.assert_close(g_sparse[name], g_dense[name], rtol=1e-4, atol=1e-6)
    assert torch.equal(f_dense, f_sparse) and l0_dense == l0_sparse
    for key in s_dense:  # BatchTopK's running threshold moves the same way
        torch.testing.assert_close(s_sparse[key], s_dense[key])


def test_kernel_choice_is_recorded_and_checked(memory_adata):
    scsae.SAE.setup_anndata(memory_adata, use_rep="X_emb")
    model = scsae.SAE(memory_adata, n_features=96, k=3)
    model.train(max_epochs=1, batch_size=500, enable_progress_bar=False, accelerator="cpu")
    assert model.train_params_["kernel"] in ("dense", "sparse")
    with pytest.raises(ValueError, match="kernel='sparse' needs a selection"):
        scsae.SAE(memory_adata, architecture="relu", kernel="sparse")
    with pytest.raises(ValueError, match="is not one of"):
        scsae.SAE(memory_adata, kernel="fast")


def test_ddp_two_cpu_processes_match_one(tmp_path):
    script = Path(__file__).with_name("_ddp_train.py")
    results = {}
    for n_devices in (1, 2):
        out = tmp_path / f"run{n_devices}.npz"
        proc = subprocess.run(
            [sys.executable, str(script), str(out), str(n_devices)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[n_devices] = np.load(out)
    one, two = results[1], results[2]
    cosine = (one["decoder"] * two["decoder"]).sum(1)
    # float summation order differs between one process and two, and TopK's choices
    # amplify it: nearly every decoder row must match, an odd one may drift
    assert np.median(cosine) > 0.995
    assert (cosine > 0.98).mean() >= 0.95
    np.testing.assert_allclose(two["train_fvu"], one["train_fvu"], atol=0.02)
    np.testing.assert_allclose(two["validation_fvu"], one["validation_fvu"], atol=0.02)
    # statistics are global: the same cells are counted, on every rank
    np.testing.assert_allclose(two["train_l0"], one["train_l0"], atol=0.05)
    np.testing.assert_array_equal(two["lr"], one["lr"])

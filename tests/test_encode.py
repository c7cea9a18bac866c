"""The inference fast path: encoding straight to CSR equals the dense encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import sparse

from scsae.models._encode import encode_chunk, encode_to_csr
from scsae.models._sae_module import SAEConfig, SAEModule


def _module(architecture: str, *, calibrated: bool = False) -> SAEModule:
    module = SAEModule(
        SAEConfig(n_input=12, n_features=96, architecture=architecture, k=5),
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():  # a trained-looking module: non-zero biases and normalisation
        module.b_enc.uniform_(-0.3, 0.1, generator=torch.Generator().manual_seed(1))
        module.b_dec.normal_(generator=torch.Generator().manual_seed(2))
        module.input_mean.fill_(0.5)
        module.input_scale.fill_(2.0)
    if calibrated:
        x = torch.randn(500, 12, generator=torch.Generator().manual_seed(3))
        module.activation.calibrate(module.pre_activations(x))
    return module.eval()


def _slow(module: SAEModule, raw: np.ndarray) -> tuple[sparse.csr_matrix, torch.Tensor]:
    with torch.no_grad():
        x = module.normalize(torch.from_numpy(raw))
        acts = module.encode(x)
        return sparse.csr_matrix((acts * module.input_scale).numpy()), module.decode(acts)


@pytest.mark.parametrize(
    ("architecture", "calibrated"),
    [("topk", False), ("batchtopk", False), ("batchtopk", True), ("relu", False)],
)
def test_fast_encoding_equals_the_dense_encoder(architecture, calibrated):
    module = _module(architecture, calibrated=calibrated)
    raw = np.random.default_rng(4).normal(size=(700, 12)).astype(np.float32)
    expected, expected_recon = _slow(module, raw)
    assert expected.nnz > 0
    got = encode_to_csr(module, raw, batch_size=256)  # three chunks, the last short
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert got.has_sorted_indices and not (got.data == 0).any()
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_allclose(got.data, expected.data, rtol=1e-5, atol=1e-6)
    chunk = encode_chunk(module, module.normalize(torch.from_numpy(raw)))
    torch.testing.assert_close(chunk.reconstruction, expected_recon, rtol=1e-5, atol=1e-5)
    assert not module.training


def test_encode_to_csr_restores_training_mode_and_checks_batch_size():
    module = _module("topk").train()
    raw = np.zeros((3, 12), dtype=np.float32)
    encode_to_csr(module, raw)
    assert module.training
    with pytest.raises(ValueError, match="batch_size"):
        encode_to_csr(module, raw, batch_size=0)


def test_model_activations_use_the_fast_path_and_match_the_encoder():
    import scsae

    adata = scsae.datasets.simulate_superposition(1500, 16, 40, n_active=3, random_state=0)
    scsae.SAE.setup_anndata(adata, use_rep="X_emb")
    model = scsae.SAE(adata, n_features=64, k=4)
    model.train(max_epochs=2, batch_size=256, enable_progress_bar=False)
    got = model.get_feature_activations(batch_size=500)
    module = model.module.eval()
    expected, _ = _slow(module, adata.obsm["X_emb"].astype(np.float32))
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_allclose(got.data, expected.data, rtol=1e-5, atol=1e-6)
    direct = encode_to_csr(module, adata.obsm["X_emb"])
    assert abs(direct - got).max() < 1e-5

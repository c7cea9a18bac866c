"""SAEModule kernels: the sparse decode's hand-written backward and the AuxK loss."""

from __future__ import annotations

import pytest
import torch

from scsae.models._sae_module import AUXK_CELLS, SAEConfig, SAEModule
from scsae.models._scale._sparse_code import sparse_code


def _params(n_features: int, dims: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(dims,), (n_features, dims), (n_features,), (n_features, dims)]
    return [torch.randn(*s, generator=gen, dtype=torch.float64).requires_grad_() for s in shapes]


def _dense_reference(x, b_dec, w_enc, b_enc, w_dec, mask):
    """Autograd through the dense product: activations zero outside ``mask``."""
    acts = torch.relu((x - b_dec) @ w_enc.T + b_enc) * mask
    return acts @ w_dec


@pytest.mark.parametrize("layout", ["per_cell", "flat"])
def test_sparse_code_gradient_equals_the_dense_path(layout):
    n_cells, dims, n_features, k = 40, 6, 30, 4
    x = torch.randn(n_cells, dims, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b_dec, w_enc, b_enc, w_dec = _params(n_features, dims, 1)
    with torch.no_grad():
        b_enc -= 1.0  # many selected entries with non-positive pre-activation (value 0)
        pre = (x - b_dec) @ w_enc.T + b_enc
        if layout == "per_cell":
            indices, rows = pre.topk(k, dim=-1).indices, None
            mask = torch.zeros_like(pre).scatter_(1, indices, 1.0)
            selected = pre.gather(1, indices)
        else:  # a batch-level selection: cells keep different numbers of features
            flat = pre.flatten().topk(pre.numel() // 2).indices.sort().values
            indices, rows = flat % n_features, flat // n_features
            mask = torch.zeros(n_cells * n_features, dtype=pre.dtype)
            mask[flat] = 1.0
            mask = mask.view_as(pre)
            selected = pre[rows, indices]
    assert (selected <= 0).any()  # entries whose value is zero take part
    if layout == "per_cell":
        assert (mask.sum(0) == 0).any()  # and features no cell selected
    weights = torch.randn(
        n_cells, dims, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    recon, values, flat_indices, offsets = sparse_code(
        (x - b_dec).detach(), b_dec, w_enc, b_enc, w_dec, selected, indices, rows
    )
    (recon * weights).sum().backward()
    sparse_grads = [p.grad.clone() for p in (b_dec, w_enc, b_enc, w_dec)]
    for p in (b_dec, w_enc, b_enc, w_dec):
        p.grad = None
    expected = _dense_reference(x, b_dec, w_enc, b_enc, w_dec, mask)
    torch.testing.assert_close(recon, expected)
    (expected * weights).sum().backward()
    for got, p in zip(sparse_grads, (b_dec, w_enc, b_enc, w_dec), strict=True):
        torch.testing.assert_close(got, p.grad)
    assert not values.requires_grad and (values >= 0).all()
    assert offsets.numel() == n_cells and flat_indices.numel() == values.numel()


def _dead_module(seed: int, n_features: int = 64) -> SAEModule:
    module = SAEModule(
        SAEConfig(16, n_features, k=4, aux_k=8, dead_after_cells=1),
        generator=torch.Generator().manual_seed(seed),
    ).train()
    module.cells_since_fired[::2] = 5  # every other feature dead
    return module


@pytest.mark.parametrize("seed", range(4))
def test_auxk_trains_only_dead_rows_and_lowers_its_loss(seed):
    module = _dead_module(seed)
    x = torch.randn(128, 16, generator=torch.Generator().manual_seed(seed + 10))
    loss = module(x).aux_loss
    assert float(loss.detach()) > 0
    loss.backward()
    dead = module.dead_mask()
    for name in ("W_enc", "W_dec"):
        grad = getattr(module, name).grad
        assert torch.equal(grad[~dead], torch.zeros_like(grad[~dead])), name
        assert grad[dead].abs().sum() > 0, name
    assert torch.equal(module.b_enc.grad[~dead], torch.zeros_like(module.b_enc.grad[~dead]))
    # a small step against the gradient lowers the loss (the gradient is the loss's)
    with torch.no_grad():
        for p in module.parameters():
            if p.grad is not None:
                p -= 1e-3 * p.grad / p.grad.norm().clamp_min(1e-12)
    assert float(module(x).aux_loss.detach()) < float(loss.detach())


def test_auxk_reads_only_its_sub_batch():
    module = _dead_module(0, n_features=32)
    x = torch.randn(AUXK_CELLS + 300, 16, generator=torch.Generator().manual_seed(3))
    # TopK encodes each cell alone, so the first AUXK_CELLS cells give the same AuxK loss
    torch.testing.assert_close(module(x).aux_loss, module(x[:AUXK_CELLS]).aux_loss)
    assert float(module(x[AUXK_CELLS:]).aux_loss.detach()) != float(module(x).aux_loss.detach())

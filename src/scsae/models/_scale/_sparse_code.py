"""Decode a selection of features with gradients that touch only the selected rows.

A TopK SAE keeps ``k`` of ``n_features`` encoder outputs per cell, so the
training step needs the dense encoder product only to *choose* features
(no gradient). :func:`sparse_code` takes that choice and returns the
reconstruction ``sum_j relu(pre[c, i_j]) W_dec[i_j]``; its backward computes
the gradients of ``W_enc``, ``b_enc``, ``W_dec`` and ``b_dec`` directly from
the ``cells x k`` entries (two transposed ``embedding_bag`` sums over the
entries sorted by feature), instead of autograd's gathers of ``cells x k x
dims`` encoder and decoder rows. Same gradient as the dense path up to
float rounding (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _by_feature(indices: Tensor, rows: Tensor, n_features: int) -> tuple[Tensor, Tensor, Tensor]:
    """Order of the entries sorted by feature, their cells, and each feature's offset."""
    order = indices.argsort()
    counts = torch.bincount(indices, minlength=n_features)
    offsets = torch.cumsum(counts, 0) - counts
    return order, rows[order], offsets


class _SparseCode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centred, b_dec, w_enc, b_enc, w_dec, pre, indices, rows, offsets, k):
        ctx.k = k
        values = pre.clamp_min(0).to(w_dec.dtype)
        recon = F.embedding_bag(indices, w_dec, offsets, per_sample_weights=values, mode="sum")
        ctx.save_for_backward(centred, w_enc, w_dec, values, indices, rows)
        ctx.mark_non_differentiable(values)
        return recon, values

    @staticmethod
    def backward(ctx, grad_recon, _grad_values):
        centred, w_enc, w_dec, values, indices, rows = ctx.saved_tensors
        n_features = w_dec.shape[0]
        # d loss / d value of each entry: <grad of its cell's reconstruction, its decoder row>
        selected = F.embedding(indices, w_dec)
        if ctx.k:  # k entries per cell: no gather of the gradient rows
            n_cells, dims = grad_recon.shape
            grad_values = (selected.view(n_cells, ctx.k, dims) * grad_recon[:, None]).sum(-1)
            grad_values = grad_values.reshape(-1)
        else:
            grad_values = (selected * grad_recon[rows]).sum(-1)
        grad_pre = grad_values * (values > 0)  # through the ReLU
        grad_b_enc = torch.zeros(n_features, dtype=grad_pre.dtype, device=grad_pre.device)
        grad_b_enc.index_add_(0, indices, grad_pre)
        order, cells, feature_offsets = _by_feature(indices, rows, n_features)

        def per_feature(source: Tensor, weights: Tensor) -> Tensor:
            # row f: sum over the entries of feature f of weight * source[cell]
            return F.embedding_bag(
                cells, source, feature_offsets, per_sample_weights=weights[order], mode="sum"
            )

        grad_w_enc = per_feature(centred, grad_pre)
        grad_w_dec = per_feature(grad_recon.contiguous(), values)
        # pre = (x - b_dec) W_enc^T + b_enc: b_dec moves every selected pre-activation
        grad_b_dec = -(grad_b_enc @ w_enc)
        return None, grad_b_dec, grad_w_enc, grad_b_enc, grad_w_dec, None, None, None, None, None


def sparse_code(
    centred: Tensor,
    b_dec: Tensor,
    w_enc: Tensor,
    b_enc: Tensor,
    w_dec: Tensor,
    pre: Tensor,
    indices: Tensor,
    rows: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Reconstruction (without ``b_dec``) from selected features, with sparse gradients.

    Parameters
    ----------
    centred
        ``x - b_dec`` without gradient, cells x dims.
    b_dec, w_enc, b_enc, w_dec
        The SAE's parameters; ``b_dec`` receives the encoder's part of its gradient.
    pre
        Pre-activations ``centred @ w_enc.T + b_enc`` of the selected entries,
        computed without gradient (same shape as ``indices``).
    indices
        Selected feature ids: cells x k, or flat and sorted by cell with ``rows``.
    rows
        Cell of each flat entry; `None` when ``indices`` is cells x k.

    Returns
    -------
    ``(reconstruction, values, flat_indices, offsets)``: the cells x dims sum
    ``sum_j relu(pre_j) w_dec[i_j]``, the entries' activations (no gradient),
    the flat feature ids and where each cell's entries start.
    """
    n_cells = centred.shape[0]
    k = 0
    if rows is None:
        k = indices.shape[1]
        rows = torch.arange(n_cells, device=indices.device).repeat_interleave(k)
        offsets = torch.arange(n_cells, device=indices.device) * k
        indices, pre = indices.reshape(-1), pre.reshape(-1)
    else:
        counts = torch.bincount(rows, minlength=n_cells)
        offsets = torch.cumsum(counts, 0) - counts
    recon, values = _SparseCode.apply(
        centred, b_dec, w_enc, b_enc, w_dec, pre, indices, rows, offsets, k
    )
    return recon, values, indices, offsets

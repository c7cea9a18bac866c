"""Encode cells straight to sparse activations: the inference fast path.

Encoding is a forward pass. For per-cell selections (TopK, and BatchTopK
before its threshold is calibrated) it is one encoder product and one top-k
per chunk, and the chunk's CSR block is built from the top-k indices and
values, and its reconstruction by gathering the selected decoder rows
(``embedding_bag``): no cells x features dense activation matrix, decode
product or dense-to-sparse conversion. Other architectures and inference
strategies produce dense activations, converted to CSR in torch.
The SAE encoder runs under :func:`torch.inference_mode`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse

from ._architectures import BatchTopK, TopK
from ._scale import CSRBuilder

if TYPE_CHECKING:
    from torch import Tensor

    from ._inference import Inference
    from ._sae_module import SAEModule

#: pre-activations per chunk of :func:`encode_to_csr` (64 MiB of float32): the chunk's
#: cells are this over the number of features
ENCODE_BUDGET = 2**24


class EncodedChunk(NamedTuple):
    """Codes of one chunk of cells.

    ``activations`` is a float32 CSR matrix (cells x features, model units,
    no explicit zeros, sorted column indices) and ``reconstruction`` the
    normalised reconstruction (cells x dims tensor).
    """

    activations: sparse.csr_matrix
    reconstruction: Tensor


def _per_cell_k(module: SAEModule) -> int | None:
    """``k`` when the module's inference activation is a per-cell top-k, else `None`."""
    activation = module.activation
    if type(activation) is TopK:
        return activation.k
    if type(activation) is BatchTopK and int(activation.n_updates) == 0:
        return activation.k  # uncalibrated BatchTopK encodes per cell (see its forward)
    return None


def _csr(n_cells: int, n_features: int, counts: Tensor, indices: Tensor, values: Tensor):
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(counts.cpu().numpy(), out=indptr[1:])
    return sparse.csr_matrix(
        (
            values.to(torch.float32).cpu().numpy(),
            indices.to(torch.int32).cpu().numpy(),
            indptr,
        ),
        shape=(n_cells, n_features),
    )


def _topk_chunk(module: SAEModule, x: Tensor, k: int) -> EncodedChunk:
    pre = torch.addmm(module.b_enc, x - module.b_dec, module.W_enc.T)
    top = pre.topk(min(k, pre.shape[1]), dim=-1, sorted=False)
    indices, order = top.indices.sort(dim=-1)  # CSR rows with sorted column ids
    values = top.values.gather(1, order).clamp_min_(0)
    recon = F.embedding_bag(indices, module.W_dec, per_sample_weights=values, mode="sum")
    recon += module.b_dec
    keep = values > 0  # as the dense path, a selected feature with value 0 is not stored
    block = _csr(x.shape[0], pre.shape[1], keep.sum(1), indices[keep], values[keep])
    block.has_canonical_format = True
    return EncodedChunk(block, recon)


def _dense_chunk(acts: Tensor, recon: Tensor) -> EncodedChunk:
    keep = acts != 0
    rows, cols = keep.nonzero(as_tuple=True)  # row-major: sorted by row, then column
    counts = torch.bincount(rows, minlength=acts.shape[0])
    block = _csr(acts.shape[0], acts.shape[1], counts, cols, acts[rows, cols])
    block.has_canonical_format = True
    return EncodedChunk(block, recon)


def encode_chunk(module: SAEModule, x: Tensor, inference: Inference | None = None) -> EncodedChunk:
    """Sparse activations and reconstruction of normalised inputs ``x``.

    Parameters
    ----------
    module
        The SAE (its mode is left as it is; the encoding is the inference one).
    x
        Normalised inputs (:meth:`SAEModule.normalize`), cells x dims.
    inference
        Strategy that infers codes; `None` or the ``"amortized"`` one is the
        SAE encoder (fast path for per-cell top-k architectures).
    """
    amortized = inference is None or getattr(inference, "name", None) == "amortized"
    # inference_mode for the SAE's own encoder; other strategies may keep state for
    # later autograd (fitted networks), which inference tensors would forbid
    with torch.inference_mode() if amortized else torch.no_grad():
        k = _per_cell_k(module) if amortized else None
        if k is not None and not module.training:
            return _topk_chunk(module, x, k)
        acts = module.encode(x) if amortized else inference.encode(module, x)
        return _dense_chunk(acts, module.decode(acts))


def encode_to_csr(
    module: SAEModule,
    embedding: np.ndarray | Tensor,
    *,
    batch_size: int | None = None,
    inference: Inference | None = None,
) -> sparse.csr_matrix:
    """Activations of every cell of a raw embedding, in embedding units (float32 CSR).

    Reads ``embedding`` by chunks of ``batch_size`` rows (a float32 view of
    each chunk only: no second copy of the embedding), normalises, encodes
    (:func:`encode_chunk`) and assembles the CSR matrix incrementally.

    Parameters
    ----------
    module
        The trained SAE; put in eval mode for the pass and restored after.
    embedding
        Cells x dims, in the units the module was trained on.
    batch_size
        Cells per chunk; `None` for as many as keep the chunk's
        pre-activations within 64 MiB (:data:`ENCODE_BUDGET`).
    inference
        As in :func:`encode_chunk`.
    """
    if batch_size is None:
        batch_size = max(256, ENCODE_BUDGET // module.config.n_features)
    if batch_size < 1:
        msg = f"batch_size must be at least 1, not {batch_size}."
        raise ValueError(msg)
    was_training = module.training
    module.eval()
    device = module.W_enc.device
    k = _per_cell_k(module)
    builder = CSRBuilder(module.config.n_features, capacity=len(embedding) * (k or 0))
    scale = float(module.input_scale)
    try:
        for start in range(0, len(embedding), batch_size):
            rows = embedding[start : start + batch_size]
            x = torch.as_tensor(rows, dtype=torch.float32, device=device)
            block = encode_chunk(module, module.normalize(x), inference).activations
            block.data *= scale
            builder.append(block)
    finally:
        module.train(was_training)
    return builder.to_csr()

"""Run by tests/test_scale.py: train on a seeded embedding, save rank 0's result.

``python tests/_ddp_train.py OUT.npz N_DEVICES``; Lightning's DDP launcher
re-runs this script once per extra rank (gloo on CPU processes).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
from anndata import AnnData

import scsae

warnings.filterwarnings("ignore")


def main() -> None:
    out, n_devices = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    dictionary = rng.normal(size=(48, 12))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    codes = rng.exponential(size=(3000, 48)) * (rng.random((3000, 48)) < 0.06)
    adata = AnnData(obsm={"X_emb": (codes @ dictionary).astype(np.float32)})
    scsae.SAE.setup_anndata(adata, use_rep="X_emb")
    model = scsae.SAE(adata, n_features=96, k=4, kernel="dense", dead_after_cells=500)
    kwargs = {"strategy": "ddp", "devices": n_devices} if n_devices > 1 else {"devices": 1}
    model.train(
        max_epochs=3,
        batch_size=256,
        train_size=0.9,
        enable_progress_bar=False,
        accelerator="cpu",
        **kwargs,
    )
    import torch.distributed as dist

    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if rank == 0:
        np.savez(
            out,
            decoder=model.decoder,
            dead=model.module.cells_since_fired.numpy(),
            **{key: df[key].to_numpy() for key, df in model.history.items()},
        )


if __name__ == "__main__":
    main()

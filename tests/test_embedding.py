"""Input access and validation shared by all models."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

from scsae._utils._embedding import get_embedding


def test_obsm_x_layer_and_dataframe(adata):
    assert get_embedding(adata, use_rep="X_emb").n_dims == 16
    x = get_embedding(adata, use_rep="X")
    assert x.is_sparse and x.n_dims == 30
    assert x.rows(np.array([0, 5])).dtype == np.float32
    adata.layers["counts"] = adata.X.copy()
    assert get_embedding(adata, use_rep=None, layer="counts").name == "layers['counts']"
    adata.obsm["df"] = pd.DataFrame(adata.obsm["X_emb"], index=adata.obs_names)
    assert get_embedding(adata, use_rep="df").rows(slice(0, 3)).shape == (3, 16)


def test_errors_name_the_fix(adata):
    with pytest.raises(KeyError, match=r"available: \['X_emb', 'true_codes'\]"):
        get_embedding(adata, use_rep="X_scVI")
    with pytest.raises(KeyError, match="layer 'raw' not found"):
        get_embedding(adata, use_rep=None, layer="raw")
    with pytest.raises(ValueError, match="not both"):
        get_embedding(adata, use_rep="X_emb", layer="raw")
    ad = AnnData(np.zeros((5, 0), dtype=np.float32))
    with pytest.raises(ValueError, match="empty"):
        get_embedding(ad, use_rep="X")


def test_check_finite_sparse_and_dense(adata):
    get_embedding(adata, use_rep="X_emb").check_finite()
    x = adata.X.copy()
    x.data[3] = np.inf
    adata.layers["bad"] = sparse.csr_matrix(x)
    with pytest.raises(ValueError, match="1 cells"):
        get_embedding(adata, use_rep=None, layer="bad").check_finite()

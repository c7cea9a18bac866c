import numpy as np
import pytest
import torch
from scipy import sparse

import scsae
from scsae.datasets import simulate_superposition
from scsae.models import INFERENCE, SAEConfig, SAEModule
from scsae.models._inference import get_inference


def superposition(n_obs: int, *, noise: float = 0.0, seed: int = 0):
    """(embedding, true dictionary, dense true codes): 3 of 64 directions in 16 dims."""
    ad = simulate_superposition(n_obs, 16, 64, n_active=3, noise=noise, random_state=seed)
    sim = ad.uns["simulation"]
    return ad.obsm["X_emb"], sim["true_dictionary"], ad.obsm["true_codes"].toarray()


STRATEGIES = [
    ("amortized", {}),
    ("ista", {}),
    ("fista", {"k": 3}),
    ("omp", {}),
    ("mp", {}),
    ("ito", {}),
    ("ito", {"support": "free"}),
]


@pytest.fixture(autouse=True)
def _one_thread():
    # small batched solves run faster on one thread, and far faster on a busy machine
    torch.set_num_threads(1)


def oracle_module(dictionary: np.ndarray, k: int = 3) -> SAEModule:
    """An SAE whose decoder is the true dictionary and whose encoder is its transpose."""
    n_features, n_dims = dictionary.shape
    module = SAEModule(SAEConfig(n_input=n_dims, n_features=n_features, k=k))
    with torch.no_grad():
        module.W_dec.copy_(torch.as_tensor(dictionary, dtype=torch.float32))
        module.W_enc.copy_(module.W_dec)
    return module.eval()


@torch.no_grad()
def fvu(x, module, acts):
    recon = module.decode(acts)
    return float((x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def test_registry_has_all_strategies():
    assert {"amortized", "ista", "fista", "omp", "mp", "ito", "lista"} <= set(INFERENCE)
    assert INFERENCE["lista"].needs_fit
    assert not INFERENCE["omp"].needs_fit


@pytest.mark.parametrize(("name", "options"), STRATEGIES)
def test_strategies_on_true_dictionary(name, options):
    x_np, dictionary, _ = superposition(n_obs=500, noise=0.01, seed=2)
    module = oracle_module(dictionary)
    x = torch.from_numpy(x_np)
    acts = get_inference(name, **options).encode(module, x)
    assert acts.shape == (500, 64)
    assert acts.dtype == x.dtype
    assert torch.isfinite(acts).all() and (acts >= 0).all()
    if name in ("omp", "mp") or (name == "fista" and options) or options.get("support") == "free":
        assert ((acts > 0).sum(1) <= 3).all()
    if name == "ito" and not options:
        # fixed support: never leaves the encoder's active set
        assert not ((acts > 0) & (module.encode(x) <= 0)).any()


def test_decoupled_beats_encoder_on_true_dictionary():
    x_np, dictionary, codes = superposition(n_obs=1000, noise=0.01, seed=3)
    module = oracle_module(dictionary)
    x = torch.from_numpy(x_np)
    amortised_acts = get_inference("amortized").encode(module, x)
    amortised = fvu(x, module, amortised_acts)
    omp_acts = get_inference("omp").encode(module, x)
    assert fvu(x, module, omp_acts) < amortised / 5

    # OMP finds the exact true support in most cells, the encoder in few
    def exact_support(acts):
        return ((acts.detach().numpy() > 0) == (codes > 0)).all(1).mean()

    assert exact_support(omp_acts) > 0.75
    assert exact_support(omp_acts) > exact_support(amortised_acts) + 0.2
    ista = get_inference("fista", l1=0.01, n_iter=200, debias=True).encode(module, x)
    assert fvu(x, module, ista) < amortised / 5


def test_strategies_device_and_dtype():
    x_np, dictionary, _ = superposition(n_obs=50, seed=4)
    module = oracle_module(dictionary).double()
    x = torch.from_numpy(x_np).double()
    for name, options in STRATEGIES:
        acts = get_inference(name, **options).encode(module, x)
        assert acts.dtype == torch.float64


def test_strategy_option_errors():
    with pytest.raises(ValueError, match="Unknown inference strategy"):
        get_inference("nope")
    with pytest.raises(TypeError):
        get_inference("omp", l1=0.1)
    with pytest.raises(ValueError, match="support"):
        get_inference("ito", support="sometimes")
    with pytest.raises(ValueError, match="l1"):
        get_inference("ista", l1=0)
    with pytest.raises(ValueError, match="n_layers"):
        get_inference("lista", n_layers=0)
    _, dictionary, _ = superposition(n_obs=10, seed=5)
    module = oracle_module(dictionary)
    with pytest.raises(ValueError, match="k=100"):
        get_inference("omp", k=100).encode(module, torch.zeros(2, 16))
    with pytest.raises(RuntimeError, match="not fitted"):
        get_inference("lista").encode(module, torch.zeros(2, 16))


def test_lista_fit_improves_on_encoder():
    x_np, dictionary, _ = superposition(n_obs=2000, noise=0.01, seed=6)
    module = oracle_module(dictionary)
    x = torch.from_numpy(x_np)
    lista = get_inference("lista", n_epochs=5, batch_size=256)
    lista.train(module, (x[i : i + 500] for i in range(0, 2000, 500)))
    acts = lista.encode(module, x)
    assert ((acts > 0).sum(1) <= 3).all()
    assert fvu(x, module, acts) < fvu(x, module, module.encode(x))
    assert len(lista.history_) == 5
    assert "final_loss" in lista.params()


@pytest.fixture(scope="module")
def trained():
    x, _, _ = superposition(n_obs=2000, noise=0.01, seed=0)
    from anndata import AnnData

    adata = AnnData(obsm={"X_emb": x})
    scsae.SAE.setup_anndata(adata, use_rep="X_emb")
    model = scsae.SAE(adata, n_features=64, k=3)
    model.train(max_epochs=5, batch_size=128, lr=1e-2, enable_progress_bar=False)
    return adata, model


@pytest.mark.parametrize("name", ["omp", "fista", "ito", "lista"])
def test_model_inference_outputs(trained, name):
    _, model = trained
    options = {"n_epochs": 2} if name == "lista" else {}
    strategy = model.get_inference(name, **options)
    acts = model.get_feature_activations(inference=strategy)
    assert sparse.issparse(acts) and acts.shape == (2000, 64)
    assert acts.dtype == np.float32 and (acts.data > 0).all()
    metrics = model.get_metrics(inference=strategy)
    assert np.isfinite(metrics["fvu"])
    if name == "omp":
        assert metrics["heldout_mean_l0"] == pytest.approx(3)
        assert metrics["fvu"] < model.get_metrics()["fvu"]


def test_tl_sae_with_inference():
    x, _, _ = superposition(n_obs=600, noise=0.01, seed=1)
    from anndata import AnnData

    adata = AnnData(obsm={"X_emb": x})
    scsae.tl.sae(
        adata,
        use_rep="X_emb",
        n_features=64,
        k=3,
        max_epochs=2,
        inference="omp",
        inference_kwargs={"k": 2},
    )
    params = adata.uns["X_sae"]["params"]
    assert (params["inference"] == "omp" and params["k"] == 2) or params["inference"] == "omp"
    assert adata.uns["X_sae"]["metrics"]["heldout_mean_l0"] == pytest.approx(2)


def test_dictionary_learning_by_sparse_coding(trained):
    adata, _ = trained
    model = scsae.SAE(adata, n_features=64, k=3)
    model.train(
        max_epochs=3, batch_size=128, lr=1e-2, enable_progress_bar=False, code_inference="omp"
    )
    assert model.train_params_["code_inference"] == {"inference": "omp"}
    # all pairings of dictionary and encoder work
    for name in ("amortized", "omp"):
        assert np.isfinite(model.get_metrics(inference=name)["fvu"])
    with pytest.raises(ValueError, match="cannot learn a dictionary"):
        scsae.SAE(adata, n_features=64, k=3).train(max_epochs=1, code_inference="lista")

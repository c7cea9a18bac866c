"""The SparseAutoencoder model class: training, architectures, determinism, save/load."""

import re
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from anndata import AnnData
from scipy import sparse

import scsae
from scsae.models import ARCHITECTURES, SparseAutoencoder

FAST = {"max_epochs": 15, "batch_size": 256, "lr": 3e-3, "enable_progress_bar": False}


def _trained(adata, max_epochs=FAST["max_epochs"], early_stopping=None, **kwargs):
    SparseAutoencoder.setup_anndata(adata, use_rep="X_emb")
    model = SparseAutoencoder(adata, n_features=128, k=kwargs.pop("k", 3), **kwargs)
    model.train(**{**FAST, "max_epochs": max_epochs, "early_stopping": early_stopping})
    return model


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_architectures_reconstruct_sparsely(adata, architecture):
    model = _trained(adata, architecture=architecture, max_epochs=40)
    acts = model.get_feature_activations()
    assert sparse.isspmatrix_csr(acts) and acts.dtype == np.float32
    assert acts.shape == (adata.n_obs, 128) and acts.min() >= 0
    metrics = model.get_metrics()
    assert metrics["fvu"] < 0.35, metrics
    assert metrics["heldout_mean_l0"] < 0.35 * 128, metrics
    # every architecture ends with unit-norm decoder rows
    np.testing.assert_allclose(np.linalg.norm(model.decoder, axis=1), 1.0, atol=1e-5)
    # activations in embedding units: bias + acts @ decoder is the reconstruction
    recon = model.get_reconstruction()
    np.testing.assert_allclose(model.bias + acts @ model.decoder, recon, atol=1e-4)
    assert set(model.history) >= {"train_fvu", "validation_fvu", "train_l0", "dead_fraction", "lr"}
    assert len(model.history["train_fvu"]) == model.train_params_["epochs_trained"] <= 40


@pytest.mark.parametrize("architecture", ["relu", "jumprelu"])
def test_penalty_trades_sparsity_for_reconstruction(adata, architecture):
    default = ARCHITECTURES[architecture].default_sparsity_coefficient
    options = {"architecture": architecture, "max_epochs": 60, "early_stopping": False}
    weak = _trained(adata, **options).get_metrics()
    strong = _trained(adata, **options, sparsity_coefficient=4 * default).get_metrics()
    assert strong["heldout_mean_l0"] < 0.8 * weak["heldout_mean_l0"]
    assert strong["fvu"] > weak["fvu"]


@pytest.mark.parametrize("architecture", ["topk", "batchtopk"])
def test_least_squares_encoder_init_starts_at_the_best_scale(adata, architecture):
    from scsae.models._sae_module import SAEConfig, SAEModule

    def module(encoder_init):
        config = SAEConfig(16, 256, architecture, k=8, encoder_init=encoder_init)
        return SAEModule(config, generator=torch.Generator().manual_seed(0))

    x = torch.from_numpy(adata.obsm["X_emb"])
    x = (x - x.mean(0)) / x.pow(2).sum(1).mean().sqrt()
    plain, scaled = module("transpose"), module("least_squares")

    def fvu(m):
        m.initialize_decoder_bias(x)
        m.initialize_encoder_scale(x)
        with torch.no_grad():
            return float(m.eval()(x).fvu)

    fvu_plain, fvu_scaled = fvu(plain), fvu(scaled)
    ratio = scaled.W_enc.detach() / plain.W_enc.detach()
    # one factor, well below one: 8 of 256 overlapping rows over-shoot the input
    assert torch.allclose(ratio, ratio.flatten()[0]) and 0 < float(ratio.flatten()[0]) < 0.8
    assert fvu_scaled < 0.7 * fvu_plain
    scaled.initialize_encoder_scale(x)  # already least-squares optimal: a second call keeps it
    assert torch.allclose(scaled.W_enc / plain.W_enc, ratio, rtol=1e-4)


@pytest.mark.parametrize(
    ("architecture", "expected"),
    [("topk", "least_squares"), ("batchtopk", "least_squares"), ("relu", "transpose")],
)
def test_auto_encoder_init_and_decoder_lr(adata, architecture, expected):
    model = _trained(adata, architecture=architecture, max_epochs=2)
    params = model.train_params_
    assert params["encoder_init"] == expected
    scale = model.module.encoder_scale
    if expected == "transpose":
        assert scale == 1.0
    else:  # 3 of 128 overlapping rows over-shoot: the encoder starts scaled down
        assert 0 < scale < 0.9
    # the decoder moves by the same fraction of its norm as the scaled encoder
    assert params["decoder_lr"] == pytest.approx(params["lr"] / scale)


def test_least_squares_encoder_init_needs_a_selection_architecture():
    from scsae.models._sae_module import SAEConfig, SAEModule

    with pytest.raises(ValueError, match="selection architecture"):
        SAEModule(SAEConfig(16, 64, "relu", encoder_init="least_squares"))
    with pytest.raises(ValueError, match="encoder_init"):
        SAEModule(SAEConfig(16, 64, encoder_init="small"))


def test_topk_has_exactly_k_and_training_improves(adata):
    model = _trained(adata, k=3, early_stopping=False)
    acts = model.get_feature_activations()
    assert (np.diff(acts.indptr) <= 3).all()
    fvu = model.history["train_fvu"]["train_fvu"].to_numpy()
    # the least-squares init starts low (first epoch 0.42, 0.63 with the plain transpose);
    # training still cuts FVU well below where the plain transpose ends (0.29)
    assert fvu[-1] < 0.6 * fvu[0]
    assert model.get_metrics()["train_fvu"] < 0.26
    lr = model.history["lr"]["lr"].to_numpy()
    assert lr[-1] < lr.max()  # decays at the end


def test_batchtopk_encodes_cells_independently_of_their_batch(adata):
    model = _trained(adata, architecture="batchtopk")
    assert float(model.module.activation.threshold) > 0
    alone = model.get_feature_activations(batch_size=1)[:5].toarray()
    together = model.get_feature_activations(batch_size=1000)[:5].toarray()
    np.testing.assert_allclose(alone, together, atol=1e-6)
    l0 = np.diff(model.get_feature_activations().indptr)
    assert l0.std() > 0  # variable number of features per cell
    assert 1.5 < l0.mean() < 6


def test_same_seed_same_activations_other_seed_differs(adata):
    a = _trained(adata, random_state=3).get_feature_activations()
    b = _trained(adata, random_state=3).get_feature_activations()
    c = _trained(adata, random_state=4).get_feature_activations()
    assert (a != b).nnz == 0
    assert (a != c).nnz > 0


def test_save_load_round_trip(adata, tmp_path):
    model = _trained(adata, architecture="batchtopk")
    model.save(tmp_path / "sae")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(tmp_path / "sae")
    # the scvi-tools layout: weights, var_names, and the registry beside the model's state
    saved = torch.load(tmp_path / "sae" / "model.pt", weights_only=False)
    assert set(saved) == {"model_state_dict", "var_names", "attr_dict"}
    assert saved["attr_dict"]["registry_"]["setup_args"]["use_rep"] == "X_emb"
    other = adata.copy()
    loaded = SparseAutoencoder.load(tmp_path / "sae", other)
    assert loaded.adata is other and loaded.is_trained_
    assert (loaded.get_feature_activations() != model.get_feature_activations()).nnz == 0
    assert loaded.get_metrics() == model.get_metrics()  # same held-out cells and baseline
    assert loaded.train_params_ == model.train_params_
    assert loaded.history["train_fvu"].equals(model.history["train_fvu"])
    assert loaded.module.config == model.module.config
    assert loaded.module.encoder_scale == model.module.encoder_scale
    # with the data saved beside it, no data is needed
    model.save(tmp_path / "with_data", save_anndata=True)
    alone = SparseAutoencoder.load(tmp_path / "with_data")
    assert (alone.get_feature_activations() != model.get_feature_activations()).nnz == 0
    with pytest.raises(ValueError, match="No data saved"):
        SparseAutoencoder.load(tmp_path / "sae")


def test_load_onto_another_width_class_or_newer_version_is_refused(adata, tmp_path):
    SparseAutoencoder.setup_anndata(adata, use_rep="X_emb")
    model = SparseAutoencoder(adata, n_features=32, k=2)
    model.save(tmp_path / "sae")
    wrong = AnnData(obsm={"X_emb": np.zeros((50, 8), dtype=np.float32)})
    with pytest.raises(
        ValueError, match=r"obsm\['X_emb'\] has 8 dims but the saved model expects 16"
    ):
        SparseAutoencoder.load(tmp_path / "sae", wrong)
    assert "_scvi_uuid" not in wrong.uns  # nothing registered on a refused load
    saved = torch.load(tmp_path / "sae" / "model.pt", weights_only=False)
    saved["attr_dict"]["scsae_version_"] = "99.0"
    torch.save(saved, tmp_path / "sae" / "model.pt")
    with pytest.raises(ValueError, match="newer"):
        SparseAutoencoder.load(tmp_path / "sae", adata)
    saved["attr_dict"]["registry_"]["model_name"] = "SAMSVAE"
    torch.save(saved, tmp_path / "sae" / "model.pt")
    with pytest.raises(ValueError, match="not a SparseAutoencoder"):
        SparseAutoencoder.load(tmp_path / "sae", adata)


def _save_v0_2(model, path):
    """Write ``model`` as scsae 0.2's ``SparseAutoencoder.save`` did (its own layout)."""
    init = model.init_params_
    path.mkdir(parents=True)
    torch.save(
        {
            "class": "SparseAutoencoder",
            "version": "0.2.0",
            "config": model.module.config.to_dict(),
            "init_params": {**init["non_kwargs"], **init["kwargs"]["config_kwargs"]},
            "train_params": model.train_params_,
            "setup": {"use_rep": model.use_rep, "layer": model.layer, "n_dims": model.n_dims},
            "state_dict": model.module.state_dict(),
            "history": {key: df[key].tolist() for key, df in model.history_.items()},
            "is_trained": True,
            "heldout_mask": model.heldout_mask_,
            "baseline": model.baseline_,
        },
        path / "model.pt",
    )


@pytest.mark.parametrize("setup", [{"use_rep": "X_emb"}, {"use_rep": "X"}])
def test_previous_release_saves_load_and_convert(adata, tmp_path, setup):
    SparseAutoencoder.setup_anndata(adata, **setup)
    model = SparseAutoencoder(adata, n_features=24, k=2, aux_k=4, random_state=5)
    model.is_trained_ = True  # an untrained SAE encodes too: its weights are what is compared
    expected = model.get_feature_activations()
    _save_v0_2(model, tmp_path / "old")
    other = adata.copy()
    with pytest.warns(FutureWarning, match=r"scsae 0\.2.*convert_legacy_save"):
        loaded = SparseAutoencoder.load(tmp_path / "old", other)
    assert (loaded.get_feature_activations() != expected).nnz == 0
    assert loaded.module.config.aux_k == 4 and loaded.use_rep == setup["use_rep"]
    SparseAutoencoder.convert_legacy_save(tmp_path / "old", tmp_path / "new")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the converted files load without a warning
        converted = SparseAutoencoder.load(tmp_path / "new", adata.copy())
    assert (converted.get_feature_activations() != expected).nnz == 0
    with pytest.raises(FileExistsError, match="overwrite=True"):
        SparseAutoencoder.convert_legacy_save(tmp_path / "old", tmp_path / "new")
    with pytest.raises(ValueError, match="already in the scvi-tools format"):
        SparseAutoencoder.convert_legacy_save(tmp_path / "new", tmp_path / "again")


def test_registration_is_scvi_tools_and_survives_copies_and_h5ad(adata, tmp_path, capsys):
    SparseAutoencoder.setup_anndata(adata, use_rep="X_emb")
    model = SparseAutoencoder(adata, n_features=32, k=2)
    capsys.readouterr()
    model.view_anndata_setup()
    assert "adata.obsm['X_emb']" in capsys.readouterr().out
    assert {"_scvi_uuid", "_scvi_manager_uuid"} <= set(adata.uns)
    adata.write_h5ad(tmp_path / "a.h5ad")
    for other in (adata.copy(), ad.read_h5ad(tmp_path / "a.h5ad")):
        model.view_anndata_setup(other)
        assert "adata.obsm['X_emb']" in capsys.readouterr().out
        # a new model on the copy needs no new setup_anndata
        assert SparseAutoencoder(other, n_features=32, k=2).adata is other
    assert model.adata_manager.adata is adata  # the original keeps its registration
    SparseAutoencoder.setup_anndata(adata, use_rep="X")
    SparseAutoencoder(adata, n_features=32, k=2).view_anndata_setup()
    assert "adata.X" in capsys.readouterr().out
    with pytest.raises(ValueError, match="view"):
        SparseAutoencoder.setup_anndata(adata[:100], use_rep="X_emb")


def test_one_training_path_for_the_sae_and_lista(adata, monkeypatch):
    from scvi.train import TrainRunner

    from scsae.models import _training

    assert issubclass(_training.Runner, TrainRunner)  # the runner SAMS-VAE trains with
    plans = []
    call = _training.Runner.__call__

    def spy(runner):
        plans.append(type(runner.training_plan).__name__)
        return call(runner)

    monkeypatch.setattr(_training.Runner, "__call__", spy)
    model = _trained(adata, max_epochs=1)
    model.get_inference("lista", n_epochs=1)
    assert plans == ["SAETrainingPlan", "LossPlan"]
    # and no other loop over epochs anywhere in the package
    src = Path(scsae.__file__).parent
    loops = [
        f"{path.relative_to(src)}:{number}"
        for path in src.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"def fit|for epoch", line)
    ]
    assert loops == []


def test_encoding_other_data_checks_dimension(adata):
    model = _trained(adata)
    new = AnnData(np.zeros((20, 1), dtype=np.float32))
    new.obsm["X_emb"] = np.ones((20, 10), dtype=np.float32)
    with pytest.raises(ValueError, match="10 dims but the model was built for 16"):
        model.get_feature_activations(new)
    new.obsm["X_emb"] = adata.obsm["X_emb"][:20]
    expected = model.get_feature_activations()[:20].toarray()
    np.testing.assert_allclose(model.get_feature_activations(new).toarray(), expected)
    assert "_scvi_uuid" in new.uns  # other data are registered, as scvi-tools models do
    view = adata[:20]  # a view is read, not registered (that would turn it into a copy)
    np.testing.assert_allclose(model.get_feature_activations(view).toarray(), expected)
    assert view.is_view


def test_sparse_x_and_layer_inputs(adata):
    for kwargs in ({"use_rep": "X"}, {"use_rep": None, "layer": "counts"}):
        adata.layers["counts"] = adata.X.copy()
        SparseAutoencoder.setup_anndata(adata, **kwargs)
        model = SparseAutoencoder(adata, n_features=64, k=4)
        model.train(**FAST)
        acts = model.get_feature_activations()
        assert acts.shape == (adata.n_obs, 64)
        assert model.get_metrics()["fvu"] < 1.0


def test_untrained_and_unregistered_errors(adata):
    with pytest.raises(ValueError, match="setup_anndata"):
        SparseAutoencoder(adata.copy())
    SparseAutoencoder.setup_anndata(adata, use_rep="X_emb")
    model = SparseAutoencoder(adata, n_features=32, k=2)
    with pytest.raises(RuntimeError, match="not trained"):
        model.get_feature_activations()
    with pytest.raises(ValueError, match="Unknown architecture 'gated'"):
        SparseAutoencoder(adata, architecture="gated")
    with pytest.raises(ValueError, match="Unknown inference strategy"):
        _trained(adata).get_feature_activations(inference="magic")
    assert "SparseAutoencoder(topk, 16 dims -> 32 features" in repr(model)
    assert scsae.SAE is SparseAutoencoder


def test_early_stopping_on_validation_split(adata):
    SparseAutoencoder.setup_anndata(adata, use_rep="X_emb")
    model = SparseAutoencoder(adata, n_features=64, k=3)
    model.train(
        max_epochs=300,
        batch_size=256,
        early_stopping=True,
        early_stopping_patience=3,
        enable_progress_bar=False,
    )
    assert model.train_params_["epochs_trained"] < 300
    assert len(model.history["validation_fvu"]) == model.train_params_["epochs_trained"]
    with pytest.raises(ValueError, match="train_size < 1"), pytest.warns(UserWarning):
        SparseAutoencoder(adata, n_features=64, k=3).train(
            max_epochs=2, train_size=1.0, early_stopping=True, enable_progress_bar=False
        )


@pytest.mark.parametrize("kernel", ["dense", "sparse"])
def test_bf16_autocast_keeps_fp32_weights_and_quality(adata, kernel):
    # the same autocast path Lightning takes on GPUs with precision="bf16-mixed"
    SparseAutoencoder.setup_anndata(adata, use_rep="X_emb")
    full, mixed = (SparseAutoencoder(adata, n_features=128, k=3, kernel=kernel) for _ in "ab")
    full.train(**FAST)
    mixed.train(**FAST, precision="bf16-mixed")
    assert mixed.module.W_dec.dtype == torch.float32
    assert mixed.train_params_["precision"] == "bf16-mixed"
    assert full.train_params_["precision"] == "32-true"
    assert mixed.get_metrics()["fvu"] < full.get_metrics()["fvu"] + 0.05


def test_model_selection_ends_at_the_best_heldout_epoch(adata):
    SparseAutoencoder.setup_anndata(adata, use_rep="X_emb")
    model = SparseAutoencoder(adata, n_features=128, k=3)
    model.train(max_epochs=60, batch_size=256, lr=3e-3, early_stopping_patience=5)
    curve = model.history["validation_fvu"]["validation_fvu"].to_numpy()
    best = model.train_params_["best_epoch"]
    assert curve[best] == curve.min()
    # the weights are the best epoch's: the held-out FVU is that epoch's, not the last one's
    assert model.get_metrics()["fvu"] == pytest.approx(curve.min(), rel=1e-4)
    mask = model.heldout_mask_
    assert mask.sum() == 200 == model.get_metrics()["n_heldout_cells"]


def test_linear_baseline_is_rank_k_pca_of_the_training_cells(adata):
    model = _trained(adata, k=3, max_epochs=2)
    x = adata.obsm["X_emb"].astype(np.float64)
    train, heldout = x[~model.heldout_mask_], x[model.heldout_mask_]
    mean = train.mean(0)
    axes = np.linalg.svd(train - mean, full_matrices=False)[2][:3]
    recon = mean + (heldout - mean) @ axes.T @ axes
    fvu = ((heldout - recon) ** 2).sum() / ((heldout - heldout.mean(0)) ** 2).sum()
    assert model.get_metrics()["baseline_fvu_rank_k"] == pytest.approx(fvu, rel=1e-4)
    # on new data every cell is held out, and the baseline is the same training PCA
    other = AnnData(obsm={"X_emb": adata.obsm["X_emb"][:500].copy()})
    metrics = model.get_metrics(other)
    assert metrics["n_heldout_cells"] == 500 and "train_fvu" not in metrics


def test_train_size_one_warns_and_says_nothing_is_held_out(adata):
    SparseAutoencoder.setup_anndata(adata, use_rep="X_emb")
    model = SparseAutoencoder(adata, n_features=64, k=3)
    with pytest.warns(UserWarning, match="no cells are held out") as record:
        model.train(max_epochs=2, batch_size=256, train_size=1.0, enable_progress_bar=False)
    assert len(record) == 1
    metrics = model.get_metrics()
    assert not metrics["has_heldout"] and np.isnan(metrics["fvu"])
    assert metrics["n_train_cells"] == 2000 and np.isfinite(metrics["train_fvu"])


def test_second_train_call_continues_from_the_current_state(adata):
    model = _trained(adata, k=3, max_epochs=10)
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    fvu = model.get_metrics()["fvu"]
    epochs = model.train_params_["epochs_trained"]
    # a vanishing learning rate must leave the model as it was: no re-normalisation,
    # no new decoder bias, no re-scaled encoder, the same held-out cells
    mask = model.heldout_mask_.copy()
    model.train(max_epochs=3, lr=1e-12, batch_size=256, enable_progress_bar=False)
    for name in ("input_mean", "input_scale", "b_dec", "W_enc", "W_dec"):
        torch.testing.assert_close(model.module.state_dict()[name], state[name])
    assert model.get_metrics()["fvu"] == pytest.approx(fvu, rel=1e-5)
    np.testing.assert_array_equal(model.heldout_mask_, mask)
    assert model.train_params_["epochs_trained"] == epochs + 3
    assert model.train_params_["n_train_calls"] == 2
    with pytest.raises(ValueError, match="held-out cells cannot change"):
        model.train(max_epochs=1, train_size=0.5, enable_progress_bar=False)


def test_auxk_weight_counts_the_dead_before_capping_aux_k():
    from scsae.models._sae_module import SAEConfig, SAEModule

    torch.manual_seed(0)
    x = torch.randn(64, 16)
    losses = {}
    for kernel in ("dense", "sparse"):
        module = SAEModule(
            SAEConfig(16, 64, k=4, aux_k=8, kernel=kernel, dead_after_cells=1),
            generator=torch.Generator().manual_seed(0),
        ).train()
        module.cells_since_fired[:2] = 5  # 2 dead features, aux_k 8: weight 2/8
        losses[kernel] = module(x).aux_loss
    torch.testing.assert_close(losses["dense"], losses["sparse"])
    # by hand: the 2 dead features reconstruct the residual, scaled by 2/8
    pre = module.pre_activations(x)
    acts = torch.relu(pre[:, :2])
    out = module.eval()(x)
    residual = x - out.reconstruction
    target = residual - residual.mean(0)
    manual = ((acts @ module.W_dec[:2] - residual).pow(2).sum() / target.pow(2).sum()) * 2 / 8
    torch.testing.assert_close(losses["dense"], manual.detach(), rtol=1e-4, atol=1e-6)


def test_matryoshka_puts_parents_in_the_first_prefix():
    """Hierarchy: 16 parent directions, each with 2 children; the first 16 features must
    reconstruct alone, so the parents are recovered there (all of the recovered ones;
    BatchTopK scatters them: 40% in its first 16)."""
    adata = scsae.datasets.simulate_superposition(
        5000, 16, 48, n_active=2, n_children=2, child_probability=0.5, random_state=0
    )
    scsae.tl.sae(
        adata,
        use_rep="X_emb",
        architecture="matryoshka",
        n_features=48,
        k=3,
        max_epochs=40,
        batch_size=256,
        lr=1e-2,
        model_kwargs={"prefix_sizes": [16]},
    )
    truth = adata.uns["simulation"]["true_dictionary"]
    parents = adata.uns["simulation"]["parent"] < 0
    cos = truth[parents] @ adata.uns["X_sae"]["decoder"].T
    found = cos.max(1) >= 0.9
    assert found.mean() >= 0.5
    assert (cos.argmax(1)[found] < 16).mean() >= 0.8


def test_matryoshka_prefixes_and_kernel():
    from scsae.models._architectures import prefix_sizes
    from scsae.models._sae_module import SAEConfig, SAEModule

    assert prefix_sizes(None, 64) == (8, 16, 32, 64)
    assert prefix_sizes([4, 2], 10) == (2, 4, 10)
    with pytest.raises(ValueError, match="between 1 and n_features"):
        prefix_sizes([0], 10)
    module = SAEModule(SAEConfig(8, 2048, "matryoshka", k=2))
    assert module.kernel == "dense"  # the prefix losses read every activation
    with pytest.raises(ValueError, match="prefix losses"):
        SAEModule(SAEConfig(8, 64, "matryoshka", k=2, kernel="sparse"))
    # the loss adds one FVU per proper prefix: a model whose later features are off
    # has every prefix FVU equal to the full one
    torch.manual_seed(0)
    module = SAEModule(SAEConfig(8, 16, "matryoshka", k=2, prefix_sizes=(4, 8))).train()
    with torch.no_grad():
        module.W_enc[4:] = 0
        module.b_enc[4:] = -1
    out = module(torch.randn(32, 8))
    torch.testing.assert_close(out.sparsity_loss, 2 * out.fvu)

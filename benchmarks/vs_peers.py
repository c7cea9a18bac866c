"""scsae vs EleutherAI ``sparsify`` vs SAELens: TopK SAEs trained side by side.

Usage::

    pip install "scsae[bench]"   # eai-sparsify, sae-lens
    python benchmarks/vs_peers.py [--n-obs 50000] [--epochs 20] [--threads 2] [--repeats 3]

Every tool trains a TopK SAE with the same width, k, learning rate, batch
size and number of epochs, on the same in-memory float32 tensor, each with
its own training step (scsae: ``SparseAutoencoder.train``, i.e. its Lightning
path, with its default recipe and, for reference, with the plain transposed-decoder
encoder init ``encoder_init="transpose"``; sparsify: ``SparseCoder.forward`` with its FVU + AuxK losses, decoder
gradient projection and unit-norm decoder, as its ``Trainer`` does; SAELens:
``TopKTrainingSAE.training_forward_pass``). For the peers the loop around
the step is written here: Adam, the same warm-up/decay schedule as scsae,
reshuffled minibatches, dead counters over ``n_obs`` cells as scsae. Inputs
are centred and scaled to unit mean squared norm for the peers (scsae does
this itself), so FVU is comparable. Each run is a fresh process, so peak
memory is per tool. A peer that is not installed is skipped with the reason.

Data: ``scsae.datasets.simulate_superposition`` (with its true dictionary,
for the dictionary MCC: mean |cos| of true directions to their Hungarian-
matched decoder rows) and ``pbmc68k_reduced`` ``X_pca`` upsampled by
resampling cells with small Gaussian jitter (no truth, MCC not defined).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

TOOLS = ("scsae", "scsae-before", "scsae-tr", "sparsify", "saelens")
#: scsae variants: the default recipe (least-squares encoder scale), the same recipe from
#: another checkout (``--before-src``: a before/after in the same run), and the plain transpose
SCSAE_INIT = {"scsae": "auto", "scsae-before": "auto", "scsae-tr": "transpose"}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dictionary_mcc(true: np.ndarray, learned: np.ndarray) -> float:
    from scipy.optimize import linear_sum_assignment

    t = true / np.linalg.norm(true, axis=1, keepdims=True)
    d = learned / np.maximum(np.linalg.norm(learned, axis=1, keepdims=True), 1e-12)
    cos = np.abs(t @ d.T)
    rows, cols = linear_sum_assignment(-cos)
    return float(cos[rows, cols].sum() / len(t))


def _schedule(total: int):
    from scsae.models._training import lr_lambda

    return lr_lambda(total)


def _peer_loop(step, params, x, args, n_features, encode):
    """Adam + scsae's schedule around a peer's training ``step(batch, dead_mask) -> fired``."""
    import torch

    opt = torch.optim.Adam(params, lr=args.lr)
    n = x.shape[0]
    steps_per_epoch = n // args.batch_size
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(steps_per_epoch * args.epochs))
    since_fired = torch.zeros(n_features, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(steps_per_epoch):
            batch = x[order[b * args.batch_size : (b + 1) * args.batch_size]]
            fired = step(batch, since_fired >= min(n, 1_000_000), opt)
            sched.step()
            since_fired += batch.shape[0]
            since_fired[fired] = 0
    return steps_per_epoch * args.batch_size * args.epochs


def _evaluate(x_test, x_train, encode_decode, n_features):
    """Held-out FVU on ``x_test``; dead fraction: features silent on every training cell."""
    import torch

    sq, active = 0.0, torch.zeros(n_features, dtype=torch.bool)
    with torch.no_grad():
        for x, is_test in ((x_test, True), (x_train, False)):
            for start in range(0, x.shape[0], 8192):
                xb = x[start : start + 8192]
                recon, fired = encode_decode(xb)
                if is_test:
                    sq += float((xb - recon).pow(2).sum())
                else:
                    active |= fired
    total = float((x_test - x_test.mean(0)).pow(2).sum())
    return sq / total, float(1 - active.float().mean())


def run_tool(tool: str, data_file: str, args: argparse.Namespace, out: mp.Queue) -> None:
    """Train one tool in this (fresh) process; put a result row or a skip reason."""
    import sys
    import warnings

    warnings.filterwarnings("ignore")
    if tool == "scsae-before":
        if not args.before_src:
            out.put((tool, "skipped: pass --before-src (the src folder of the code before)"))
            return
        sys.path.insert(0, args.before_src)
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = np.load(data_file)
    raw = data["x"].astype(np.float32)
    raw_test = data["x_test"].astype(np.float32)
    mean, scale = raw.mean(0), np.sqrt(((raw - raw.mean(0)) ** 2).sum(1).mean())
    x = torch.from_numpy((raw - mean) / scale)
    x_test = torch.from_numpy((raw_test - mean) / scale)
    n_features, k, d = args.n_features, args.k, raw.shape[1]
    try:
        if tool in SCSAE_INIT:
            from anndata import AnnData

            import scsae

            if tool == "scsae-before" and not scsae.__file__.startswith(args.before_src):
                out.put((tool, f"failed: imported scsae from {scsae.__file__}"))
                return

            adata = AnnData(obsm={"X_emb": raw})
            scsae.SAE.setup_anndata(adata, use_rep="X_emb")
            model = scsae.SAE(adata, n_features=n_features, k=k, encoder_init=SCSAE_INIT[tool])
            base = peak_rss_mib()
            start = time.perf_counter()
            model.train(
                max_epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                train_size=1.0,
                enable_progress_bar=False,
                accelerator="cpu",
            )
            seconds = time.perf_counter() - start
            cells = (raw.shape[0] // args.batch_size) * args.batch_size * args.epochs
            test = AnnData(obsm={"X_emb": raw_test})
            scsae.SAE.setup_anndata(test, use_rep="X_emb")
            fvu = model.get_metrics(test)["fvu"]  # every cell of other data is held out
            dead, decoder = model.get_metrics()["train_dead_fraction"], model.decoder
            p = model.train_params_
            note = f"kernel={p['kernel']}, encoder_init={p['encoder_init']}, decoder lr {p['decoder_lr']:.2g}"
        elif tool == "sparsify":
            try:
                from sparsify import SparseCoder, SparseCoderConfig
            except ImportError as error:
                out.put(
                    (tool, f"skipped: cannot import sparsify ({error}); pip install eai-sparsify")
                )
                return
            sae = SparseCoder(d, SparseCoderConfig(num_latents=n_features, k=k), device="cpu")

            def step(batch, dead, opt):
                sae.set_decoder_norm_to_unit_norm()
                o = sae(batch, dead_mask=dead)
                (o.fvu + (1 / 32) * o.auxk_loss).backward()
                sae.remove_gradient_parallel_to_decoder_directions()
                opt.step()
                opt.zero_grad(set_to_none=True)
                fired = torch.zeros(n_features, dtype=torch.bool)
                fired[o.latent_indices.flatten()] = True
                return fired

            def encode_decode(xb):
                acts, idx, _ = sae.encode(xb)
                fired = torch.zeros(n_features, dtype=torch.bool)
                fired[idx[acts > 0]] = True
                return sae.decode(acts, idx), fired

            base = peak_rss_mib()
            start = time.perf_counter()
            cells = _peer_loop(step, sae.parameters(), x, args, n_features, encode_decode)
            seconds = time.perf_counter() - start
            sae.set_decoder_norm_to_unit_norm()
            fvu, dead = _evaluate(x_test, x, encode_decode, n_features)
            decoder = sae.W_dec.detach().numpy()
            note = "SparseCoder (fused_encoder + decoder_impl)"
        else:
            try:
                from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
                from sae_lens.saes.sae import TrainStepInput
            except ImportError as error:
                out.put((tool, f"skipped: cannot import sae_lens ({error}); pip install sae-lens"))
                return
            cfg = TopKTrainingSAEConfig(
                d_in=d, d_sae=n_features, k=k, dtype="float32", device="cpu"
            )
            sae = TopKTrainingSAE(cfg)
            n_steps = [0]

            def step(batch, dead, opt):
                o = sae.training_forward_pass(
                    TrainStepInput(
                        sae_in=batch,
                        coefficients={},
                        dead_neuron_mask=dead,
                        n_training_steps=n_steps[0],
                        is_logging_step=False,
                    )
                )
                o.loss.backward()
                torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                n_steps[0] += 1
                return (o.feature_acts > 0).any(0)

            def encode_decode(xb):
                acts = sae.encode(xb)
                return sae.decode(acts), (acts > 0).any(0)

            base = peak_rss_mib()
            start = time.perf_counter()
            cells = _peer_loop(step, sae.parameters(), x, args, n_features, encode_decode)
            seconds = time.perf_counter() - start
            fvu, dead = _evaluate(x_test, x, encode_decode, n_features)
            decoder = sae.W_dec.detach().numpy()
            note = "TopKTrainingSAE"
    except Exception as error:  # noqa: BLE001 - a peer failing is reported, not fatal
        out.put((tool, f"failed: {type(error).__name__}: {error}"))
        return
    mcc = dictionary_mcc(data["true"], decoder) if "true" in data.files else float("nan")
    out.put(
        (
            tool,
            {
                "cells/s": cells / seconds,
                "peak MiB": peak_rss_mib(),
                "train MiB": peak_rss_mib() - base,
                "FVU": fvu,
                "dead": dead,
                "MCC": mcc,
                "note": note,
            },
        )
    )


def _median_run(results: list) -> dict | str:
    """The run with the median speed (seeded runs differ only in time), or the first failure."""
    done = [r for r in results if isinstance(r, dict)]
    if len(done) < len(results):
        return next(r for r in results if not isinstance(r, dict))
    done.sort(key=lambda r: r["cells/s"])
    median = dict(done[len(done) // 2])
    median["note"] += (
        f" (median of {len(done)}: " + "/".join(f"{r['cells/s']:,.0f}" for r in done) + " cells/s)"
    )
    median["range"] = (done[0]["cells/s"], done[-1]["cells/s"])
    return median


def make_data(kind: str, args: argparse.Namespace, path: Path) -> str:
    n_obs = args.n_obs
    if kind == "simulated":
        import scsae

        n_true, n_active, seed = args.sim_directions, args.sim_active, args.sim_seed
        adata = scsae.datasets.simulate_superposition(
            n_obs + args.n_test, 64, n_true, n_active=n_active, random_state=seed
        )
        emb = adata.obsm["X_emb"]
        true = adata.uns["simulation"]["true_dictionary"]
        np.savez(path, x=emb[:n_obs], x_test=emb[n_obs:], true=true)
        return f"simulate_superposition(64 dims, {n_true} true directions, {n_active} active, seed {seed})"
    import scanpy as sc

    pcs = sc.datasets.pbmc68k_reduced().obsm["X_pca"].astype(np.float32)
    rng = np.random.default_rng(0)
    # held-out cells are jittered copies of cells the training rows never resample
    test_cells = rng.permutation(len(pcs))[: len(pcs) // 5]
    train_cells = np.setdiff1d(np.arange(len(pcs)), test_cells)

    def resample(cells, n):
        pick = rng.choice(cells, n)
        noise = rng.standard_normal((n, pcs.shape[1])).astype(np.float32)
        return pcs[pick] + 0.05 * pcs.std(0) * noise

    np.savez(path, x=resample(train_cells, n_obs), x_test=resample(test_cells, args.n_test))
    return f"pbmc68k_reduced X_pca ({pcs.shape[0]} cells x {pcs.shape[1]}) upsampled"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-obs", type=int, default=50_000)
    parser.add_argument("--n-test", type=int, default=10_000, help="held-out cells (FVU)")
    parser.add_argument("--n-features", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=2.4e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--datasets", nargs="+", default=["simulated", "pbmc68k"])
    parser.add_argument("--sim-directions", type=int, default=256)
    parser.add_argument("--sim-active", type=int, default=8)
    parser.add_argument("--sim-seed", type=int, default=0)
    parser.add_argument(
        "--before-src", default=None, help="src folder of another checkout, for scsae-before"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved runs per tool; the median speed is kept"
    )
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"{args.threads} torch threads per run; width {args.n_features}, k={args.k}, "
        f"batch {args.batch_size}, lr {args.lr}, {args.epochs} epochs of {args.n_obs:,} cells, "
        f"median speed of {args.repeats} interleaved runs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.datasets:
            path = Path(tmp) / f"{kind}.npz"
            label = make_data(kind, args, path)
            runs: dict[str, list] = {tool: [] for tool in args.tools}
            # interleaved rounds, so that a slow spell of the machine hits every tool
            for _ in range(args.repeats):
                for tool in args.tools:
                    queue = ctx.Queue()
                    proc = ctx.Process(target=run_tool, args=(tool, str(path), args, queue))
                    proc.start()
                    proc.join()
                    runs[tool].append(
                        queue.get()[1] if not queue.empty() else f"crashed (exit {proc.exitcode})"
                    )
            rows = {tool: _median_run(results) for tool, results in runs.items()}
            # speed relative to scsae round by round (a slow spell hits both runs of a round)
            for tool, r in rows.items():
                pairs = [
                    a["cells/s"] / b["cells/s"]
                    for a, b in zip(runs[tool], runs.get("scsae", []), strict=False)
                    if isinstance(a, dict) and isinstance(b, dict)
                ]
                if isinstance(r, dict) and pairs:
                    r["per-round"] = float(np.median(pairs))
            print(f"\n{kind}: {label}")
            header = f"{'tool':12s} {'cells/s':>9s} {'range':>15s} {'x scsae':>7s} {'per-round':>9s} {'peak MiB':>8s} {'train MiB':>9s} {'FVU':>6s} {'x scsae':>7s} {'dead':>6s} {'MCC':>6s} {'x scsae':>7s}  note"
            print(header)
            ref = rows.get("scsae") if isinstance(rows.get("scsae"), dict) else None
            for tool, r in rows.items():
                if not isinstance(r, dict):
                    print(f"{tool:12s} {r}")
                    continue

                def ratio(key, r=r, ref=ref):
                    return r[key] / ref[key] if ref and ref[key] else float("nan")

                print(
                    f"{tool:12s} {r['cells/s']:9,.0f} {r['range'][0]:7,.0f}-{r['range'][1]:<7,.0f} "
                    f"{ratio('cells/s'):7.2f} {r.get('per-round', float('nan')):9.2f} {r['peak MiB']:8,.0f} "
                    f"{r['train MiB']:9,.0f} {r['FVU']:6.3f} {ratio('FVU'):7.2f} {r['dead']:6.3f} "
                    f"{r['MCC']:6.3f} {ratio('MCC'):7.2f}  {r['note']}"
                )


if __name__ == "__main__":
    main()

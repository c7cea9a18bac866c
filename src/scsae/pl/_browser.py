"""``pl.feature_browser``: one self-contained HTML page with a card per SAE feature."""

from __future__ import annotations

import base64
import html
import io
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from .._utils._features import enrichment_frames, get_modality, get_sae_result


def _thumbnails(coords: np.ndarray, acts: sparse.csc_matrix, size: float) -> list[str]:
    """Activation of every feature on the embedding, as base64 PNGs.

    One small figure is drawn once and only its colours change per feature:
    hundreds of thumbnails in seconds, where a full :func:`scanpy.pl.embedding`
    per feature would take minutes.
    """
    import matplotlib as mpl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size, size), dpi=72)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    background = ax.scatter(coords[:, 0], coords[:, 1], s=2, c="#dddddd", linewidths=0)
    fore = ax.scatter([], [], s=3, c=[], cmap=mpl.colormaps["Reds"], linewidths=0, vmin=0)
    out = []
    for j in range(acts.shape[1]):
        lo, hi = acts.indptr[j], acts.indptr[j + 1]
        idx, vals = acts.indices[lo:hi], acts.data[lo:hi]
        order = np.argsort(vals)  # strongest cells drawn last, on top
        fore.set_offsets(coords[idx[order]] if idx.size else np.empty((0, 2)))
        fore.set_array(vals[order])
        fore.set_clim(0, vals.max() if vals.size else 1)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=72)
        out.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    background.remove()
    return out


def _pathway_lines(genes_ad: Any, key: str, n: int) -> list[list[tuple[str, float, float]]]:
    """Per feature, the top ``n`` sets by calibrated z (or score): (name, score, q)."""
    if key not in genes_ad.uns or "scores" not in genes_ad.uns[key]:
        return []
    res = genes_ad.uns[key]
    z = np.asarray(res.get("zscores", res["scores"]), dtype=np.float64)
    q = np.asarray(res.get("qvals", res["pvals_adj"]), dtype=np.float64)
    names = [str(s) for s in res["sources"]]
    out = []
    for row_z, row_q in zip(z, q, strict=True):
        order = np.argsort(-np.nan_to_num(row_z, nan=-np.inf))[:n]
        out.append([(names[i], row_z[i], row_q[i]) for i in order if np.isfinite(row_z[i])])
    return out


def _obs_lines(adata: Any, key: str, n: int) -> list[list[tuple[str, float, float]]]:
    """Per feature, the top ``n`` categories by AUROC: (column: category, AUROC, purity)."""
    if key not in adata.uns:
        return []
    out: list[list[tuple[str, float, float]]] = []
    for col in adata.uns[key]["params"]["groupby"]:
        frames = enrichment_frames(adata, str(col), key=key)
        auc = frames["auroc"]
        pur = frames.get("purity", auc * np.nan)
        for j in range(len(auc)):
            row = auc.iloc[j].sort_values(ascending=False).head(n)
            lines = [(f"{col}: {c}", v, pur.iloc[j][c]) for c, v in row.items()]
            if len(out) <= j:
                out.append([])
            out[j].extend(lines)
    return [sorted(lines, key=lambda x: -np.nan_to_num(x[1]))[:n] for lines in out]


def _fmt(x: float, spec: str = ".2f") -> str:
    return "" if x is None or not np.isfinite(x) else format(x, spec)


def _card(i: int, row: pd.Series, image: str, pathways: list, obs: list) -> str:
    esc = html.escape
    label = str(row.get("label", ""))
    genes_up = str(row.get("top_genes_up", ""))
    genes_down = str(row.get("top_genes_down", ""))
    rows = [f"<tr><th>frequency</th><td>{row['frequency']:.1%} ({row['n_cells']} cells)</td></tr>"]
    if "stability" in row.index:
        rows.append(f"<tr><th>stability</th><td>{_fmt(row['stability'])}</td></tr>")
    if genes_up or genes_down:
        rows.append(f"<tr><th>genes up</th><td>{esc(genes_up)}</td></tr>")
        rows.append(f"<tr><th>genes down</th><td>{esc(genes_down)}</td></tr>")
    if pathways:
        items = "".join(
            f"<li>{esc(name)} <span class='q'>z {_fmt(z, '.1f')}, q {_fmt(q, '.2g')}</span></li>"
            for name, z, q in pathways
        )
        rows.append(f"<tr><th>pathways</th><td><ul>{items}</ul></td></tr>")
    if obs:
        items = "".join(
            f"<li>{esc(name)} <span class='q'>AUROC {_fmt(a)}, purity {_fmt(p)}</span></li>"
            for name, a, p in obs
        )
        rows.append(f"<tr><th>cells</th><td><ul>{items}</ul></td></tr>")
    data = {
        "feature": i,
        "frequency": float(row["frequency"]),
        "auroc": float(np.nan_to_num(row.get("auroc", np.nan), nan=-1)),
        "stability": float(np.nan_to_num(row.get("stability", np.nan), nan=-1)),
    }
    attrs = " ".join(f"data-{k}='{v}'" for k, v in data.items())
    text = esc(" ".join([str(i), label, genes_up, *(p[0] for p in pathways)]).lower(), quote=True)
    return (
        f"<div class='card' id='feature-{i}' {attrs} data-text=\"{text}\">"
        f"<h2>Feature {i}</h2><p class='label'>{esc(label)}</p>"
        f"<img alt='feature {i} on the embedding' src='data:image/png;base64,{image}'>"
        f"<table>{''.join(rows)}</table></div>"
    )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1em;background:#fafafa;color:#222}
#controls{position:sticky;top:0;background:#fafafa;padding:.5em 0;z-index:1}
#cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;width:300px;font-size:12px}
.card h2{font-size:15px;margin:0}.label{font-weight:600;margin:2px 0 6px;min-height:1.2em}
.card img{display:block;width:160px;height:160px;margin:4px auto;border:1px solid #eee}
.card table{border-collapse:collapse;clear:none}.card th{text-align:left;vertical-align:top;
padding-right:6px;color:#666;font-weight:normal}.card ul{margin:0;padding-left:1em}
.q{color:#666}.hidden{display:none}
"""

_SCRIPT = """
const cards=[...document.querySelectorAll('.card')];
const box=document.getElementById('cards'),count=document.getElementById('count');
function update(){
  const q=document.getElementById('search').value.toLowerCase().trim();
  const by=document.getElementById('sort').value;
  let shown=0;
  for(const c of cards){const hit=!q||c.dataset.text.includes(q);
    c.classList.toggle('hidden',!hit);shown+=hit;}
  const sorted=[...cards].sort((a,b)=>by==='feature'?a.dataset.feature-b.dataset.feature
    :b.dataset[by]-a.dataset[by]);
  for(const c of sorted)box.appendChild(c);
  count.textContent=shown+' of '+cards.length+' features';
}
document.getElementById('search').addEventListener('input',update);
document.getElementById('sort').addEventListener('change',update);
update();
"""


def feature_browser(
    adata: Any,
    *,
    key: str = "X_sae",
    path: str | PathLike = "features.html",
    basis: str = "umap",
    mod: str | None = None,
    table: pd.DataFrame | None = None,
    n_pathways: int = 3,
    n_categories: int = 3,
    title: str | None = None,
) -> Path:
    """Write a self-contained HTML page with one card per SAE feature.

    Each card shows the feature's activation on the embedding (a small PNG embedded
    in the page), its automatic label, frequency, stability (when
    ``tl.feature_stability`` has run), top genes up and down, top pathways with
    their calibrated q-values and the categories it marks with AUROC and purity.
    The list can be searched (label, genes, pathways) and sorted (feature,
    frequency, AUROC, stability). The page needs no network and no server: open it
    in any browser, attach it to an e-mail or a lab notebook.

    Parameters
    ----------
    adata
        AnnData (or MuData, with ``mod`` for the gene results) processed by
        :func:`scsae.tl.sae` and, for the cards' contents, by
        :func:`~scsae.tl.feature_genes`, :func:`~scsae.tl.link_pathways` and
        :func:`~scsae.tl.feature_enrichment` (what was not run is left out).
    key
        ``key_added`` of :func:`scsae.tl.sae`.
    path
        File to write.
    basis
        Embedding of the thumbnails (``"umap"`` reads ``obsm['X_umap']``).
    mod
        Modality holding the gene results of a MuData.
    table
        A :func:`scsae.tl.feature_table` to show (default: computed with its defaults).
    n_pathways
        Pathways listed per feature.
    n_categories
        Categories (cell types...) listed per feature.
    title
        Page title (default: ``"SAE features (<key>)"``).

    Returns
    -------
    :class:`~pathlib.Path`
        The file written.

    Examples
    --------
    >>> scsae.pl.feature_browser(adata, path="features.html")
    """
    from ..tl import feature_table

    get_sae_result(adata, key)
    name = basis if basis in adata.obsm else f"X_{basis}"
    if name not in adata.obsm:
        msg = f"basis {basis!r} not found: no obsm[{name!r}]; available: {list(adata.obsm.keys())}."
        raise KeyError(msg)
    path = Path(path)
    if not path.parent.exists():
        msg = f"The folder of path={str(path)!r} does not exist; create it first."
        raise FileNotFoundError(msg)
    table = feature_table(adata, key, mod=mod) if table is None else table
    acts = sparse.csc_matrix(adata.obsm[key], dtype=np.float64)
    if len(table) != acts.shape[1]:
        msg = f"table has {len(table)} rows but obsm[{key!r}] has {acts.shape[1]} features."
        raise ValueError(msg)
    coords = np.asarray(adata.obsm[name])[:, :2]
    images = _thumbnails(coords, acts, size=2.0)
    genes_ad, _ = get_modality(adata, mod)
    pathways = _pathway_lines(genes_ad, f"{key}_pathways", n_pathways)
    obs = _obs_lines(adata, f"{key}_enrichment", n_categories)
    cards = [
        _card(
            i,
            table.iloc[i],
            images[i],
            pathways[i] if pathways else [],
            obs[i] if obs else [],
        )
        for i in range(len(table))
    ]
    sorts = ["feature", "frequency"] + [c for c in ("auroc", "stability") if c in table.columns]
    options = "".join(f"<option value='{s}'>{s}</option>" for s in sorts)
    title = html.escape(title or f"SAE features ({key})")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{title}</h1><div id='controls'>"
        "<input id='search' type='search' placeholder='search label, genes, pathways' size='40'> "
        f"sort by <select id='sort'>{options}</select> <span id='count'></span></div>"
        f"<div id='cards'>{''.join(cards)}</div>"
        f"<script>{_SCRIPT}</script></body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path

"""pl.feature_browser: a self-contained page, checked in a real headless Chromium."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from _helpers import programme_counts
from scipy import sparse

import scsae

#: flags for a quiet, offline, throw-away headless Chromium
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1200,900",
]


@pytest.fixture(scope="module")
def browsed():
    """Programme data with its true activities as features, every tool run."""
    adata, act, sets, rng = programme_counts(n_cells=200, n_genes=80, n_prog=5, genes_per=10)
    adata.obsm["X_sae"] = sparse.csr_matrix(act.astype(np.float32))
    adata.uns["X_sae"] = {
        "params": {"use_rep": "X_emb"},
        "decoder": np.eye(5),
        "stability": {"stability": np.linspace(0.5, 0.9, 5), "stable": np.arange(5) > 2},
    }
    adata.obsm["X_umap"] = act[:, :2] + rng.normal(scale=0.3, size=(adata.n_obs, 2))
    adata.obs["group"] = pd.Categorical(np.where(act[:, 0] > 0, "prog0", "rest"))
    scsae.tl.feature_genes(adata)
    scsae.tl.link_pathways(adata, sets, tmin=3, n_perm=10)
    scsae.tl.feature_enrichment(adata, "group")
    return adata


def test_page_is_self_contained(browsed, tmp_path):
    path = scsae.pl.feature_browser(browsed, path=tmp_path / "f.html")
    page = path.read_text()
    assert page.count("class='card'") == 5
    assert page.count("data:image/png;base64,") == 5
    assert not re.search(r"(src|href)=['\"]?https?:", page)  # opens offline
    for text in ("PROG0", "AUROC", "purity", "stability", "genes up"):
        assert text in page


def test_browser_errors_leave_adata_unchanged(browsed, tmp_path):
    before = set(browsed.uns.keys()), set(browsed.obsm.keys())
    with pytest.raises(KeyError, match="available"):
        scsae.pl.feature_browser(browsed, basis="tsne", path=tmp_path / "f.html")
    with pytest.raises(FileNotFoundError, match="create it first"):
        scsae.pl.feature_browser(browsed, path=tmp_path / "no" / "f.html")
    with pytest.raises(ValueError, match="rows"):
        table = scsae.tl.feature_table(browsed).iloc[:2]
        scsae.pl.feature_browser(browsed, table=table, path=tmp_path / "f.html")
    assert (set(browsed.uns.keys()), set(browsed.obsm.keys())) == before


def _chromium():
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip(
            "chromium and chromedriver not installed (apt-get install chromium chromium-driver)"
        )
    return webdriver, binary, driver


def test_cards_render_and_search_in_headless_chromium(browsed, tmp_path):
    webdriver, binary, driver_path = _chromium()
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    path = scsae.pl.feature_browser(browsed, path=tmp_path / "features.html")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        browser.get(path.as_uri())
        cards = browser.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == 5
        assert all(c.is_displayed() for c in cards)
        # every thumbnail decoded to a real image
        widths = browser.execute_script(
            "return [...document.querySelectorAll('.card img')].map(i => i.naturalWidth)"
        )
        assert len(widths) == 5 and min(widths) > 50
        assert browser.find_element(By.ID, "count").text == "5 of 5 features"
        # search keeps the cards whose text matches: feature 0's top pathway
        search = browser.find_element(By.ID, "search")
        search.send_keys("prog0")
        shown = [c.get_attribute("id") for c in cards if c.is_displayed()]
        assert "feature-0" in shown and len(shown) < 5
        assert browser.find_element(By.ID, "count").text == f"{len(shown)} of 5 features"
        search.clear()
        search.send_keys("no such gene anywhere")
        assert not any(c.is_displayed() for c in cards)
        search.clear()
        search.send_keys(" ")  # input event restores every card
        assert all(c.is_displayed() for c in cards)
        # sorting by stability puts the most stable feature (4) first
        browser.execute_script(
            "const s=document.getElementById('sort');s.value='stability';"
            "s.dispatchEvent(new Event('change'))"
        )
        first = browser.find_element(By.CSS_SELECTOR, "#cards .card")
        assert first.get_attribute("id") == "feature-4"
        browser.save_screenshot(str(tmp_path / "page.png"))
        first.screenshot(str(tmp_path / "card.png"))
        assert (tmp_path / "card.png").stat().st_size > 1000
    finally:
        browser.quit()

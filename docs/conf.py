"""Sphinx configuration of the scsae documentation."""

import os
import shutil
from datetime import datetime
from importlib.metadata import metadata
from pathlib import Path

HERE = Path(__file__).parent

# tutorials live at the repository root (executed notebooks); copy them into the source tree
_tutorials = HERE.parent / "tutorials"
_target = HERE / "tutorials"
if _tutorials.is_dir():
    shutil.rmtree(_target, ignore_errors=True)
    shutil.copytree(_tutorials, _target, ignore=shutil.ignore_patterns("*.py", "__pycache__", ".ipynb_checkpoints"))

info = metadata("scsae")
project = info["Name"]
author = "scsae developers"
copyright = f"{datetime.now():%Y}, {author}"
version = info["Version"]
release = version

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_autodoc_typehints",
]

autosummary_generate = True
autodoc_member_order = "groupwise"
autodoc_default_options = {"members": True, "inherited-members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
typehints_defaults = "braces"
always_use_bars_union = True
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath"]
nb_execution_mode = "off"  # notebooks are committed executed
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "pandas": ("https://pandas.pydata.org/pandas-docs/stable/", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "mudata": ("https://mudata.readthedocs.io/en/latest/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "scvi": ("https://docs.scvi-tools.org/en/stable/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
    "lightning": ("https://lightning.ai/docs/pytorch/stable/", None),
    "decoupler": ("https://decoupler.readthedocs.io/en/latest/", None),
    "matplotlib": ("https://matplotlib.org/stable/", None),
}

if os.environ.get("SCSAE_DOCS_OFFLINE"):
    # no network (CI sandboxes): skip fetching inventories; the nitpick rules below cover their names
    intersphinx_mapping = {}

html_theme = "sphinx_book_theme"
html_title = "scsae"
html_theme_options = {"repository_url": "https://github.com/scverse/scsae", "use_repository_button": True}

nitpicky = True
# names that intersphinx inventories do not resolve (offline builds, private aliases)
nitpick_ignore_regex = [
    # third-party and standard-library targets resolve through intersphinx online; offline builds skip them
    (r"py:.*", r"(torch|lightning|anndata|mudata|scipy|numpy|pandas|matplotlib|decoupler|scvi|scanpy|dask|h5py|zarr)\..*"),
    (r"py:.*", r"(typing|collections|pathlib|os)\..*"),
    (r"py:.*", r"(Ellipsis|Path|Literal|Sequence|Mapping|Iterable|Callable|pooch|decoupler)"),
    (r"py:.*", r"(Tensor|AnnData|MuData|Axes|Figure|Inference|Embedding|pd\.DataFrame|np\.ndarray)"),
    (r"py:.*", r"scsae\..*\._.*"),
    (r"py:class", r"(optional|default|array-like|callable)"),
]

"""Console progress bars, also inside a Jupyter kernel that has no ipywidgets.

Inside a Jupyter kernel `tqdm.auto` wants the ipywidgets bar; without ipywidgets it warns
("IProgress not found") and falls back to the console bar. The project does not install
ipywidgets (widget output makes a book load its widget manager from a CDN), so the console bar
is the one intended: our code imports it directly (`from tqdm import tqdm`), and
`console_tqdm_auto` gives libraries that import `tqdm.auto` themselves (umap, captum) that same
console bar, without the warning about the widget bar nobody asked for.
"""

from __future__ import annotations

import sys
import warnings


def console_tqdm_auto() -> None:
    """Import `tqdm.auto` once, as its console fallback, before a library imports it."""
    if "tqdm.autonotebook" in sys.modules:
        return
    from tqdm import TqdmWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
        import tqdm.auto  # noqa: F401

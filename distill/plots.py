"""The one plotting helper: a matplotlib figure written atomically as PNG (no display).

Sweeps, grids and `distill inspect` draw their figures through it.

    python -c "from distill import plots; f = plots.figure('/tmp/x.png'); print(f)"
"""
from __future__ import annotations

import contextlib

from distill import rundir


@contextlib.contextmanager
def figure(path: str, panels: int = 1, size: tuple = (5, 3.5)):
    """A matplotlib figure of `panels` side by side, written atomically to `path` as PNG.

    Yields (figure, axes), one axes per panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=size, squeeze=False)
    try:
        yield fig, list(axes[0])
        fig.tight_layout()
        rundir.write_file_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100))
    finally:
        plt.close(fig)

"""Loss curves that update live in JupyterLab and end as one static figure in the book.

The figure is shown through a display handle and updated in place, so a notebook holds only
its final state: the rendered book shows the finished curve, JupyterLab shows it growing.
"""
import time

import matplotlib.pyplot as plt


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LossPlot:
    """Named curves of (x, y) points; ``add`` appends; the figure refreshes at most once a
    second."""

    def __init__(self, title: str = "", xlabel: str = "step", ylabel: str = "loss (nats/char)",
                 logy: bool = False, every_seconds: float = 1.0):
        self.title, self.xlabel, self.ylabel, self.logy = title, xlabel, ylabel, logy
        self.every_seconds = every_seconds
        self.series: dict[str, tuple[list, list]] = {}
        self._handle, self._last = None, 0.0

    def add(self, name: str, x: float, y: float) -> None:
        xs, ys = self.series.setdefault(name, ([], []))
        xs.append(x)
        ys.append(y)
        if time.monotonic() - self._last >= self.every_seconds:
            self.refresh()

    def figure(self):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for name, (xs, ys) in self.series.items():
            ax.plot(xs, ys, label=name, marker="o" if len(xs) < 30 else None, markersize=3)
        ax.set(title=self.title, xlabel=self.xlabel, ylabel=self.ylabel)
        if self.logy:
            ax.set_yscale("log")
        if self.series:
            ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    def refresh(self) -> None:
        self._last = time.monotonic()
        if not in_notebook():
            return
        from IPython.display import display
        fig = self.figure()
        plt.close(fig)  # keep the inline backend from showing it a second time
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)

    def show(self) -> None:
        """Draw the final state (call once training ends)."""
        self.refresh()

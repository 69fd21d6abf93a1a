"""Run-time switches shared by every lesson: quick mode, seeding, progress-bar style.

Quick mode (``LSTMBOOK_QUICK=1``, set by ``make test`` and CI) shrinks training loops and
evaluation so every notebook runs in seconds; the code path stays the same.
"""
import os
import random
import sys

import numpy as np


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


QUICK = _flag("LSTMBOOK_QUICK")


def quick(full, small):
    """Return ``small`` in quick mode and ``full`` otherwise: ``num_steps = quick(3000, 20)``."""
    return small if QUICK else full


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy, and PyTorch / TensorFlow when the lesson has imported them.

    Import the frameworks first, then call this: importing them only to seed would cost seconds.
    """
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    if "tensorflow" in sys.modules:
        sys.modules["tensorflow"].random.set_seed(seed)


def text_progress() -> bool:
    """True when progress bars should be plain text (book builds, tests, terminals).

    ``make book`` and ``make test`` set ``LSTMBOOK_PROGRESS=text`` so the rendered pages hold a
    final text bar instead of a widget that would need JavaScript from the network.
    """
    return os.environ.get("LSTMBOOK_PROGRESS", "").strip().lower() == "text"

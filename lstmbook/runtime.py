"""Run-time switches shared by every lesson: quick mode, seeding, progress-bar style, the
quiet TensorFlow import, and a description of the machine a measurement ran on.

Quick mode (``LSTMBOOK_QUICK=1``, set by ``make test`` and CI) shrinks training loops and
evaluation so every notebook runs in seconds; the code path stays the same.
"""
import os
import platform
import random
import sys
from pathlib import Path

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


def machine() -> dict:
    """Where a measurement was made: platform, processor, cores, PyTorch and its threads, GPU."""
    import torch
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "processor": _cpu_model()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# TensorFlow's start-up notices that say nothing to a reader (the oneDNN notice is printed while
# the library loads, before TF_CPP_MIN_LOG_LEVEL applies).
TF_NOTICES = ("oneDNN custom operations", "absl::InitializeLog")


def import_tensorflow():
    """Import TensorFlow with its start-up notices filtered out of stderr; return the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    import tempfile
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO and WARNING lines
    with tempfile.TemporaryFile("w+") as log:  # the process's stderr goes to a file meanwhile
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        sys.stderr.write("".join(line for line in log if not any(n in line for n in TF_NOTICES)))
    return tensorflow

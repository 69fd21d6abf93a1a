"""Helpers for the course "LSTMs from scratch".

One concern per module:

- ``runtime``   quick mode (``LSTMBOOK_QUICK=1``), ``seed_everything``, progress style
- ``data``      tiny Shakespeare: loading, vocabulary, the 90/10 split, truncated-BPTT batches
- ``lm``        the common task: validation loss in nats/char and the sampler
- ``checks``    the exercise-check framework (one submodule of checks per lesson)
- ``plots``     loss curves that update live in JupyterLab and render statically in the book
- ``training``  a small training loop with a progress bar and a non-finite-loss guard
- ``bench``     ``make bench``: forward+backward throughput against ``torch.nn.LSTM``
- ``compare``   lesson 6: every implementation trained on the common task, same budget
- ``sync``      ``make sync``: book/ -> labs/, solutions/ and the lesson modules below

Lesson modules (``rnn_theory``, ...) are generated from the cells marked ``#@save`` in
``book/``; never edit them by hand.
"""
from .runtime import QUICK, import_tensorflow, quick, seed_everything

__all__ = ["QUICK", "import_tensorflow", "quick", "seed_everything"]

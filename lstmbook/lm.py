"""The common task's two shared measures: validation loss in nats/char, and the sampler.

Every implementation in the course is scored by ``validation_loss`` and sampled by ``sample``,
so their numbers stand side by side.
"""
import numpy as np

from .runtime import quick

WINDOW = 256  # characters per validation window, each started from a zero state


def validation_windows(val_ids: np.ndarray, window: int = WINDOW):
    """Non-overlapping (X, Y) windows of shape (n, window) covering the validation split."""
    n = (len(val_ids) - 1) // window
    X = val_ids[: n * window].reshape(n, window)
    Y = val_ids[1: n * window + 1].reshape(n, window)
    return X, Y


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(logits, targets) -> float:
    """Mean next-character cross-entropy in nats: logits (..., V), integer targets (...)."""
    logits, targets = np.asarray(logits, dtype=np.float64), np.asarray(targets)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits of shape {logits.shape} need targets of shape "
                         f"{logits.shape[:-1]}, "
                         f"got {targets.shape}")
    logp = log_softmax(logits)
    return float(-np.take_along_axis(logp, targets[..., None], axis=-1).mean())


def validation_loss(logits_fn, val_ids: np.ndarray, window: int = WINDOW, batch_size: int = 64,
                    max_windows=None) -> float:
    """Mean next-character cross-entropy (nats/char) over the validation split.

    ``logits_fn(X)`` maps int64 ids of shape (batch, window) to logits (batch, window, V),
    starting every window from a zero state. Quick mode scores the first 8 windows only.
    """
    X, Y = validation_windows(val_ids, window)
    limit = max_windows if max_windows is not None else quick(None, 8)
    if limit is not None:
        X, Y = X[:limit], Y[:limit]
    total = 0.0
    for start in range(0, len(X), batch_size):
        xb, yb = X[start:start + batch_size], Y[start:start + batch_size]
        total += cross_entropy(np.asarray(logits_fn(xb)), yb) * yb.size
    return total / Y.size


def sample(step_fn, vocab, prompt: str, length: int, temperature: float = 1.0, rng=None) -> str:
    """Generate ``length`` characters after ``prompt``.

    ``step_fn(token_id, state) -> (logits, state)`` advances the model by one character, with
    ``state=None`` meaning the zero state. Temperature < 1 sharpens the distribution, > 1
    flattens it.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}: use a small value such as "
                         "0.1 for nearly greedy sampling")
    if not prompt:
        raise ValueError("the prompt must hold at least one character")
    rng = rng or np.random.default_rng()
    state, logits = None, None
    for token in vocab.encode(prompt):
        logits, state = step_fn(int(token), state)
    out = []
    for _ in range(length):
        z = np.asarray(logits, dtype=np.float64).reshape(-1) / temperature
        p = np.exp(z - z.max())
        token = int(rng.choice(len(p), p=p / p.sum()))
        out.append(token)
        logits, state = step_fn(token, state)
    return prompt + vocab.decode(out)

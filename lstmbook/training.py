"""A small training loop: progress bar, live loss plot, and a guard against non-finite losses."""
from dataclasses import dataclass, field
import math
import sys
import time

from .plots import LossPlot
from .runtime import text_progress

NAN_HINT = ("Lower the learning rate, clip the gradient norm (e.g. to 1.0), and check that the "
            "inputs hold no NaN or inf.")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def check_finite(loss: float, step: int, hint: str = NAN_HINT) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"The loss became {loss} at step {step}; training stopped. {hint}")


def progress(iterable, desc: str = "", total=None, **options):
    """A tqdm bar: plain text in the book and tests, a widget in JupyterLab. ``options`` go to
    tqdm (``unit``, ``bar_format``, ...)."""
    if text_progress():
        from tqdm import tqdm
        return tqdm(iterable, desc=desc, total=total, file=sys.stdout, mininterval=5.0,
                    ncols=90, **options)
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, **options)


@dataclass
class History:
    steps: list = field(default_factory=list)
    losses: list = field(default_factory=list)       # training loss at every step
    times: list = field(default_factory=list)        # seconds since the start, at every step
    val_steps: list = field(default_factory=list)
    val_losses: list = field(default_factory=list)
    val_times: list = field(default_factory=list)


def train_loop(step_fn, num_steps: int, *, eval_fn=None, eval_every=None, desc="training",
               plot=True, max_seconds=None, hint=NAN_HINT, smoothing=0.95,
               ylabel="loss (nats/char)") -> History:
    """Call ``step_fn(step) -> loss`` up to ``num_steps`` times and record what happened.

    ``eval_fn() -> float`` (e.g. validation loss) runs every ``eval_every`` steps and at the end.
    ``max_seconds`` stops early on a wall-clock budget. A NaN/inf loss raises
    NonFiniteLossError with ``hint``.
    """
    history = History()
    curves = LossPlot(title=desc, ylabel=ylabel) if plot else None
    eval_every = eval_every or max(1, num_steps // 10)
    start, ema = time.perf_counter(), None
    bar = progress(None, desc=desc, total=num_steps)
    for step in range(num_steps):
        loss = float(step_fn(step))
        bar.update(1)
        check_finite(loss, step, hint)
        elapsed = time.perf_counter() - start
        history.steps.append(step)
        history.losses.append(loss)
        history.times.append(elapsed)
        ema = loss if ema is None else smoothing * ema + (1 - smoothing) * loss
        last = step == num_steps - 1 or (max_seconds is not None and elapsed >= max_seconds)
        if step % 10 == 0 or last:
            bar.set_postfix(loss=f"{ema:.3f}", refresh=False)
            if curves:
                curves.add("train (smoothed)", step, ema)
        if eval_fn is not None and ((step + 1) % eval_every == 0 or last):
            val = float(eval_fn())
            history.val_steps.append(step)
            history.val_losses.append(val)
            history.val_times.append(time.perf_counter() - start)
            if curves:
                curves.add("validation", step, val)
        if last:
            break
    bar.close()
    if curves:
        curves.show()
    return history

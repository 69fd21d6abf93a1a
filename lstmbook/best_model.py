"""``make train``: the course's best character model, trained for a wall-clock budget.

    python -m lstmbook.best_model --minutes 4 [--device cpu|cuda] \
        [--out _build/checkpoints/best.pt]
    python -m lstmbook.sample --checkpoint _build/checkpoints/best.pt --prompt "ROMEO:"

The recipe (lesson 4): an embedding, an LSTM (``torch.nn.LSTM``, or the lesson's ``FastLSTM``)
with the forget-gate bias at +1, dropout, a linear read-out; AdamW with a learning rate that warms
up and then follows a cosine keyed to the *wall-clock* budget, so a 4-minute and a 10-minute run
both end their schedule on time; gradient clipping; validation on the whole validation split
(``lstmbook.lm.validation_loss``: 256-character windows from a zero state) at regular times,
keeping the best model and stopping early when validation stops improving. The checkpoint holds
the weights, the vocabulary and the hyper-parameters; the curve (validation loss against wall
time) is written as JSON next to it.
"""
import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from .data import REPO_ROOT, Vocab, load_shakespeare, load_text, random_batches
from .lessons import pytorch_lstm as lesson
from .lessons.pytorch_lstm import char_model_step, init_forget_bias, sample_text
from .lm import validation_windows
from .runtime import machine, seed_everything
from .training import NonFiniteLossError, cosine_lr, run_for

DEFAULT_OUT = REPO_ROOT / "_build" / "checkpoints" / "best.pt"


@dataclass
class Recipe:
    """Hyper-parameters of the model and its training (the defaults are the CPU recipe)."""
    core: str = "nn.LSTM"        # nn.LSTM | FastLSTM | FusedLSTM
    embed: int = 64
    hidden: int = 512
    layers: int = 1
    dropout: float = 0.1         # between layers and before the read-out
    forget_bias: float = 1.0
    batch: int = 32
    seq_len: int = 128
    lr: float = 3e-3             # peak learning rate
    min_lr: float = 1e-4         # where the cosine ends
    warmup: float = 0.03         # fraction of the budget spent warming up
    weight_decay: float = 0.05
    clip: float = 1.0
    bf16: str = "auto"           # bfloat16 autocast for the products: auto | on | off
    evals: int = 8               # validations spread over the budget (each scores 111,540 chars)
    patience: int = 3            # stop after this many validations without improvement

    def model_config(self) -> dict:
        return {k: getattr(self, k) for k in ("core", "embed", "hidden", "layers", "dropout")}


# Longer budgets afford a wider layer, which then needs more dropout (measured on 2 CPU cores:
# 1 x 512 levels off near 1.47 in 10 minutes, 1 x 768 goes lower).
LONG_BUDGET_MINUTES = 7.0
LONG_RECIPE = dict(hidden=768, dropout=0.25)
# A GPU has throughput to spare: a larger model, more data per step (not measured in this course).
CUDA_RECIPE = dict(hidden=1024, layers=2, embed=128, dropout=0.25, batch=128, seq_len=256, lr=2e-3,
                   evals=12)


def default_recipe(minutes: float, device: str = "cpu", **overrides) -> Recipe:
    """The recipe for a budget and a device; keyword arguments override single fields."""
    fields_ = asdict(Recipe())
    if device.startswith("cuda"):
        fields_.update(CUDA_RECIPE)
    elif minutes >= LONG_BUDGET_MINUTES:
        fields_.update(LONG_RECIPE)
    fields_.update({k: v for k, v in overrides.items() if v is not None})
    return Recipe(**fields_)


def build_model(vocab_size: int, config: dict):
    """A CharModel with the given core; config as in Recipe.model_config()."""
    cores = {"nn.LSTM": torch.nn.LSTM, "FastLSTM": lesson.FastLSTM, "FusedLSTM": lesson.FusedLSTM}
    if config["core"] not in cores:
        raise ValueError(f"unknown core {config['core']!r}: choose one of {sorted(cores)}")
    core = cores[config["core"]](config["embed"], config["hidden"], num_layers=config["layers"],
                                 batch_first=True,
                                 dropout=config["dropout"] if config["layers"] > 1 else 0.0)
    return lesson.CharModel(vocab_size, core, config["embed"], dropout=config["dropout"])


def cpu_has_native_bf16() -> bool:
    """True when the processor multiplies bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(recipe: Recipe, device: str) -> bool:
    """bfloat16 autocast: the products run in bfloat16 (weights and optimizer stay float32).
    On a CPU with native bfloat16 it nearly doubles the throughput at the same loss per token."""
    if recipe.bf16 not in ("auto", "on", "off"):
        raise ValueError(f"--bf16 must be auto, on or off, got {recipe.bf16!r}")
    if recipe.bf16 != "auto":
        return recipe.bf16 == "on"
    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def evaluate(model, val_ids, max_windows=None) -> float:
    """lm.validation_loss over the whole validation split (also in quick mode), in float32."""
    n_windows = len(validation_windows(val_ids)[0])
    limit = n_windows if max_windows is None else min(max_windows, n_windows)
    return lesson.validation_loss(model, val_ids, max_windows=limit, batch_size=128)


def save_checkpoint(path: Path, model, vocab: Vocab, recipe: Recipe, extra: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model": state, "vocab": list(vocab.chars), "config": recipe.model_config(),
                "recipe": asdict(recipe), **extra}, tmp)
    tmp.replace(path)


def describe(recipe: Recipe, n_params: int, bf16: bool, minutes: float, device: str) -> str:
    if device.startswith("cuda"):
        return (f"{recipe.core} {recipe.layers} x {recipe.hidden}, {n_params:,} parameters; "
                f"{minutes:g} min on {torch.cuda.get_device_name(0)}")
    return (f"{recipe.core} {recipe.layers} x {recipe.hidden}, embedding {recipe.embed}, "
            f"{n_params:,} parameters; batch {recipe.batch} x {recipe.seq_len}, AdamW lr "
            f"{recipe.lr:g}, dropout {recipe.dropout:g}, {'bfloat16' if bf16 else 'float32'} "
            f"products; {minutes:g} min on {device} ({torch.get_num_threads()} threads)")


def make_optimizer(model, recipe: Recipe):
    """AdamW with weight decay on the matrices only (not on biases and gains)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=recipe.lr, betas=(0.9, 0.99))


def train(minutes: float, device: str = "cpu", out: Path = DEFAULT_OUT, recipe: Recipe = None,
          seed: int = 0, eval_windows=None, log=print) -> dict:
    """Train for ``minutes`` of wall-clock time (evaluations included); write the checkpoint
    and its curve; return the report."""

    recipe = recipe or default_recipe(minutes, device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch.cuda.is_available() is False; "
                         "use --device cpu")
    out, budget, cuda = Path(out), 60.0 * minutes, device.startswith("cuda")
    corpus = load_shakespeare()
    seed_everything(seed)
    model = build_model(len(corpus.vocab), recipe.model_config()).to(device)
    if hasattr(model.core, "bias_ih_l0"):
        init_forget_bias(model.core, recipe.forget_bias)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = make_optimizer(model, recipe)
    batches = random_batches(corpus.train, recipe.batch, recipe.seq_len,
                             np.random.default_rng(seed))
    bf16 = use_bf16(recipe, device)
    log(describe(recipe, n_params, bf16, minutes, device))
    tokens_per_step = recipe.batch * recipe.seq_len
    curve, best, lr = [], {"val_loss": math.inf, "evals_since": 0}, recipe.lr

    def step(i, progress):
        nonlocal lr
        lr = cosine_lr(progress, recipe.lr, recipe.min_lr, recipe.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        X, Y = (torch.as_tensor(a).to(device, non_blocking=True) for a in next(batches))
        loss = char_model_step(model, optimizer, X, Y, recipe.clip, bf16=bf16)
        return None if cuda and i % 20 else loss.item()  # reading a loss waits for the GPU

    def after_eval(h) -> bool:
        """Log, keep the best model, and stop when validation has stopped improving."""
        val, elapsed, steps = h.val_losses[-1], h.val_times[-1], h.val_steps[-1] + 1
        curve.append({"time_s": round(elapsed, 2), "step": steps,
                      "tokens": steps * tokens_per_step, "train_loss": round(h.smoothed[-1], 4),
                      "val_loss": val, "lr": lr})
        improved = val < best["val_loss"]
        best["evals_since"] = 0 if improved else best["evals_since"] + 1
        if improved:
            best.update(val_loss=val, time_s=elapsed)
            save_checkpoint(out, model, corpus.vocab, recipe,
                            {"val_loss": val, "step": steps, "time_s": elapsed})
        log(f"{elapsed:7.1f} s  step {steps:6d}  {steps * tokens_per_step / elapsed:8,.0f} tok/s"
            f"  train {h.smoothed[-1]:.3f}  val {val:.4f}{'  *' if improved else ''}")
        if best["evals_since"] >= recipe.patience:
            log(f"validation has not improved for {recipe.patience} evaluations: "
                "stopping early")
            return True
        return False

    history = run_for(budget, step, eval_fn=lambda: evaluate(model, corpus.val, eval_windows),
                      evals=recipe.evals, after_eval=after_eval, plot=False, bar=False,
                      context="make train: lower --lr, keep --clip at 1.0")
    report = {"checkpoint": str(out), "recipe": asdict(recipe), "parameters": n_params,
              "bf16": bf16, "device": device, "budget_s": budget, "seed": seed,
              "best_val_loss": best["val_loss"], "best_time_s": best.get("time_s"),
              "tokens_per_s": history.num_steps * tokens_per_step / history.seconds,
              "curve": curve, "eval_windows": "all" if eval_windows is None else eval_windows,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine()}
    curve_path(out).write_text(json.dumps(report, indent=2) + "\n")
    log(f"best validation loss {best['val_loss']:.4f} nats/char; wrote {out} and "
        f"{curve_path(out)}")
    return report


def curve_path(checkpoint) -> Path:
    """Where the curve of a checkpoint is written: best.pt -> best.json."""
    return Path(checkpoint).with_suffix(".json")


def describe_vocab_difference(saved: list, current: list) -> str:
    only_saved = sorted(set(saved) - set(current))
    only_current = sorted(set(current) - set(saved))
    parts = [f"the checkpoint's vocabulary has {len(saved)} symbols, "
             f"the text's has {len(current)}"]
    if only_saved:
        parts.append(f"only in the checkpoint: {''.join(only_saved)!r}")
    if only_current:
        parts.append(f"only in the text: {''.join(only_current)!r}")
    if not only_saved and not only_current:
        parts.append("the same symbols in a different order")
    return "; ".join(parts)


def load_model(path, vocab: Vocab = None, device: str = "cpu", **expect):
    """Load a checkpoint written by ``train``: returns (model in eval mode, vocab, checkpoint).

    ``vocab``: the vocabulary of the text the model will read; a different one is refused,
    saying which symbols differ. ``expect``: sizes the caller relies on (``hidden=512``,
    ``layers=1``, ...); a checkpoint of another size is refused, naming the size.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}: train one with `make train` "
                                f"(python -m lstmbook.best_model --minutes 4 --out {path})")
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if vocab is not None and list(vocab.chars) != list(ckpt["vocab"]):
        raise ValueError(f"{path}: vocabulary differs: "
                         + describe_vocab_difference(ckpt["vocab"], list(vocab.chars)))
    config = ckpt["config"]
    for key, value in expect.items():
        if key not in config:
            raise ValueError(f"unknown size {key!r}: a checkpoint records {sorted(config)}")
        if config[key] != value:
            raise ValueError(f"{path}: size differs: the checkpoint has {key}={config[key]!r}, "
                             f"expected {key}={value!r}")
    model = build_model(len(ckpt["vocab"]), config).to(device)
    own = model.state_dict()
    for name, tensor in ckpt["model"].items():
        if name in own and tuple(own[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: size differs: parameter {name} has shape "
                             f"{tuple(tensor.shape)} in the checkpoint but "
                             f"{tuple(own[name].shape)} in "
                             f"a model built from its config {config}")
    missing = sorted(set(own) - set(ckpt["model"]))
    unexpected = sorted(set(ckpt["model"]) - set(own))
    if missing or unexpected:
        raise ValueError(f"{path}: the weights do not fit a {config['core']} model: missing "
                         f"{missing[:4]}, unexpected {unexpected[:4]}")
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, Vocab("".join(ckpt["vocab"])), ckpt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Train the course's best character model on tiny Shakespeare for a "
                    "wall-clock budget; keep the checkpoint with the best validation loss.")
    parser.add_argument("--minutes", type=float, default=4.0, help="wall-clock budget (default 4)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"checkpoint path (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for PyTorch (default: PyTorch's choice)")
    parser.add_argument("--eval-windows", type=int, default=None,
                        help="score only the first N validation windows (default: all of them)")
    for f in fields(Recipe):
        parser.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None,
                            help=f"default {f.default} ({LONG_RECIPE[f.name]} from "
                                 f"{LONG_BUDGET_MINUTES:g} minutes on)"
                            if f.name in LONG_RECIPE else f"default {f.default}")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = default_recipe(args.minutes, device,
                            **{f.name: getattr(args, f.name) for f in fields(Recipe)})
    try:
        train(args.minutes, device, args.out, recipe, args.seed, args.eval_windows)
    except (NonFiniteLossError, ValueError) as err:
        print(f"make train: {err}", file=sys.stderr)
        return 1
    return 0


def sample_main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Generate text from a checkpoint of make train.")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--text", type=Path, default=None,
                        help="the text whose vocabulary the model must share "
                             "(default: the course's tiny Shakespeare)")
    args = parser.parse_args(argv)
    try:
        vocab = Vocab(load_text(args.text))
        model, vocab, ckpt = load_model(args.checkpoint, vocab, args.device)
        print(sample_text(model, vocab, args.prompt, args.length, args.temperature, args.seed))
    except (FileNotFoundError, ValueError) as err:
        print(f"lstmbook.sample: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

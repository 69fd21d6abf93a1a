"""Lesson 6's comparison: every implementation of the course on the common task, same budget.

Each contender is a factory registered with ``@contender``; it builds one character model and
returns a ``Model`` with three callables, the only things the harness needs:

- ``step(X, Y, lr) -> loss``: one optimiser update on a batch of windows (ids ``X``, targets
  ``Y``, both (batch, seq_len)), every window started from a zero state;
- ``val_loss(val_ids) -> nats/char``: the course's ``lm.validation_loss``;
- ``sample(vocab, prompt, length, temperature, seed) -> text``: the course's ``lm.sample``.

``train`` gives every contender the same wall-clock budget of *training* time (evaluations
pause the clock), the same random windows and a cosine learning-rate decay keyed to that clock.
``make bench`` runs them all after the throughput rows and saves one JSON report, which lesson 6
loads (``load_or_measure``).
"""
import ast
import inspect
import json
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import lm
from .data import load_shakespeare, random_batches
from .lessons import autograd_lstm, numpy_lstm, pytorch_lstm
from .runtime import QUICK, import_tensorflow, machine, quick, seed_everything
from .training import cosine_lr, run_for

RESULTS = Path(__file__).resolve().parent.parent / "results" / "bench.json"


@dataclass(frozen=True)
class HParams:
    hidden: int = 256        # units in the recurrent layer
    embed: int = 64          # embedding size (0: one-hot input, as in lesson 2)
    batch: int = 32          # windows per update
    seq_len: int = 128       # characters per training window
    lr: float = 3e-3         # peak learning rate; cosine decay to lr / 10 over the budget
    clip: float = 1.0        # global gradient-norm clip


# Hyper-parameters that lesson 6's experiment may change, and the values that make sense.
TUNABLE = {"hidden": (16, 2048), "embed": (0, 512), "batch": (1, 512), "seq_len": (8, 1024),
           "lr": (1e-5, 1.0)}


@dataclass
class Model:
    step: Callable
    val_loss: Callable
    sample: Callable
    num_params: int


@dataclass(frozen=True)
class Contender:
    name: str
    lesson: int
    build: Callable           # (vocab_size, hp) -> Model
    hp: HParams
    bench_row: str            # its row in lstmbook.bench (forward+backward tokens/s)
    code: Callable            # () -> the functions and classes that define the model
    note: str = ""
    fixed: tuple = ()         # hyper-parameters this model has no use for (NumPy: embed)


CONTENDERS: dict[str, Contender] = {}


def lm_model(step, logits_fn, make_step_fn, num_params) -> Model:
    """A Model scored by ``lm.validation_loss(logits_fn)`` and sampled by ``lm.sample`` with
    the step function ``make_step_fn()`` returns (made when sampling, after training)."""
    return Model(step, lambda val: lm.validation_loss(logits_fn, val),
                 lambda vocab, prompt, n, t, seed: lm.sample(
                     make_step_fn(), vocab, prompt, n, t, np.random.default_rng(seed)),
                 num_params)


def contender(name, lesson, bench_row, code, note="", fixed=(), **hp):
    def register(build):
        CONTENDERS[name] = Contender(name, lesson, build, HParams(**hp), bench_row, code, note,
                                     fixed)
        return build
    return register


# --- lines of code -------------------------------------------------------------------------------

def code_lines(*objects) -> int:
    """Lines of code in the source of functions and classes: no blank lines, comments or
    docstrings, so a well-documented model is not penalised."""
    total = 0
    for obj in objects:
        source = textwrap.dedent(inspect.getsource(obj))
        docstrings = set()
        for node in ast.walk(ast.parse(source)):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
        total += sum(1 for number, line in enumerate(source.splitlines(), 1)
                     if line.strip() and not line.strip().startswith("#")
                     and number not in docstrings)
    return total


# --- the contenders ------------------------------------------------------------------------------

def _numpy_code():
    m = numpy_lstm
    return [m._sigmoid_, m.lstm_layer_forward_fast, m.lstm_layer_backward_fast, m.CharLSTM,
            m.char_lstm_forward, m.char_lstm_backward, m.softmax_cross_entropy]


@contender("NumPy, by hand", 2, "NumPy LSTM (lesson 2)", _numpy_code, embed=0, lr=1e-2,
           note="one-hot input; forward and backward written by hand", fixed=("embed",))
def numpy_model(vocab_size, hp):
    model = numpy_lstm.CharLSTM(vocab_size, hp.hidden, seed=0)
    optimizer = numpy_lstm.Adam(model.params(), lr=hp.lr)

    def step(X, Y, lr):
        optimizer.lr = lr
        return numpy_lstm.train_step(model, optimizer, X, Y, max_norm=hp.clip)[0]

    return lm_model(step, model.logits_fn, lambda: model.step_fn,
                    sum(p.size for p in model.params()))


def _engine_code():
    return [autograd_lstm.LSTMCell, autograd_lstm.CharLSTM, autograd_lstm.CharLSTM.__call__]


def engine_code():
    """The engine itself (lesson 3, part A): what the engine contender stands on."""
    m = autograd_lstm
    return [m.Tensor, m.as_tensor, m.broadcast_shape, m.unbroadcast, m.topological_order,
            m.initial_adjoint, m.check_not_freed, m.release, m.backward, m.check_matmul_shapes,
            m.add, m.no_grad, m.mul, m.matmul, m.sigmoid, m.tanh, m.tensor_sum, m.getitem,
            m.reshape, m.stack, m.embedding,
            m.cross_entropy]


@contender("Autograd engine", 3, "Autograd engine LSTM (lesson 3)", _engine_code,
           note="lesson 3's Tensor engine on NumPy")
def engine_model(vocab_size, hp):
    model = autograd_lstm.CharLSTM(vocab_size, hp.embed, hp.hidden, seed=0)
    params = model.parameters()
    optimizer = autograd_lstm.Adam({k: p.data for k, p in params.items()}, lr=hp.lr,
                                   clip=hp.clip)

    def step(X, Y, lr):
        for p in params.values():
            p.grad = None
        loss, _ = autograd_lstm.tbptt_step(model, X, Y, None)
        optimizer.step({k: p.grad for k, p in params.items()}, lr=lr)
        return float(loss.data)

    return lm_model(step, model.logits, lambda: model.step,
                    sum(p.data.size for p in params.values()))


def _hips_code():
    m = autograd_lstm
    return [m.anp_sigmoid, m.anp_tanh, m.lstm_cell, m.char_model, m.char_model_loss]


@contender("HIPS autograd", 3, "HIPS autograd LSTM (lesson 3)", _hips_code,
           note="a pure NumPy function, differentiated by the autograd package")
def hips_model(vocab_size, hp):
    m = autograd_lstm
    p = m.init_params("lstm", vocab_size, hp.embed, hp.hidden, seed=0)
    optimizer = m.Adam(p, lr=hp.lr, clip=hp.clip)

    def zeros(batch):
        Z = np.zeros((batch, hp.hidden), np.float32)
        return Z, Z

    def step(X, Y, lr):
        grads, (loss, _) = m.loss_grad(m.lstm_cell, p, X, Y, zeros(len(X)))
        optimizer.step(grads, lr=lr)
        return float(loss)

    def step_fn(token, state):
        logits, state = m.char_model(m.lstm_cell, p, np.array([[token]]), state or zeros(1))
        return logits[0, 0], state

    return lm_model(step, lambda X: m.char_model(m.lstm_cell, p, X, zeros(len(X)))[0],
                    lambda: step_fn, sum(v.size for v in p.values()))


def _torch_model(core):
    """A CharModel (lesson 4) around a batch_first ``core`` class (torch.nn's or lesson 4's),
    trained with AdamW as in lesson 4; the three LSTMs start from the same weights, nn.LSTM's
    with a forget-gate bias of +1."""
    def build(vocab_size, hp):
        m = pytorch_lstm
        recurrent = core(hp.embed, hp.hidden, batch_first=True)
        if issubclass(core, (nn.LSTM, m.NaiveLSTM, m.FusedLSTM)):
            lstm = m.init_forget_bias(nn.LSTM(hp.embed, hp.hidden, batch_first=True), 1.0)
            if core is m.NaiveLSTM:
                m.copy_lstm_weights(recurrent, lstm)
            else:
                recurrent.load_state_dict(lstm.state_dict())
        model = m.CharModel(vocab_size, recurrent, hp.embed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=0.01)

        def step(X, Y, lr):
            for group in optimizer.param_groups:
                group["lr"] = lr
            return m.char_model_step(model, optimizer, torch.as_tensor(X), torch.as_tensor(Y),
                                     hp.clip).item()

        return Model(step, lambda val: m.validation_loss(model, val),
                     lambda vocab, prompt, n, t, seed: m.sample_text(model, vocab, prompt, n, t,
                                                                     seed),
                     sum(p.numel() for p in model.parameters()))
    return build


def _lesson4(*names):
    def code():
        return [getattr(pytorch_lstm, name) for name in names]
    return code


contender("PyTorch naive", 4, "PyTorch naive LSTM (lesson 4)",
          _lesson4("NaiveLSTMCell", "naive_cell_step", "lstm_input", "lstm_output", "NaiveLSTM",
                   "CharModel"),
          note="one nn.Linear per gate, autograd")(_torch_model(pytorch_lstm.NaiveLSTM))
contender("PyTorch fused", 4, "PyTorch fused LSTM (lesson 4)",
          _lesson4("fused_step", "fused_layer", "lstm_input", "lstm_output",
                   "lstm_parameter_shapes", "layer_parameters", "FusedLSTM", "CharModel"),
          note="one product for the four gates, input projection hoisted"
          )(_torch_model(pytorch_lstm.FusedLSTM))
contender("torch.nn.LSTM", 4, "torch.nn.LSTM", _lesson4("CharModel"),
          note="the library's fused kernels")(_torch_model(nn.LSTM))


def _keras_code():
    import_tensorflow()  # quietly, before the lesson module imports Keras (seconds)
    from .lessons.keras_word_lstm import build_word_lm
    return [build_word_lm]


@contender("Keras", 5, "Keras LSTM layer (lesson 5)", _keras_code,
           note="keras.layers.LSTM on TensorFlow, train_on_batch")
def keras_model(vocab_size, hp):
    import_tensorflow()
    import keras

    from .lessons.keras_word_lstm import build_word_lm, generation_model, keras_step_fn
    keras.utils.set_random_seed(0)
    model = build_word_lm(vocab_size, hp.embed, hp.hidden, dropout=0.0)
    # Keras starts embeddings near zero (uniform in ±0.05); the other contenders draw them from
    # N(0, 1), as nn.Embedding does. Same start for all, so the table compares implementations.
    table = model.get_layer("embedding").embeddings
    table.assign(np.random.default_rng(0).standard_normal(table.shape).astype(np.float32))
    # global_clipnorm clips the norm of all gradients together, like the others; Keras'
    # clipnorm would clip each weight's gradient on its own.
    model.compile(optimizer=keras.optimizers.Adam(hp.lr, global_clipnorm=hp.clip),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def step(X, Y, lr):
        model.optimizer.learning_rate.assign(lr)
        return float(model.train_on_batch(X.astype(np.int32), Y.astype(np.int32)))

    return lm_model(step, lambda X: model.predict_on_batch(X.astype(np.int32)),
                    lambda: keras_step_fn(generation_model(model)), model.count_params())


contender("RNN (baseline)", 4, "torch.nn.RNN", _lesson4("CharModel"),
          note="torch.nn.RNN, tanh: no gates")(_torch_model(nn.RNN))
contender("GRU (baseline)", 4, "torch.nn.GRU", _lesson4("CharModel"),
          note="torch.nn.GRU: three gates, no cell state")(_torch_model(nn.GRU))


# --- the harness ---------------------------------------------------------------------------------

PROMPT, SAMPLE_LENGTH, TEMPERATURE = "ROMEO:\n", 200, 0.8


def train(name: str, corpus, seconds: float, *, evals: int = 4, seed: int = 0,
          changes: dict | None = None, sample: bool = True) -> dict:
    """Train contender ``name`` for ``seconds`` of training time; return its run record.

    ``changes`` overrides hyper-parameters (``{"hidden": 512}``). The validation loss is
    measured ``evals`` times, evenly over the budget, with the clock paused; the last one is the
    run's result.
    """
    entry = CONTENDERS[name]
    unknown = set(changes or {}) - set(TUNABLE)
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)}; "
                         f"choose from {list(TUNABLE)}")
    for key in set(changes or {}) & set(entry.fixed):
        raise ValueError(f"{name!r} has no use for {key!r} (it is {getattr(entry.hp, key)!r} "
                         f"by construction: {entry.note}); change another hyper-parameter")
    hp = replace(entry.hp, **(changes or {}))
    seed_everything(seed)
    model = entry.build(len(corpus.vocab), hp)
    batches = random_batches(corpus.train, hp.batch, hp.seq_len, np.random.default_rng(seed))

    def step(_, progress):
        return model.step(*next(batches), cosine_lr(progress, hp.lr))

    h = run_for(seconds, step, eval_fn=lambda: model.val_loss(corpus.val), evals=evals,
                pause_clock_for_eval=True, desc=name, plot=False,
                context=f"contender {name!r}, lr {hp.lr}")
    curve = [{"time_s": round(t, 2), "step": s + 1, "train_loss": round(h.smoothed[s], 4),
              "val_loss": round(v, 4)} for s, t, v in zip(h.val_steps, h.val_times, h.val_losses)]
    record = {"name": name, "lesson": entry.lesson, "note": entry.note, "hparams": asdict(hp),
              "params": int(model.num_params), "lines": code_lines(*entry.code()),
              "steps": h.num_steps, "train_seconds": round(h.seconds, 2),
              "train_chars_per_s": round(h.num_steps * hp.batch * hp.seq_len / h.seconds),
              "curve": curve, "val_loss": curve[-1]["val_loss"], "bench_row": entry.bench_row}
    if sample:
        record["sample"] = model.sample(corpus.vocab, PROMPT, SAMPLE_LENGTH, TEMPERATURE, seed)
    return record


def run_all(seconds: float, names=None, corpus=None, **kwargs) -> list[dict]:
    corpus = corpus or load_shakespeare()
    return [train(name, corpus, seconds, **kwargs) for name in names or CONTENDERS]


def report(runs: list[dict], seconds: float, throughput: list[dict] | None = None) -> dict:
    """The comparison's record: the runs, where and when they were made, and the throughput
    rows of ``make bench`` when it made them."""
    return {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
            "quick": QUICK, "train_seconds": seconds, "throughput": throughput or [],
            "runs": runs}


def load_or_measure(path: Path = RESULTS) -> tuple[dict, str]:
    """The saved report of ``make bench``, or a short comparison run now; and which it is."""
    path = Path(path)
    if path.is_file():
        return (json.loads(path.read_text()),
                f"saved by make bench in {path.parent.name}/{path.name}")
    seconds = quick(20, 1)
    return (report(run_all(seconds), seconds),
            f"measured just now with {seconds} s per model, because {path} does not exist "
            "(run make bench for the full measurement, with the throughput columns)")


def rows(results: dict, device: str = "cpu") -> list[dict]:
    """One row per contender: its run joined with its throughput on ``device`` (if measured).
    Lines of code are counted now, from the code as it is, not as it was when the run was made
    (the lessons' code can be reorganised without a new make bench)."""
    speed = {r["name"]: r for r in results["throughput"] if r["device"] == device}
    out = []
    for run in results["runs"]:
        row = dict(run)
        if run["name"] in CONTENDERS:
            row["lines"] = code_lines(*CONTENDERS[run["name"]].code())
        measured = speed.get(run["bench_row"])
        row["tokens_per_s"] = measured["tokens_per_s"] if measured else None
        row["ratio"] = measured["ratio_to_nn_lstm"] if measured else None
        row["ratio_text"] = ratio_text(measured) if measured else "–"
        out.append(row)
    return out


def ratio_text(throughput_row: dict) -> str:
    """'0.48 (0.45-0.51)': a throughput row's median ratio to nn.LSTM and its lowest and highest
    round (``make bench`` interleaves the rows over several rounds)."""
    ratio = f"{throughput_row['ratio_to_nn_lstm']:.2f}"
    if "ratio_low" not in throughput_row:  # a report from before the rows were interleaved
        return ratio
    return f"{ratio} ({throughput_row['ratio_low']:.2f}-{throughput_row['ratio_high']:.2f})"


def table(results: dict, fmt: str = "github") -> str:
    """The comparison table (Markdown by default); GPU columns when the report has them."""
    from tabulate import tabulate
    gpu = {r["name"]: r for r in results["throughput"] if r["device"] == "cuda"}
    headers = ["implementation (lesson)", "val loss", "train chars/s", "fwd+bwd tokens/s",
               "× nn.LSTM", "params", "lines"]
    if gpu:
        headers += ["GPU tokens/s", "GPU × nn.LSTM"]
    body = []
    for r in rows(results):
        line = [f"{r['name']} ({r['lesson']})", f"{r['val_loss']:.3f}",
                f"{r['train_chars_per_s']:,}",
                "–" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:,.0f}",
                r["ratio_text"],
                f"{r['params']:,}", r["lines"]]
        if gpu:
            g = gpu.get(r["bench_row"])
            line += ["–", "–"] if g is None else [f"{g['tokens_per_s']:,.0f}", ratio_text(g)]
        body.append(line)
    for b in results.get("baselines", []):  # counting models (lesson 7): a loss, nothing else
        body.append([f"{b['name']} ({b['lesson']})", f"{b['val_loss']:.3f}"]
                    + ["–"] * (len(headers) - 2))
    return tabulate(body, headers, tablefmt=fmt, disable_numparse=True,
                    colalign=["left"] + ["right"] * (len(headers) - 1))

"""Checks for lesson 6 (book/06_comparison.md).

6.1 compares the student's parameter count with the number of parameters PyTorch allocates for
the same model (an nn.Embedding, nn.RNN / nn.LSTM / nn.GRU and an nn.Linear read-out), so the
oracle is the library, not a formula. 6.2 checks the method of an experiment: one
hyper-parameter changed to a new, sensible value, and a prediction for both measures.
"""
from . import ExerciseFailed, exercise

CELLS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
# (vocab_size, embed_size, hidden_size): the lesson's size, a small odd one, a wide one
SIZES = [(65, 64, 256), (7, 3, 5), (100, 32, 512)]
DIRECTIONS = ("higher", "lower", "about the same")
MEASURES = ("speed", "loss")
# Words a prediction is often written in, and the direction each means for the measure.
SYNONYMS = {"speed": {"faster": "higher", "slower": "lower", "same": "about the same",
                      "unchanged": "about the same", "up": "higher", "down": "lower"},
            "loss": {"better": "lower", "worse": "higher", "same": "about the same",
                     "unchanged": "about the same", "up": "higher", "down": "lower"}}
MEANINGS = {"speed": "The speed is characters per second: a faster run has a higher speed",
            "loss": "The loss is lower when the model is better"}


def torch_count(cell: str, vocab_size: int, embed_size: int, hidden_size: int) -> int:
    """Parameters PyTorch allocates for embedding -> one recurrent layer -> linear read-out."""
    from torch import nn
    layers = [nn.Embedding(vocab_size, embed_size),
              getattr(nn, CELLS[cell])(embed_size, hidden_size, batch_first=True),
              nn.Linear(hidden_size, vocab_size)]
    return sum(p.numel() for layer in layers for p in layer.parameters())


def _parts(cell: str, v: int, e: int, h: int) -> dict:
    """The model's parameters by part, as PyTorch allocates them (names as in lesson 4)."""
    from torch import nn
    recurrent = dict(getattr(nn, CELLS[cell])(e, h).named_parameters())
    return {"the embedding table (vocab_size x embed_size)": v * e,
            "the input weights W_ih": recurrent["weight_ih_l0"].numel(),
            "the recurrent weights W_hh": recurrent["weight_hh_l0"].numel(),
            "the bias b_ih": recurrent["bias_ih_l0"].numel(),
            "the bias b_hh": recurrent["bias_hh_l0"].numel(),
            "the read-out weights (hidden_size x vocab_size)": h * v,
            "the read-out bias (vocab_size)": v}


def _a(cell: str) -> str:
    """'an RNN', 'an LSTM', 'a GRU'."""
    return f"{'a' if cell == 'gru' else 'an'} {CELLS[cell]}"


def _blocks(cell, v, e, h, got):
    """A hint for the usual mistakes, found by comparing with the parts of the true count."""
    parts = _parts(cell, v, e, h)
    total = sum(parts.values())
    k = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    if got == total - parts["the bias b_hh"]:
        return ("that is one bias vector per gate block; PyTorch keeps two (bias_ih and "
                "bias_hh), as lesson 4 showed. Keras keeps one, which is why its row in the table "
                "differs.")
    if got == total - parts["the bias b_ih"] - parts["the bias b_hh"]:
        return ("your count leaves out the biases: PyTorch keeps two per gate block, bias_ih "
                "and bias_hh, each of hidden_size numbers per block.")
    names = list(parts)
    for i, a in enumerate(names):  # one part or two parts left out
        for b in names[i:]:
            if "bias b_" in a and "bias b_" in b:
                continue
            if got == total - parts[a] - (parts[b] if b != a else 0):
                return f"your count leaves out {a if b == a else f'{a} and {b}'}."
    blocks = {"rnn": 1, "gru": 3, "lstm": 4}
    for other in blocks:
        if other != cell and got == torch_count(other, v, e, h):
            return (f"that is the count of {_a(other)}, with {blocks[other]} gate block(s); "
                    f"{_a(cell)} has {k}: W_ih, W_hh and both biases each stack {k} block(s) "
                    "of hidden_size rows.")
    if got == total - parts["the recurrent weights W_hh"] + k * h * e:
        return ("W_hh multiplies the previous hidden state, so each block of it is "
                "hidden_size x hidden_size, not hidden_size x embed_size.")
    return (f"{_a(cell)} has {k} block(s) of hidden_size rows in each weight matrix and bias: "
            "count (embed + hidden + 2) * hidden per block, then add the embedding table and "
            "the read-out (weights and bias).")


@exercise("6.1", "Count the parameters")
def num_params(fn):
    for cell in CELLS:
        for v, e, h in SIZES:
            got = fn(cell, v, e, h)
            expected = torch_count(cell, v, e, h)
            if not isinstance(got, int) or isinstance(got, bool):
                try:
                    if float(got) != int(got):
                        raise ValueError
                    got = int(got)
                except (TypeError, ValueError):
                    raise ExerciseFailed(
                        f"num_params({cell!r}, {v}, {e}, {h}) returned {got!r}; it should return "
                        "a whole number") from None
            if got != expected:
                raise ExerciseFailed(
                    f"num_params({cell!r}, vocab_size={v}, embed_size={e}, hidden_size={h}) "
                    f"returned {got:,}, PyTorch allocates {expected:,}. Hint: "
                    + _blocks(cell, v, e, h, got))


@exercise("6.2", "Change one thing, predict, then measure")
def experiment(fn, contender="torch.nn.LSTM"):
    """``fn() -> (changes, prediction)``: changes is {name: value} with exactly one tunable
    hyper-parameter of the run; prediction is {"speed": direction, "loss": direction}."""
    from dataclasses import asdict

    from lstmbook.compare import CONTENDERS
    from lstmbook.compare import TUNABLE as tunable
    defaults = asdict(CONTENDERS[contender].hp)
    answer = fn()
    if not isinstance(answer, tuple) or len(answer) != 2:
        raise ExerciseFailed(f"return two things, (changes, prediction); got {answer!r}")
    changes, prediction = answer
    if not isinstance(changes, dict) or len(changes) != 1:
        raise ExerciseFailed(
            f"`changes` should be a dict with exactly one entry, like {{'hidden': 512}}; got "
            f"{changes!r}. Change one thing at a time, or you cannot tell which change caused "
            "what you measure.")
    (name, value), = changes.items()
    if name not in tunable:
        raise ExerciseFailed(f"{name!r} is not a hyper-parameter of the runs; choose one of "
                             f"{sorted(tunable)}")
    low, high = tunable[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExerciseFailed(f"{name} = {value!r} is a {type(value).__name__}: give a number, "
                             f"like {defaults[name]!r} (the current value)")
    if not low <= value <= high:
        raise ExerciseFailed(f"{name} = {value!r} is outside the sensible range [{low}, {high}]")
    if isinstance(defaults[name], int) and not float(value).is_integer():
        raise ExerciseFailed(f"{name} counts something: it needs a whole number, got {value!r}")
    if value == defaults[name]:
        raise ExerciseFailed(f"{name} = {value!r} is the value the runs already use: change it")
    if not isinstance(prediction, dict) or set(prediction) != set(MEASURES):
        raise ExerciseFailed(
            f"`prediction` should have exactly the keys {list(MEASURES)}, got {prediction!r}")
    for measure, direction in prediction.items():
        if direction not in DIRECTIONS:
            meant = SYNONYMS.get(measure, {}).get(str(direction).strip().lower())
            raise ExerciseFailed(
                f"prediction[{measure!r}] = {direction!r}: write one of {list(DIRECTIONS)}"
                + (f". {MEANINGS[measure]}, so that is {meant!r}" if meant else ""))

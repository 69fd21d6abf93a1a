"""Checks for lesson 5 (book/05_keras_word_lstm.md).

Oracles: a tokenisation written out by hand (5.1); a fake model with known logits and a known
state, whose samples are compared with the softmax computed here (5.2); torch.nn.LSTM run
against a Keras LSTM layer holding the mapped weights, both in float64 (5.3); and the
cross-entropy of a log-softmax computed here in float64 (5.4, the debugging clinic), with the
usual wrong losses (logits read as probabilities, sums instead of means) computed beside it to
name the mistake.
"""
import numpy as np

from ..lm import log_softmax
from . import ExerciseFailed, exercise, expect_close

# ---------------------------------------------------------------------------------------------
# 5.1 the tokenizer

TOKENIZER_TEXT = "ROMEO:\nI'll go -- 'tis late, good-night!\n\nJULIET:  O Romeo?\t3 times."
TOKENIZER_EXPECTED = [
    "ROMEO", ":", "\n",
    "I'll", "go", "-", "-", "'", "tis", "late", ",", "good", "-", "night", "!", "\n",
    "\n",
    "JULIET", ":", "O", "Romeo", "?", "3", "times", ".",
]
# Small cases, each with its reason.
TOKENIZER_CASES = [
    ("", [], "an empty text has no tokens"),
    ("\n\n", ["\n", "\n"], "each line break is a token of its own"),
    ("to  be\tor", ["to", "be", "or"], "spaces and tabs separate words and are dropped"),
    ("Thou art--", ["Thou", "art", "-", "-"], "each punctuation character is a token"),
]


def _is_word(token: str) -> bool:
    return any(ch.isalpha() for ch in token)


def _tokenizer_hint(got: list, expected: list) -> str:
    """Name the usual mistake behind a wrong tokenisation of TOKENIZER_TEXT."""
    if got.count("\n") < expected.count("\n"):
        return ('line breaks are missing: every "\\n" must be a token of its own (str.split() and '
                r'\s both treat it as a space). Match "\n" before dropping whitespace')
    spaced = [t for t in got if t != "\n" and any(ch.isspace() for ch in t)]
    if spaced:
        return f"tokens hold whitespace, e.g. {spaced[0]!r}: drop spaces and tabs"
    if any(t.isupper() for t in expected) and not any(t.isupper() for t in got if _is_word(t)):
        return "the case was changed: keep 'ROMEO' and 'Romeo' as they are written"
    glued = [t for t in got if _is_word(t) and not all(ch.isalpha() or ch == "'" for ch in t)]
    if glued:
        return (f"punctuation is glued to a word in {glued[0]!r}: every character that is not "
                "a letter or a space is a token of its own")
    if any(len(t) > 1 and (t.startswith("'") or t.endswith("'")) for t in got):
        return ("an apostrophe at the edge of a word belongs to no word ('tis -> \"'\", \"tis\"); "
                "keep apostrophes only between letters (I'll, o'er)")
    if "I'll" not in got:
        return "an apostrophe between letters stays inside the word: \"I'll\" is one token"
    return ""


@exercise("5.1", "a tokenizer that keeps punctuation and line breaks")
def tokenize(answer):
    got = answer(TOKENIZER_TEXT)
    if isinstance(got, str) or not isinstance(got, (list, tuple)):
        raise ExerciseFailed(f"tokenize should return a list of strings, got {type(got).__name__}")
    got = list(got)
    if not all(isinstance(t, str) for t in got):
        bad = next(t for t in got if not isinstance(t, str))
        raise ExerciseFailed(f"every token should be a str, got {type(bad).__name__} ({bad!r})")
    if got != TOKENIZER_EXPECTED:
        hint = _tokenizer_hint(got, TOKENIZER_EXPECTED)
        at = next((i for i, (g, e) in enumerate(zip(got, TOKENIZER_EXPECTED)) if g != e),
                  min(len(got), len(TOKENIZER_EXPECTED)))
        raise ExerciseFailed(
            f"tokenize({TOKENIZER_TEXT!r}) gave {len(got)} tokens, expected "
            f"{len(TOKENIZER_EXPECTED)}; first difference at token {at}: got "
            f"{got[at:at + 3]!r}, expected {TOKENIZER_EXPECTED[at:at + 3]!r}."
            + (f" Hint: {hint}" if hint else ""))
    for text, expected, why in TOKENIZER_CASES:
        got = list(answer(text))
        if got != expected:
            raise ExerciseFailed(f"tokenize({text!r}) gave {got!r}, expected {expected!r}: {why}")


# ---------------------------------------------------------------------------------------------
# 5.2 the generation loop

class _SuccessorModel:
    """A fake model over V tokens that strongly prefers token+1 and counts its calls.

    Its state is a ("state", k) tuple after k calls, so the check can tell whether the loop
    passes each returned state to the next call.
    """

    def __init__(self, vocab_size: int = 6):
        self.V, self.calls, self.problem = vocab_size, [], None

    def __call__(self, token, state):
        expected_state = None if not self.calls else ("state", len(self.calls))
        if state != expected_state and self.problem is None:
            self.problem = (f"call {len(self.calls) + 1} of step_fn got state {state!r}, expected "
                            f"{expected_state!r}: pass the state that step_fn returned to the "
                            "next call (and None only to the very first one)")
        token = int(token)
        self.calls.append(token)
        logits = np.zeros(self.V)
        logits[(token + 1) % self.V] = 6.0
        return logits, ("state", len(self.calls))


FIXED_LOGITS = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])


def _fixed_model(token, state):
    return FIXED_LOGITS.copy(), state


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    p = np.exp(z - z.max())
    return p / p.sum()


def _frequencies(answer, n: int, temperature, top_k, seed: int):
    out = answer(_fixed_model, [0], n, temperature=temperature, top_k=top_k,
                 rng=np.random.default_rng(seed))
    out = _as_ids(out, n, len(FIXED_LOGITS))
    return np.bincount(out, minlength=len(FIXED_LOGITS)) / n


def _as_ids(out, length: int, vocab_size: int) -> np.ndarray:
    try:
        ids = np.asarray(list(out))
    except TypeError:
        raise ExerciseFailed(f"generate should return a list of token ids, got "
                             f"{type(out).__name__}") from None
    if ids.shape != (length,) and ids.size == length:
        raise ExerciseFailed(f"generate(..., length={length}) returned the right number of ids "
                             f"in the shape {ids.shape}: return a flat list of {length} ints")
    if ids.shape != (length,):
        raise ExerciseFailed(f"generate(..., length={length}) returned {ids.size} ids, expected "
                             f"{length} (the new tokens only, without the prompt)")
    if not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0 or ids.max() >= vocab_size:
        raise ExerciseFailed(f"generate should return integer ids in [0, {vocab_size}), got "
                             f"{ids[:5].tolist()}...")
    return ids.astype(np.int64)


def _compare_distribution(name, freq, expected, n, hint):
    # Five standard deviations of a frequency measured from n draws (plus three draws of slack for
    # rare tokens): a correct loop fails this with a probability below one in a million, a wrong
    # temperature or top-k fails it by far.
    sd = np.sqrt(expected * (1 - expected) / n) + 3.0 / n
    z = np.abs(freq - expected) / sd
    forbidden = (expected == 0) & (freq > 0)
    if forbidden.any() or z.max() > 5:
        raise ExerciseFailed(
            f"{name}: token frequencies {np.round(freq, 3).tolist()} over {n} draws, expected "
            f"probabilities {np.round(expected, 3).tolist()}. Hint: {hint}")


@exercise("5.2", "the generation loop with temperature and top-k")
def generate(answer):
    # (1) Feeding: the prompt goes in token by token, each new token goes back in, state flows.
    model = _SuccessorModel()
    out = _as_ids(answer(model, [2, 4], 5, temperature=1.0, top_k=1,
                         rng=np.random.default_rng(0)), 5, model.V)
    if model.problem:
        raise ExerciseFailed(model.problem)
    expected_feed = [2, 4, 5, 0, 1, 2]
    if model.calls[:2] != [2, 4]:
        raise ExerciseFailed(f"step_fn was first called with tokens {model.calls[:2]}, expected "
                             "the prompt [2, 4]: feed every prompt token, in order, before "
                             "sampling")
    if out.tolist() != [5, 0, 1, 2, 3]:
        raise ExerciseFailed(
            f"with top_k=1 (always the most likely token) and a model that predicts token+1, the "
            f"prompt [2, 4] should continue [5, 0, 1, 2, 3], got {out.tolist()}. Hint: sample "
            "from the logits returned after the last prompt token, then feed each sampled token "
            "back")
    if model.calls[:len(expected_feed)] != expected_feed or len(model.calls) > 7:
        raise ExerciseFailed(f"step_fn was called with tokens {model.calls}, expected "
                             f"{expected_feed} (optionally followed by the last sampled token): "
                             "feed each sampled token back into the model")

    # (2) Temperature divides the logits, before the softmax; the draws come from rng.
    n = 3000
    for i, temperature in enumerate((0.5, 2.0)):
        freq = _frequencies(answer, n, temperature, None, seed=10 + i)
        if freq.max() == 1.0:
            raise ExerciseFailed(
                f"at temperature {temperature} all {n} draws were token {int(freq.argmax())}, "
                f"the likeliest one, where the softmax gives it probability "
                f"{_softmax(FIXED_LOGITS / temperature)[freq.argmax()]:.2f}. Hint: the loop "
                "takes the argmax instead of drawing a token: draw it with "
                "rng.choice(len(p), p=p) from the softmax of the logits divided by the "
                "temperature (greedy decoding ignores the temperature and repeats itself)")
        _compare_distribution(
            f"temperature {temperature}", freq, _softmax(FIXED_LOGITS / temperature), n,
            "divide the logits by the temperature and then take the softmax; dividing the "
            "probabilities afterwards changes nothing once they are normalised again")

    runs = [_as_ids(answer(_fixed_model, [0], 20, temperature=1.0, top_k=None,
                           rng=np.random.default_rng(7)), 20, len(FIXED_LOGITS))
            for _ in range(2)]
    if runs[0].tolist() != runs[1].tolist():
        raise ExerciseFailed(
            f"two calls with rng=np.random.default_rng(7) gave different tokens "
            f"({runs[0][:6].tolist()}... and {runs[1][:6].tolist()}...). Hint: draw with the "
            "generator you were given, rng.choice(...), not np.random.choice or random: then "
            "a seed reproduces a sample")

    # (3) top-k keeps the k largest logits and renormalises over them.
    expected = _softmax(FIXED_LOGITS[:3])
    freq = _frequencies(answer, n, 1.0, 3, seed=20)
    _compare_distribution("top_k=3", freq, np.concatenate([expected, np.zeros(3)]), n,
                          "keep the k largest logits, set the others to -inf (probability 0) "
                          "and renormalise")
    freq = _frequencies(answer, n, 1.0, 100, seed=21)
    _compare_distribution("top_k larger than the vocabulary", freq, _softmax(FIXED_LOGITS), n,
                          "a top_k of at least the vocabulary size keeps every token")

    # (4) A temperature <= 0 is refused with ValueError.
    for bad in (0.0, -1.0):
        try:
            with np.errstate(all="ignore"):
                answer(_fixed_model, [0], 3, temperature=bad, top_k=None,
                       rng=np.random.default_rng(0))
        except ValueError:
            continue
        except NotImplementedError:
            raise
        except Exception as err:  # noqa: BLE001 - report what was raised instead
            raise ExerciseFailed(f"temperature={bad} raised {type(err).__name__}, expected a "
                                 "ValueError that says the temperature must be > 0") from None
        raise ExerciseFailed(f"temperature={bad} was accepted: raise ValueError, since the "
                             "logits cannot be divided by a temperature <= 0")


# ---------------------------------------------------------------------------------------------
# 5.3 the weight mapping torch -> Keras

GATES = "ifgo"  # torch's row blocks; Keras' column blocks are i, f, c, o: the same order
GATE_NAMES = {"i": "input gate i", "f": "forget gate f", "g": "candidate g (Keras' c)",
              "o": "output gate o"}


def _mapping_hint(kernel, recurrent, bias, W_ih, W_hh, b_ih, b_hh) -> str:
    """Diagnose a wrong mapping from the weights alone (pass/fail is decided by the outputs)."""
    H = W_hh.shape[1]
    if np.allclose(kernel, W_ih.reshape(kernel.shape)) and not np.allclose(kernel, W_ih.T):
        return ("the kernel is torch's weight reshaped, not transposed: reshape keeps the memory "
                "order and scrambles rows and columns; use .T")
    if np.allclose(bias, b_ih) or np.allclose(bias, b_hh):
        return ("the bias is only one of torch's two biases: torch adds bias_ih and bias_hh "
                "inside every gate, so Keras' single bias is their sum")
    for name, got, W in (("kernel", kernel, W_ih), ("recurrent_kernel", recurrent, W_hh)):
        for g in range(4):
            block = got[:, g * H:(g + 1) * H]
            if np.allclose(block, W[g * H:(g + 1) * H].T):
                continue
            source = next((k for k in range(4) if np.allclose(block, W[k * H:(k + 1) * H].T)),
                          None)
            if source is not None:
                return (f"{name} columns {g * H}:{(g + 1) * H} (Keras' {GATE_NAMES[GATES[g]]}) "
                        f"hold torch's rows for the {GATE_NAMES[GATES[source]]}: both libraries "
                        "order the gate blocks i, f, g (Keras calls it c), o, so no reordering "
                        "is needed")
            return (f"{name} columns {g * H}:{(g + 1) * H} (Keras' {GATE_NAMES[GATES[g]]}) "
                    f"match none of torch's row blocks")
    if not np.allclose(bias, b_ih + b_hh):
        return ("kernel and recurrent_kernel are right but the bias is not: torch adds bias_ih "
                "and bias_hh once each, so Keras' single bias is bias_ih + bias_hh")
    return ""


@exercise("5.3", "the weight mapping between PyTorch and Keras")
def torch_lstm_to_keras(answer):
    import keras
    import torch

    D, H, B, T = 3, 4, 2, 6
    gen = torch.Generator().manual_seed(5)
    lstm = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        for p in lstm.parameters():  # larger than the default init, so every gate matters
            p.copy_(0.6 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    X = np.random.default_rng(6).standard_normal((B, T, D))
    with torch.no_grad():
        expected, (h_T, c_T) = lstm(torch.from_numpy(X))

    weights = answer(lstm)
    if not isinstance(weights, (list, tuple)) or len(weights) != 3:
        raise ExerciseFailed("return a list [kernel, recurrent_kernel, bias] of three arrays, "
                             f"got {type(weights).__name__}"
                             + (f" of length {len(weights)}"
                                if hasattr(weights, "__len__") else ""))
    kernel, recurrent, bias = (np.asarray(w.detach().numpy() if hasattr(w, "detach") else w,
                                          dtype=np.float64) for w in weights)
    if kernel.shape == (H, 4 * H) and recurrent.shape == (D, 4 * H):
        raise ExerciseFailed(
            f"kernel has shape {kernel.shape} and recurrent_kernel {recurrent.shape}: they are "
            "swapped. The kernel multiplies the input x_t (torch's weight_ih_l0), the recurrent "
            "kernel the previous hidden state h_(t-1) (torch's weight_hh_l0)")
    if bias.shape == (8 * H,):
        raise ExerciseFailed(
            f"bias has shape {bias.shape}, expected {(4 * H,)}: torch's two biases side by side. "
            "Hint: torch adds bias_ih and bias_hh inside every gate, so they only ever act as "
            "their sum, and Keras' single bias is that sum")
    for name, got, shape in (("kernel", kernel, (D, 4 * H)),
                             ("recurrent_kernel", recurrent, (H, 4 * H)),
                             ("bias", bias, (4 * H,))):
        if got.shape != shape:
            raise ExerciseFailed(
                f"{name} has shape {got.shape}, expected {shape} for an LSTM with {D} inputs and "
                f"{H} units. Hint: Keras multiplies a row vector by the kernel, x @ kernel, so "
                "its kernel is torch's weight transposed, and it has a single bias of 4 * "
                "units")

    layer = keras.layers.LSTM(H, return_sequences=True, return_state=True, dtype="float64")
    layer.build((None, None, D))
    layer.set_weights([kernel, recurrent, bias])
    got, got_h, got_c = (np.asarray(t) for t in layer(X))
    ok = np.allclose(got, expected.numpy(), rtol=1e-7, atol=1e-10)
    if not ok:
        params = {k: v.numpy() for k, v in lstm.state_dict().items()}
        hint = _mapping_hint(kernel, recurrent, bias, params["weight_ih_l0"],
                             params["weight_hh_l0"], params["bias_ih_l0"], params["bias_hh_l0"])
        expect_close("the output sequence of a Keras layer given your weights", got,
                     expected.numpy(), rtol=1e-7, atol=1e-10, hint=hint)
    expect_close("the final hidden state h_T", got_h, h_T[0].numpy(), rtol=1e-7, atol=1e-10)
    expect_close("the final cell state c_T", got_c, c_T[0].numpy(), rtol=1e-7, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# 5.4 debugging clinic: the loss of the source page

# Two batches of targets and logits (batch, steps, V): the logits hold values below 0 and above
# 1, as a model's do, so reading them as probabilities gives a visibly different number.
LOSS_CASES = [(np.array([[1, 0, 4], [2, 2, 3]]), 5, 11), (np.array([[6, 0], [3, 5], [1, 1],
                                                                     [0, 2]]), 7, 12)]
CLIP = 1e-7  # keras.backend.epsilon(): where Keras clips what it takes for probabilities


def _loss_inputs(Y, V, seed):
    logits = 2.0 * np.random.default_rng(seed).standard_normal(Y.shape + (V,))
    return Y.astype(np.int32), logits.astype(np.float32)


def _per_position(Y, logits, kind):
    """-log p(target) per position, (batch, steps), with p as the correct loss or a usual
    mistake computes it."""
    z = np.asarray(logits, dtype=np.float64)
    if kind == "as probabilities":  # what Keras does with from_logits=False
        p = np.clip(z, CLIP, 1 - CLIP)
        logp = np.log(p / p.sum(axis=-1, keepdims=True))
    elif kind == "softmax twice":
        logp = log_softmax(np.exp(log_softmax(z)))
    else:
        logp = log_softmax(z)
    return -np.take_along_axis(logp, Y[..., None].astype(np.int64), axis=-1)[..., 0]


REDUCTIONS = {
    "mean": lambda L: L.mean(),
    "sum": lambda L: L.sum(),
    "sum over steps": lambda L: L.sum(axis=1).mean(),
    "sum over the batch": lambda L: L.sum(axis=0).mean(),
}


def _loss_diagnosis(got, Y, logits):
    B, T = Y.shape
    for kind in ("as probabilities", "softmax twice", "correct"):
        L = _per_position(Y, logits, kind)
        for reduction, reduce in REDUCTIONS.items():
            if not np.isclose(got, reduce(L), rtol=1e-4, atol=1e-6):
                continue
            if kind == "as probabilities":
                return (
                    "that is the cross-entropy of the logits read as probabilities, which is "
                    "what Keras' loss assumes by default (from_logits=False): it clips every "
                    f"value into [{CLIP:g}, 1 - {CLIP:g}] and renormalises, so every logit above "
                    f"1 counts as 1, every logit below 0 as {CLIP:g}, and no gradient flows "
                    "through the clipped ones. Logits are unnormalised scores, any real numbers: "
                    "tell the loss that it receives logits (from_logits=True), and it takes the "
                    "softmax itself, in a numerically stable way. Fix this, then run the check "
                    "again")
            if kind == "softmax twice":
                return ("the softmax is taken twice: once by you, once by the loss "
                        "(from_logits=True takes it itself). Pass the logits straight to it")
            if reduction == "sum":
                return (f"that is {B * T} times the mean: the loss is summed over the {B} x {T} "
                        "positions of the batch (the divisor is not the number of positions). "
                        "A sum grows with the batch size and the window length, so it no longer "
                        "reads as nats per token and cannot be set beside the validation loss; "
                        "with plain SGD it would also scale every step by that number. Take the "
                        "mean over all positions")
            if reduction == "sum over steps":
                return (f"that is {T} times the mean: the loss is summed over the {T} steps of "
                        "each window and averaged over the windows. Take the mean over all "
                        "positions, batch and steps")
            if reduction == "sum over the batch":
                return (f"that is {B} times the mean: the loss is summed over the {B} windows "
                        "and averaged over the steps. Take the mean over all positions, batch "
                        "and steps")
    return ("expected the mean, over every (window, step) position, of -log softmax(logits)"
            "[target], in nats")


@exercise("5.4", "debugging clinic: the source page's loss")
def next_token_loss(answer):
    for Y, V, seed in LOSS_CASES:
        Y, logits = _loss_inputs(Y, V, seed)
        got = answer(Y, logits)
        try:
            value = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            raise ExerciseFailed(f"the loss should be a number (a scalar tensor), got "
                                 f"{type(got).__name__}") from None
        call = f"next_token_loss(Y, logits) with Y {Y.shape} and logits {logits.shape}"
        if value.size != 1:
            raise ExerciseFailed(
                f"{call} returned shape {value.shape}, expected one number. Hint: the loss is "
                "one number per batch, the mean over every (window, step) position")
        value = float(value.reshape(()))
        expected = float(REDUCTIONS["mean"](_per_position(Y, logits, "correct")))
        if not np.isfinite(value):
            raise ExerciseFailed(
                f"{call} returned {value}. Hint: is there a log of a logit that is 0 or "
                "negative? Logits are unnormalised scores, any real numbers, not probabilities")
        if not np.isclose(value, expected, rtol=1e-5, atol=1e-6):
            raise ExerciseFailed(f"{call} returned {value:.6g}, expected {expected:.6g}: "
                                 + _loss_diagnosis(value, Y, logits))

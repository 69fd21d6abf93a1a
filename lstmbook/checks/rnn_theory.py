"""Checks for lesson 1 (book/01_rnn_theory.md): recurrent networks and the LSTM, theory.

Every answer receives float64 torch tensors (fresh copies, so an answer that writes into its
inputs cannot spoil the reference). The oracles are independent of the lesson's code:

- 1.1 ``torch.nn.RNNCell`` with the weights copied in (torch keeps the transposes:
  ``weight_ih = W_xh.T``, ``weight_hh = W_hh.T``, and two biases that add up);
- 1.2 torch autograd on the same loss, ``L = sum_t <dH_t, H_t>``;
- 1.3 ``torch.nn.LSTMCell`` with the gate weights stacked in torch's order i, f, g, o;
- 1.4 torch autograd through the cell path ``C_t = f_t * C_{t-1} + u_t``.

When an answer differs, the check also compares it with a few typical mistakes (computed from
the same inputs) so that the hint can name the mistake that was made.
"""
import numpy as np

from . import ExerciseFailed, as_array, exercise, expect_close

TOL = dict(atol=1e-10, rtol=1e-8)
GRAD_RTOL = 1e-7  # relative error allowed for gradients, relative to the largest entry
GATES = "ifgo"    # torch stacks the gate weights in this order


def _torch():
    import torch
    return torch


def _randn(gen, *shape, scale=1.0):
    torch = _torch()
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * scale


def _shaped(value, name: str, shape: tuple, meaning: str, hint: str = "") -> np.ndarray:
    """The answer as a float64 array, or ExerciseFailed naming the expected shape."""
    got = as_array(value, name)
    if got.shape != tuple(shape):
        raise ExerciseFailed(f"{name} should have shape {meaning} = {tuple(shape)}, "
                             f"got {got.shape}." + (f" Hint: {hint}" if hint else ""))
    return got


def _same(got, expected) -> bool:
    got, expected = np.asarray(got, dtype=np.float64), as_array(expected, "reference")
    return got.shape == expected.shape and np.allclose(got, expected, **TOL)


def _diagnose(got, mistakes: dict, default: str) -> str:
    """The hint of the first typical mistake that ``got`` reproduces, else ``default``.

    ``mistakes`` maps a hint to the value (or tuple of values) that mistake would give.
    """
    for hint, wrong in mistakes.items():
        if isinstance(wrong, tuple):
            if len(got) == len(wrong) and all(_same(g, w) for g, w in zip(got, wrong)):
                return hint
        elif _same(got, wrong):
            return hint
    return default


# ------------------------------------------------------------------------------------ 1.1
def _rnn_problem(seed=101, batch=3, num_inputs=4, num_hiddens=5):
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    return dict(X=_randn(gen, batch, num_inputs),
                H_prev=_randn(gen, batch, num_hiddens, scale=0.8),
                W_xh=_randn(gen, num_inputs, num_hiddens, scale=0.5),
                W_hh=_randn(gen, num_hiddens, num_hiddens, scale=0.5),
                b_h=_randn(gen, num_hiddens, scale=0.5))


def _fresh(problem: dict) -> dict:
    return {k: v.clone() for k, v in problem.items()}


def _args(problem: dict, names: str) -> list:
    """Fresh copies of the inputs, in the order of the exercise's signature."""
    return [problem[k].clone() for k in names.split()]


@exercise("1.1", "an RNN step")
def rnn_step(answer):
    torch = _torch()
    p = _rnn_problem()
    (batch, num_inputs), num_hiddens = p["X"].shape, p["b_h"].shape[0]
    got = _shaped(answer(*_args(p, "X H_prev W_xh W_hh b_h")), "the new state H",
                  (batch, num_hiddens), "(batch, num_hiddens)",
                  hint="X @ W_xh has shape (batch, num_hiddens): the weights multiply from the "
                       "right, rows of W_xh index the inputs.")

    cell = torch.nn.RNNCell(num_inputs, num_hiddens, nonlinearity="tanh").double()
    with torch.no_grad():
        cell.weight_ih.copy_(p["W_xh"].T)
        cell.weight_hh.copy_(p["W_hh"].T)
        cell.bias_ih.copy_(p["b_h"])
        cell.bias_hh.zero_()
        expected = cell(p["X"], p["H_prev"])

    X, H, W_xh, W_hh, b_h = p["X"], p["H_prev"], p["W_xh"], p["W_hh"], p["b_h"]
    A = X @ W_xh + H @ W_hh + b_h
    mistakes = {
        "the state is squashed with a sigmoid; a vanilla RNN uses tanh.": torch.sigmoid(A),
        "the bias b_h is missing.": torch.tanh(X @ W_xh + H @ W_hh),
        "the recurrent term H_prev @ W_hh is missing: without it the step forgets the past.":
            torch.tanh(X @ W_xh + b_h),
        "tanh is missing: H_t = tanh(A_t), not the pre-activation A_t itself.": A,
        "W_hh is transposed: use H_prev @ W_hh (rows of W_hh index the previous state).":
            torch.tanh(X @ W_xh + H @ W_hh.T + b_h),
    }
    hint = _diagnose(got, mistakes, default="H_t = tanh(X_t @ W_xh + H_prev @ W_hh + b_h).")
    expect_close("the new state H", got, expected, hint=hint, **TOL)


# ------------------------------------------------------------------------------------ 1.2
GRAD_NAMES = ("W_xh", "W_hh", "b_h", "H0")
GRAD_MEANING = {"W_xh": "(num_inputs, num_hiddens)", "W_hh": "(num_hiddens, num_hiddens)",
                "b_h": "(num_hiddens,)", "H0": "(batch, num_hiddens)"}


BPTT_RECIPE = (
    "go backwards from t = T-1: dH_total = dH[t] + carry; dA = dH_total * (1 - H_t**2); "
    "W_xh += X_t.T @ dA; W_hh += H_{t-1}.T @ dA (the state BEFORE the step); "
    "b_h += dA.sum(0); carry = dA @ W_hh.T; finally H0 = carry.")
ONLY_WRONG = {  # when the other gradients are right, dA_t is right: the fault is in one line
    ("W_xh",): "dA_t is right (the other gradients agree); W_xh's gradient is the sum over the "
               "steps of X_t.T @ dA_t.",
    ("W_hh",): "dA_t is right (the other gradients agree); W_hh's gradient pairs dA_t with the "
               "state that ENTERED step t: the sum of H_{t-1}.T @ dA_t, with H0 at the first "
               "step (Hs[t] is the state after the step).",
    ("b_h",): "dA_t is right (the other gradients agree); b_h's gradient sums dA_t over the "
              "batch (axis 0) and over the steps.",
    ("H0",): "dA_t is right (the other gradients agree); H0's gradient is what the first step "
             "sends back, dA_1 @ W_hh.T: the carry after the loop.",
}


def _grad_tolerance(expected) -> dict:
    """Error / largest entry <= GRAD_RTOL."""
    return dict(atol=GRAD_RTOL * float(np.abs(as_array(expected, "reference")).max()),
                rtol=GRAD_RTOL)


def _close_grad(got, expected) -> bool:
    got, expected = np.asarray(got, dtype=np.float64), as_array(expected, "reference")
    return got.shape == expected.shape and np.allclose(got, expected, **_grad_tolerance(expected))


def _bptt_problem(seed=202, num_steps=6, batch=3, num_inputs=4, num_hiddens=5):
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    W_hh = _randn(gen, num_hiddens, num_hiddens)
    W_hh *= 0.9 / torch.linalg.eigvals(W_hh).abs().max()  # spectral radius 0.9: the past matters
    return dict(X=_randn(gen, num_steps, batch, num_inputs),
                H0=_randn(gen, batch, num_hiddens, scale=0.5),
                W_xh=_randn(gen, num_inputs, num_hiddens, scale=0.5), W_hh=W_hh,
                b_h=_randn(gen, num_hiddens, scale=0.3),
                dH=_randn(gen, num_steps, batch, num_hiddens))


def _bptt_autograd(X, H0, W_xh, W_hh, b_h, dH, mistake=None) -> dict:
    """Gradients of L = sum_t <dH_t, H_t> by torch autograd (the oracle when mistake=None).

    mistake="no_carry": the state is cut from the graph between steps, as when dH_t is not
    carried back through time; mistake="no_tanh": the backward pass skips tanh's 1 - H^2.
    """
    torch = _torch()
    leaves = {k: v.clone().requires_grad_(True) for k, v in
              dict(W_xh=W_xh, W_hh=W_hh, b_h=b_h, H0=H0).items()}
    H, loss = leaves["H0"], 0.0
    for t in range(X.shape[0]):
        H_in = H.detach() if (mistake == "no_carry" and t > 0) else H
        A = X[t] @ leaves["W_xh"] + H_in @ leaves["W_hh"] + leaves["b_h"]
        H = A + (torch.tanh(A) - A).detach() if mistake == "no_tanh" else torch.tanh(A)
        loss = loss + (dH[t] * H).sum()
    grads = torch.autograd.grad(loss, [leaves[k] for k in GRAD_NAMES])
    return dict(zip(GRAD_NAMES, grads))


@exercise("1.2", "backpropagation through time")
def rnn_bptt(answer):
    p = _bptt_problem()
    got = answer(*_args(p, "X H0 W_xh W_hh b_h dH"))
    if not isinstance(got, dict):
        raise ExerciseFailed(f"rnn_bptt should return a dict with the keys {list(GRAD_NAMES)}, "
                             f"got a {type(got).__name__}.")
    missing = [k for k in GRAD_NAMES if k not in got]
    if missing:
        raise ExerciseFailed(f"the returned dict lacks the key(s) {missing}; it should hold the "
                             f"gradients {list(GRAD_NAMES)}.")
    shapes = dict(W_xh=p["W_xh"].shape, W_hh=p["W_hh"].shape, b_h=p["b_h"].shape,
                  H0=p["H0"].shape)
    got = {k: _shaped(got[k], f"the gradient {k}", tuple(shapes[k]), GRAD_MEANING[k],
                      hint="a gradient has the shape of what it differentiates"
                           + ("; sum dA over time and over the batch." if k == "b_h" else "."))
           for k in GRAD_NAMES}

    expected = _bptt_autograd(**p)
    ordered = tuple(got[k] for k in GRAD_NAMES)
    mistakes = {
        "dH_t is not carried back through time: the gradient reaching H_t is dH_t plus what "
        "flows back from step t+1, (dA_{t+1} @ W_hh.T).":
            tuple(_bptt_autograd(**p, mistake="no_carry").values()),
        "the factor 1 - H_t**2 (the derivative of tanh) is missing: dA_t = (gradient reaching "
        "H_t) * (1 - H_t**2).": tuple(_bptt_autograd(**p, mistake="no_tanh").values()),
    }
    wrong = [k for k in GRAD_NAMES if not _close_grad(got[k], expected[k])]
    hint = _diagnose(ordered, mistakes, default=ONLY_WRONG.get(tuple(wrong), BPTT_RECIPE))
    for k in GRAD_NAMES:  # a relative tolerance: error / largest entry <= 1e-7
        expect_close(f"the gradient {k}", got[k], expected[k], hint=hint,
                     **_grad_tolerance(expected[k]))


# ------------------------------------------------------------------------------------ 1.3
def _lstm_problem(seed=303, batch=3, num_inputs=4, num_hiddens=5):
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for g in GATES:
        params[f"W_x{g}"] = _randn(gen, num_inputs, num_hiddens, scale=0.6)
        params[f"W_h{g}"] = _randn(gen, num_hiddens, num_hiddens, scale=0.6)
        params[f"b_{g}"] = _randn(gen, num_hiddens, scale=0.5)
    return dict(X=_randn(gen, batch, num_inputs),
                H_prev=_randn(gen, batch, num_hiddens, scale=0.8),
                C_prev=_randn(gen, batch, num_hiddens), params=params)


def _lstm_oracle(X, H_prev, C_prev, params, order=GATES):
    """torch.nn.LSTMCell with our weights stacked in ``order`` (torch reads them as i, f, g, o)."""
    torch = _torch()
    num_inputs, num_hiddens = params["W_xi"].shape
    cell = torch.nn.LSTMCell(num_inputs, num_hiddens).double()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.cat([params[f"W_x{g}"].T for g in order]))
        cell.weight_hh.copy_(torch.cat([params[f"W_h{g}"].T for g in order]))
        cell.bias_ih.copy_(torch.cat([params[f"b_{g}"] for g in order]))
        cell.bias_hh.zero_()
        return cell(X, (H_prev, C_prev))


def _lstm_mistakes(X, H_prev, C_prev, params):
    """What typical mistakes give, as (H, C) pairs keyed by their hint."""
    torch = _torch()
    A = {g: X @ params[f"W_x{g}"] + H_prev @ params[f"W_h{g}"] + params[f"b_{g}"] for g in GATES}
    i, f, o = torch.sigmoid(A["i"]), torch.sigmoid(A["f"]), torch.sigmoid(A["o"])
    g = torch.tanh(A["g"])
    C = f * C_prev + i * g
    C_sig = f * C_prev + i * torch.sigmoid(A["g"])
    C_no_forget = C_prev + i * g
    C_no_prev = i * g
    H_ref, C_ref = _lstm_oracle(X, H_prev, C_prev, params)
    H_swap, C_swap = _lstm_oracle(X, H_prev, C_prev, params, order="figo")
    return {
        "(H, C) are returned in the wrong order: return H first, then C.": (C_ref, H_ref),
        "H = o * tanh(C): the new cell state goes through tanh before the output gate.":
            (o * C, C),
        "H uses the old cell state: compute C first, then H = o * tanh(C) with the NEW C.":
            (o * torch.tanh(C_prev), C),
        "the input and forget gates are swapped: C = f * C_prev + i * g.": (H_swap, C_swap),
        "the candidate g takes tanh, not a sigmoid: g = tanh(X @ W_xg + H_prev @ W_hg + b_g).":
            (o * torch.tanh(C_sig), C_sig),
        "the forget gate is missing: C = f * C_prev + i * g.":
            (o * torch.tanh(C_no_forget), C_no_forget),
        "the old cell state is missing: C = f * C_prev + i * g.":
            (o * torch.tanh(C_no_prev), C_no_prev),
    }


@exercise("1.3", "an LSTM cell")
def lstm_cell(answer):
    p = _lstm_problem()
    batch, num_hiddens = p["H_prev"].shape
    result = answer(p["X"].clone(), p["H_prev"].clone(), p["C_prev"].clone(),
                    _fresh(p["params"]))
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = type(result).__name__ + (f" of length {len(result)}"
                                       if isinstance(result, (tuple, list)) else "")
        raise ExerciseFailed(f"lstm_cell should return a pair (H, C), got a {got}.")
    H, C = (_shaped(v, name, (batch, num_hiddens), "(batch, num_hiddens)")
            for v, name in zip(result, ("H", "C")))

    H_ref, C_ref = _lstm_oracle(**p)
    hint = _diagnose((H, C), _lstm_mistakes(**p), default=(
        "i, f, o = sigmoid(X @ W_x* + H_prev @ W_h* + b_*), g = tanh(...); "
        "C = f * C_prev + i * g; H = o * tanh(C)."))
    expect_close("the new cell state C", C, C_ref, hint=hint, **TOL)
    expect_close("the new hidden state H", H, H_ref, hint=hint, **TOL)


# ------------------------------------------------------------------------------------ 1.4
def _forget_gates(seed=404, num_steps=7, batch=2, num_hiddens=3):
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(num_steps, batch, num_hiddens, generator=gen, dtype=torch.float64) * 0.8
            + 0.2)


def _cell_path_autograd(F):
    """dC_T/dC_k for k = 0..T-1 along C_t = f_t * C_{t-1} + u_t, by autograd.

    Every unit evolves on its own, so the gradient of sum(C_T) with respect to C_k is the
    diagonal of the Jacobian dC_T/dC_k.
    """
    torch = _torch()
    gen = torch.Generator().manual_seed(5)
    C = torch.zeros(F.shape[1:], dtype=torch.float64, requires_grad=True)
    states = [C]
    for t in range(F.shape[0]):
        C = F[t] * C + torch.randn(F.shape[1:], generator=gen, dtype=torch.float64)
        C.retain_grad()
        states.append(C)
    C.sum().backward()
    return torch.stack([s.grad for s in states[:-1]])


@exercise("1.4", "the gradient along the cell path")
def cell_gradient_through_time(answer):
    torch = _torch()
    F = _forget_gates()
    got = _shaped(answer(F.clone()), "the result G", tuple(F.shape),
                  "(num_steps, batch, num_hiddens)",
                  hint="return one entry per k = 0, ..., T-1: G[k] = dC_T/dC_k.")
    expected = _cell_path_autograd(F)
    ones = torch.ones_like(F[:1])
    mistakes = {
        "the product runs from the wrong end: G[k] multiplies the gates AFTER step k, "
        "f_{k+1} ... f_T, i.e. F[k:] (try a cumulative product of the flipped F).":
            torch.cumprod(F, 0),
        "off by one: G[k] = F[k] * F[k+1] * ... * F[T-1]; the last entry G[T-1] is F[T-1] "
        "(one gate), not 1.": torch.cat([torch.flip(torch.cumprod(torch.flip(F[1:], [0]), 0),
                                                     [0]), ones]),
        "the gates are added: along the cell path the derivative is a product.":
            torch.flip(torch.cumsum(torch.flip(F, [0]), 0), [0]),
    }
    hint = _diagnose(got, mistakes,
                     default="G[k] = F[k] * F[k+1] * ... * F[T-1] (elementwise).")
    expect_close("the result G", got, expected, hint=hint, **TOL)

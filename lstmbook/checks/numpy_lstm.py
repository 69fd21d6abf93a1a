"""Checks for lesson 2 (book/02_numpy_lstm.md): an LSTM by hand in NumPy.

The oracles are independent of the lesson's code: ``torch.nn.LSTMCell`` / ``torch.nn.LSTM``
in float64 with the same weights copied in (forward values and autograd gradients),
``torch.nn.utils.clip_grad_norm_``, ``torch.softmax`` and values worked out by hand.
The lesson's layout: ``W`` has shape (num_inputs + num_hiddens, 4 * num_hiddens) with the gate
columns in the order i, f, g, o; torch keeps the transposes, ``weight_ih`` (4h, num_inputs) and
``weight_hh`` (4h, h), plus two biases that add up (we put ours in ``bias_ih``).
"""
import itertools
import warnings

import numpy as np

from . import ExerciseFailed, as_array, exercise, expect_close

GATES = ("I", "F", "G", "O")
GATE_NAMES = {"I": "input gate I", "F": "forget gate F", "G": "candidate G", "O": "output gate O"}
TOL = dict(atol=1e-10, rtol=1e-8)


def _torch():
    import torch
    return torch


def _problem(seed, batch=4, num_inputs=3, num_hiddens=5, num_steps=None):
    """Random float64 inputs, state and weights, scaled so that every gate varies."""
    rng = np.random.default_rng(seed)
    shape = (batch, num_inputs) if num_steps is None else (batch, num_steps, num_inputs)
    return dict(
        X=rng.standard_normal(shape),
        H=rng.standard_normal((batch, num_hiddens)) * 0.8,
        C=rng.standard_normal((batch, num_hiddens)),
        W=rng.standard_normal((num_inputs + num_hiddens, 4 * num_hiddens)) * 0.6,
        b=rng.standard_normal(4 * num_hiddens) * 0.5,
        rng=rng)


def _copy_into(module, W, b, num_inputs, suffix=""):
    """Copy our (W, b) into a torch LSTM module's weight_ih/weight_hh/bias_ih/bias_hh."""
    torch = _torch()
    with torch.no_grad():
        getattr(module, "weight_ih" + suffix).copy_(
            torch.from_numpy(np.ascontiguousarray(W[:num_inputs].T)))
        getattr(module, "weight_hh" + suffix).copy_(
            torch.from_numpy(np.ascontiguousarray(W[num_inputs:].T)))
        getattr(module, "bias_ih" + suffix).copy_(torch.from_numpy(b))
        getattr(module, "bias_hh" + suffix).zero_()


def _oracle_cache(X, H, C, W, b):
    """The cache layout of the lesson, (XH, C_prev, I, F, G, O, tanh_C), computed with torch,
    plus the new (H, C)."""
    torch = _torch()
    t = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in
         dict(X=X, H=H, C=C, W=W, b=b).items()}
    h = H.shape[1]
    XH = torch.cat([t["X"], t["H"]], dim=1)
    A = XH @ t["W"] + t["b"]
    i, f, g, o = (A[:, k * h:(k + 1) * h] for k in range(4))
    I, F, G, O = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    C_new = F * t["C"] + I * G
    tanh_C = torch.tanh(C_new)
    cache = tuple(x.numpy() for x in (XH, t["C"], I, F, G, O, tanh_C))
    return cache, (O * tanh_C).numpy(), C_new.numpy()


def _unpack(result, n, what):
    if not isinstance(result, (tuple, list)) or len(result) != n:
        got = f"a {type(result).__name__}" + (f" of length {len(result)}"
                                               if isinstance(result, (tuple, list)) else "")
        raise ExerciseFailed(f"the function should return {what}, got {got}")
    return result


def _close(got, expected):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return got.shape == expected.shape and np.allclose(got, expected, **TOL)


# ---------------------------------------------------------------------------------- 2.1
@exercise("2.1", "one LSTM step, four gates in one product")
def gate_forward(answer):
    p = _problem(seed=21)
    X, H, C, W, b = p["X"], p["H"], p["C"], p["W"], p["b"]
    torch = _torch()
    cell = torch.nn.LSTMCell(3, 5, dtype=torch.float64)
    _copy_into(cell, W, b, num_inputs=3)
    with torch.no_grad():
        H_ref, C_ref = (x.numpy() for x in cell(torch.from_numpy(X), (torch.from_numpy(H),
                                                                      torch.from_numpy(C))))
    ref_cache, _, _ = _oracle_cache(X, H, C, W, b)

    H_got, C_got, cache = _unpack(answer(X.copy(), H.copy(), C.copy(), W.copy(), b.copy()), 3,
                                  "(H, C, cache)")
    cache = _unpack(cache, 7, "a cache (XH, C_prev, I, F, G, O, tanh_C)")
    gates_got = dict(zip(GATES, cache[2:6]))
    gates_ref = dict(zip(GATES, ref_cache[2:6]))
    if not _close(cache[0], ref_cache[0]):
        expect_close("XH (in the cache)", cache[0], ref_cache[0], **TOL,
                     hint="XH = np.concatenate([X, H_prev], axis=1): X first, along the "
                          "feature axis")
    for name in GATES:
        if _close(gates_got[name], gates_ref[name]):
            continue
        others = [o for o in GATES if o != name and _close(gates_got[name], gates_ref[o])]
        if others:
            raise ExerciseFailed(
                f"your {GATE_NAMES[name]} equals the reference's {GATE_NAMES[others[0]]}. "
                "Hint: the columns of W (and A) are ordered [i | f | g | o], num_hiddens "
                "columns each, the order torch.nn.LSTM uses")
        activation = "tanh" if name == "G" else "the sigmoid"
        k = GATES.index(name)
        expect_close(GATE_NAMES[name], gates_got[name], gates_ref[name], **TOL,
                     hint=f"{name} = {activation} of A[:, {k}*h:{k + 1}*h] with A = XH @ W + b "
                          "(bias included); only G uses tanh")
    expect_close("C (the new cell)", C_got, C_ref, **TOL,
                 hint="C = F * C_prev + I * G: the forget gate scales the old cell")
    expect_close("H (the new hidden state)", H_got, H_ref, **TOL,
                 hint="H = O * tanh(C), with the new cell C")
    expect_close("tanh_C (in the cache)", cache[6], ref_cache[6], **TOL,
                 hint="tanh_C = np.tanh(C) of the new cell")


# ---------------------------------------------------------------------------------- 2.2
DA_HINTS = {
    "I": "dA_i = dC_total * G * I * (1 - I)",
    "F": "dA_f = dC_total * C_prev * F * (1 - F)",
    "G": "dA_g = dC_total * I * (1 - G**2): the derivative of tanh is 1 - tanh**2, not 1 - tanh",
    "O": "dA_o = dH * tanh_C * O * (1 - O)",
}
DC_TOTAL_HINT = ("dC_total = dC + dH * O * (1 - tanh_C**2): the cell receives the gradient from "
                 "the next step AND through H = O * tanh(C), and the derivative of tanh is "
                 "1 - tanh**2, not 1 - tanh")


def _torch_step_grads(X, H, C, W, b, dH, dC):
    """Autograd of sum(dH * H_t) + sum(dC * C_t) through torch.nn.LSTMCell."""
    torch = _torch()
    num_inputs = X.shape[1]
    cell = torch.nn.LSTMCell(num_inputs, H.shape[1], dtype=torch.float64)
    _copy_into(cell, W, b, num_inputs)
    Xt, Ht, Ct = (torch.from_numpy(x.copy()).requires_grad_() for x in (X, H, C))
    H1, C1 = cell(Xt, (Ht, Ct))
    ((H1 * torch.from_numpy(dH)).sum() + (C1 * torch.from_numpy(dC)).sum()).backward()
    dW = np.concatenate([cell.weight_ih.grad.numpy().T, cell.weight_hh.grad.numpy().T])
    return Xt.grad.numpy(), Ht.grad.numpy(), Ct.grad.numpy(), dW, cell.bias_ih.grad.numpy()


def _blocks_of(name, got, ref, h):
    """For each block k of ``got``, the blocks of ``ref`` it equals (columns k*h:(k+1)*h)."""
    got = as_array(got, name)
    if got.shape != ref.shape:
        expect_close(name, got, ref)
    block = lambda a, k: a[..., k * h:(k + 1) * h]  # noqa: E731
    return got, [[j for j in range(4) if np.allclose(block(got, k), block(ref, j), **TOL)]
                 for k in range(4)]


def _gate_list(gates) -> str:
    names = [GATE_NAMES[g] for g in gates]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _diagnose_dA(db, db_ref, h):
    """dA seen through db = dA.sum(axis=0): a block order, or the gates whose blocks differ."""
    got, matches = _blocks_of("db", db, db_ref, h)
    wrong = [g for k, g in enumerate(GATES) if k not in matches[k]]
    if not wrong:
        return
    moved = {k: [j for j in m if j != k] for k, m in enumerate(matches)}
    if any(moved.values()):
        holds = [f"its {GATE_NAMES[GATES[k]]} block (columns {k}*h:{k + 1}*h) holds the "
                 f"{GATE_NAMES[GATES[js[0]]]}'s gradient" for k, js in moved.items() if js]
        if all(len(m) == 1 for m in matches) and sorted(m[0] for m in matches) == [0, 1, 2, 3]:
            order = ", ".join(GATES[m[0]].lower() for m in matches)
            lead = f"dA (seen through db) has the blocks of [{order}] in this order"
        else:
            lead = "dA (seen through db) has blocks in the wrong places"
        raise ExerciseFailed(f"{lead}: {'; '.join(holds)}. Hint: W's columns, and so A's and "
                             "dA's, are ordered [i | f | g | o]: concatenate dA_i, dA_f, dA_g, "
                             "dA_o in that order")
    if len(wrong) >= 3 and "O" not in wrong:
        hint = DC_TOTAL_HINT
    elif len(wrong) >= 3:
        hint = ("all gates differ: check dA's column order [i | f | g | o] and the formulas "
                + "; ".join(DA_HINTS[g] for g in wrong))
    else:
        hint = "; ".join(DA_HINTS[g] for g in wrong)
    err = max(np.abs(got[..., k * h:(k + 1) * h] - db_ref[..., k * h:(k + 1) * h]).max()
              for k, g in enumerate(GATES) if g in wrong)
    raise ExerciseFailed(f"dA (seen through db = dA.sum(axis=0)) differs in the block"
                         f"{'s' if len(wrong) > 1 else ''} of the {_gate_list(wrong)} "
                         f"(max abs error {err:.3g}). Hint: {hint}")


@exercise("2.2", "backward through one step")
def cell_backward(answer):
    p = _problem(seed=22)
    X, H, C, W, b, rng = p["X"], p["H"], p["C"], p["W"], p["b"], p["rng"]
    dH, dC = rng.standard_normal(H.shape), rng.standard_normal(C.shape)
    cache, _, _ = _oracle_cache(X, H, C, W, b)
    dX_ref, dH_ref, dC_ref, dW_ref, db_ref = _torch_step_grads(X, H, C, W, b, dH, dC)
    h = H.shape[1]

    result = answer(dH.copy(), dC.copy(), tuple(c.copy() for c in cache), W.copy())
    dX, dH_prev, dC_prev, dW, db = _unpack(result, 5, "(dX, dH_prev, dC_prev, dW, db)")
    dW = as_array(dW, "dW")
    if dW.shape != dW_ref.shape:
        expect_close("dW", dW, dW_ref, hint="dW = XH.T @ dA has the shape of W")
    dW_right = np.allclose(dW, dW_ref, **TOL)
    if dW_right and not _close(db, db_ref):     # dA is right (dW = XH.T @ dA agrees)
        expect_close("db", db, db_ref, **TOL,
                     hint="dW agrees, so dA is right: db = dA.sum(axis=0), the sum over the "
                          "batch, as the bias is added to every row")
    _diagnose_dA(db, db_ref, h)
    if not dW_right:
        _, matches = _blocks_of("dW", dW, dW_ref, h)
        wrong = [g for k, g in enumerate(GATES) if k not in matches[k]]
        expect_close("dW", dW, dW_ref, **TOL,
                     hint=f"dA (seen through db) is right, but dW differs in the columns of the "
                          f"{_gate_list(wrong or GATES)}: dW = XH.T @ dA, with XH = [X, H_prev] "
                          "from the cache (X first)")
    expect_close("dC_prev", dC_prev, dC_ref, **TOL,
                 hint="dC_prev = dC_total * F, the cell-state path, where " + DC_TOTAL_HINT)
    expect_close("dX", dX, dX_ref, **TOL,
                 hint="dXH = dA @ W.T; dX is its first num_inputs columns")
    expect_close("dH_prev", dH_prev, dH_ref, **TOL,
                 hint="dXH = dA @ W.T; dH_prev is its last num_hiddens columns")


# ---------------------------------------------------------------------------------- 2.3
def _torch_layer(X, H0, C0, W, b, dHs):
    """Outputs and autograd gradients of sum(dHs * Hs) through a one-layer torch.nn.LSTM."""
    torch = _torch()
    num_inputs, h = X.shape[2], H0.shape[1]
    lstm = torch.nn.LSTM(num_inputs, h, batch_first=True, dtype=torch.float64)
    _copy_into(lstm, W, b, num_inputs, suffix="_l0")
    Xt = torch.from_numpy(X.copy()).requires_grad_()
    H0t = torch.from_numpy(H0[None].copy()).requires_grad_()
    C0t = torch.from_numpy(C0[None].copy()).requires_grad_()
    out, _ = lstm(Xt, (H0t, C0t))
    (out * torch.from_numpy(dHs)).sum().backward()
    dW = np.concatenate([lstm.weight_ih_l0.grad.numpy().T, lstm.weight_hh_l0.grad.numpy().T])
    return (out.detach().numpy(), Xt.grad.numpy(), H0t.grad.numpy()[0], C0t.grad.numpy()[0], dW,
            lstm.bias_ih_l0.grad.numpy())


def _forward_in_time(caches, W, b, dHs):
    """dX of the usual slip: the loop over the steps run forward, t = 0, 1, ..., each step fed
    dHs[:, t] plus the dH, dC of the step BEFORE it (each step differentiated by torch)."""
    h = dHs.shape[2]
    dH, dC, dX = np.zeros_like(dHs[:, 0]), np.zeros_like(dHs[:, 0]), []
    for t, cache in enumerate(caches):
        XH, C_prev = cache[0], cache[1]
        dX_t, dH, dC, _, _ = _torch_step_grads(XH[:, :-h], XH[:, -h:], C_prev, W, b,
                                               dHs[:, t] + dH, dC)
        dX.append(dX_t)
    return np.stack(dX, axis=1)


@exercise("2.3", "backpropagation through time")
def backward_through_time(answer):
    p = _problem(seed=23, batch=3, num_inputs=4, num_hiddens=4, num_steps=6)
    X, H0, C0, W, b, rng = p["X"], p["H"], p["C"], p["W"], p["b"], p["rng"]
    dHs = rng.standard_normal((3, 6, 4))
    caches, H, C = [], H0, C0
    for t in range(X.shape[1]):
        cache, H, C = _oracle_cache(X[:, t], H, C, W, b)
        caches.append(cache)
    _, dX_ref, dH0_ref, dC0_ref, dW_ref, db_ref = _torch_layer(X, H0, C0, W, b, dHs)

    result = answer(dHs.copy(), [tuple(c.copy() for c in cache) for cache in caches], W.copy())
    dX, dH0, dC0, dW, db = _unpack(result, 5, "(dX, dH0, dC0, dW, db)")
    dX = as_array(dX, "dX")
    if dX.shape != dX_ref.shape:
        expect_close("dX", dX, dX_ref)
    wrong_steps = [t for t in range(6) if not np.allclose(dX[:, t], dX_ref[:, t], **TOL)]
    if wrong_steps:
        if _close(dX, _forward_in_time(caches, W, b, dHs)):
            raise ExerciseFailed(
                "dX differs at every step, and it is what a loop run FORWARD in time gives "
                "(t = 0, 1, ..., 5, carrying dH and dC from step t to step t+1). Hint: the "
                "gradient flows back against time: only the last step (t = 5) can be done "
                "first, since nothing comes after it; then step 4, which needs what step 5 "
                "sent back, and so on down to t = 0: for t in reversed(range(num_steps))")
        if wrong_steps == list(range(5)):
            hint = ("only the last step (t = 5) matches: it needs nothing from the future. The "
                    "earlier steps miss what step t+1 sends back: pass dHs[:, t] + dH and the "
                    "carried dC to lstm_step_backward, and keep the dH, dC it returns for step "
                    "t-1 (walking from the last step to the first)")
        elif 5 in wrong_steps:
            hint = ("even the last step (t = 5) differs, and it needs only dHs[:, 5] and zeros "
                    "for dH and dC: start from zeros at the last step and walk back (if check "
                    "2.2 fails, fix it first)")
        else:
            hint = ("step t's lstm_step_backward needs dHs[:, t] + dH and dC carried back from "
                    "step t+1, starting from zeros at the last step")
        expect_close(f"dX at step {wrong_steps[-1]} (of 0..5)", dX[:, wrong_steps[-1]],
                     dX_ref[:, wrong_steps[-1]], **TOL, hint=hint)
    expect_close("dW", dW, dW_ref, **TOL,
                 hint="the weights are shared by all steps: dW is the SUM of every step's dW_t")
    expect_close("db", db, db_ref, **TOL, hint="db is the sum of every step's db_t")
    expect_close("dH0", dH0, dH0_ref, **TOL,
                 hint="return the dH that the first step (t = 0) sends back")
    expect_close("dC0", dC0, dC0_ref, **TOL,
                 hint="return the dC that the first step (t = 0) sends back")


# ---------------------------------------------------------------------------------- 2.4
def _torch_clip(grads, max_norm):
    torch = _torch()
    tensors = [torch.from_numpy(g.copy()) for g in grads]
    for t in tensors:
        t.grad = t.clone()
    norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    return [t.grad.numpy() for t in tensors], float(norm)


@exercise("2.4", "clipping by global norm")
def clipping(answer):
    a = np.zeros((3, 4))
    a[0, 0], a[2, 1] = 3.0, -4.0                       # norm 5
    b = np.full(4, 6.0)                                # norm 12; together 13
    hint_inplace = ("scale the arrays in place (`g *= scale` inside the loop): `g = g * scale` "
                    "only rebinds a local name and leaves the caller's arrays unchanged")

    # 1. Above the threshold: every array scaled by the same factor, in place.
    for max_norm in (1.0, 6.5):
        grads = [a.copy(), b.copy()]
        expected, norm_ref = _torch_clip(grads, max_norm)
        norm = answer(grads, max_norm)
        if norm is None or not np.isclose(float(norm), norm_ref, rtol=1e-9):
            raise ExerciseFailed(
                f"for gradients of global norm {norm_ref:g} the function returned {norm!r}. "
                "Hint: return the global norm sqrt(sum of g**2 over ALL arrays) measured before "
                "clipping")
        if all(np.array_equal(g, g0) for g, g0 in zip(grads, (a, b))):
            raise ExerciseFailed(f"with max_norm={max_norm} and a norm of 13 the arrays were not "
                                 f"changed. Hint: {hint_inplace}")
        for name, g, e in zip(("grads[0] (norm 5)", "grads[1] (norm 12)"), grads, expected):
            expect_close(f"{name} after clipping to max_norm={max_norm}", g, e, atol=1e-12,
                         rtol=1e-5,
                         hint="multiply EVERY array by the same factor max_norm / (norm + 1e-6), "
                              "with the global norm of all arrays together: clipping each entry "
                              "(np.clip) or each array on its own changes the direction")
    # 2. Below the threshold: nothing changes.
    grads = [a.copy(), b.copy()]
    norm = answer(grads, 20.0)
    if not np.isclose(float(norm), 13.0, rtol=1e-9):
        raise ExerciseFailed(f"with a norm of 13 below max_norm=20 the function returned "
                             f"{norm!r}, expected 13. Hint: return the norm even when nothing "
                             "is clipped")
    for g, g0 in zip(grads, (a, b)):
        if not np.array_equal(g, g0):
            raise ExerciseFailed("with a global norm of 13 and max_norm=20 the gradients changed. "
                                 "Hint: scale only when the norm exceeds max_norm")


# ---------------------------------------------------------------------------------- 2.5
def _chunk_starts(X, stream_len):
    """Row by row, where a chunk of ids = arange(...) starts: (stream, position in it)."""
    return [(int(x) // stream_len, int(x) % stream_len) for x in X[:, 0]]


@exercise("2.5", "debugging clinic: the chunks of the text")
def bptt_chunks(answer):
    """Fixed values: on ids = 0, 1, 2, ... every id is its own position in the text."""
    batch_size, num_steps, stream_len = 3, 8, 40
    ids = np.arange(batch_size * stream_len + 1)
    expected_count = stream_len // num_steps                # 5 chunks of 8 in a stream of 40
    chunks = list(itertools.islice(answer(ids.copy(), batch_size, num_steps),
                                   expected_count + 3))
    for k, chunk in enumerate(chunks):
        X, Y = (as_array(a, f"{name} of chunk {k}")
                for a, name in zip(_unpack(chunk, 2, f"chunk {k} as a pair (X, Y)"), "XY"))
        for name, a in (("X", X), ("Y", Y)):
            if a.shape != (batch_size, num_steps):
                raise ExerciseFailed(f"{name} of chunk {k} has shape {a.shape}, expected "
                                     f"(batch_size, num_steps) = {(batch_size, num_steps)}")
        if not np.array_equal(Y, X + 1):
            raise ExerciseFailed(f"Y of chunk {k} is not X shifted by one character: for X[0] "
                                 f"= {X[0].astype(int).tolist()} Y[0] should be the next "
                                 f"characters, {(X[0] + 1).astype(int).tolist()}, got "
                                 f"{Y[0].astype(int).tolist()}")
        if not np.array_equal(X, X[:, :1] + np.arange(num_steps)):
            raise ExerciseFailed(f"the rows of X in chunk {k} are not runs of consecutive "
                                 f"characters: X[0] = {X[0].astype(int).tolist()}")
        starts = _chunk_starts(X, stream_len)
        if starts != [(r, starts[0][1]) for r in range(batch_size)]:
            raise ExerciseFailed(
                f"the rows of chunk {k} start at characters {X[:, 0].astype(int).tolist()}; "
                f"with {len(ids)} ids cut into {batch_size} streams of {stream_len}, row r "
                f"reads stream r, which starts at character r * {stream_len}, so they should "
                f"start at {[r * stream_len + k * num_steps for r in range(batch_size)]}")
        position, expected = starts[0][1], k * num_steps
        if position != expected:
            moved = position - (k - 1) * num_steps
            twice = moved == 2 * num_steps
            why = (f" From one chunk to the next the position moved on by {moved} = 2 * "
                   "num_steps: it is advanced twice per chunk, and every other chunk of the text "
                   "is never read. Hint: find every line that moves the position on." if twice else
                   f" From one chunk to the next the position moved on by {moved}, not "
                   f"num_steps = {num_steps}. Hint: move the position on by num_steps, once per "
                   "chunk.")
            raise ExerciseFailed(
                f"chunk {k} of row 0 starts at character {position}, but chunk {k - 1} of that "
                f"row ended at character {expected - 1}: chunk {k} must start at {expected}, "
                f"where chunk {k - 1} stopped, or the state carried out of chunk {k - 1} meets "
                f"text that does not follow the text it has read.{why}")
    if len(chunks) != expected_count:
        raise ExerciseFailed(
            f"with streams of {stream_len} characters and num_steps = {num_steps} the function "
            f"yielded {len(chunks)}{'+' if len(chunks) > expected_count else ''} chunks, "
            f"expected {expected_count}: every full chunk of {num_steps} inside a stream, and "
            "none that runs past its end")


# ---------------------------------------------------------------------------------- 2.6
TEMPERATURE_WORDS = ("> 0", ">0", "positive", "greater than 0", "greater than zero")


@exercise("2.6", "softmax with temperature")
def temperature(answer):
    logits = np.log([1.0, 2.0, 4.0])
    cases = [(1.0, np.array([1, 2, 4]) / 7),
             (0.5, np.array([1, 4, 16]) / 21),
             (2.0, np.array([1, np.sqrt(2), 2]) / (3 + np.sqrt(2)))]
    for T, expected in cases:
        p = as_array(answer(logits.copy(), T), f"probabilities at temperature {T}")
        if p.shape == expected.shape and np.all(np.isfinite(p)) and not np.isclose(p.sum(), 1.0):
            raise ExerciseFailed(
                f"at temperature {T} the probabilities sum to {p.sum():.4g}, not 1. Hint: divide "
                "the logits by the temperature BEFORE the softmax, then normalise")
        expect_close(f"probabilities for logits log([1, 2, 4]) at temperature {T}", p, expected,
                     atol=1e-12, rtol=1e-9,
                     hint="p = softmax(logits / temperature): dividing by T < 1 sharpens the "
                          "distribution, T > 1 flattens it")
    rng = np.random.default_rng(25)
    batch = rng.standard_normal((2, 3, 5)) * 3
    torch = _torch()
    for T in (0.7, 1.3):
        expected = torch.softmax(torch.from_numpy(batch) / T, dim=-1).numpy()
        expect_close(f"probabilities of a (2, 3, 5) batch of logits at temperature {T}",
                     answer(batch.copy(), T), expected, atol=1e-12, rtol=1e-9,
                     hint="normalise over the LAST axis only: .max(axis=-1, keepdims=True) and "
                          ".sum(axis=-1, keepdims=True)")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        big = np.array([1000.0, 999.0, 0.0])
        expect_close("probabilities for logits [1000, 999, 0]", answer(big.copy(), 1.0),
                     torch.softmax(torch.from_numpy(big), dim=-1).numpy(), atol=1e-12, rtol=1e-9,
                     hint="subtract the largest logit before np.exp (it cancels in the ratio) so "
                          "that exp(1000) cannot overflow to inf")
        for T in (0.0, -1.0):
            try:
                answer(logits.copy(), T)
            except ValueError as err:
                message = str(err).lower()
                if "temperature" not in message or not any(w in message
                                                            for w in TEMPERATURE_WORDS):
                    raise ExerciseFailed(
                        f"temperature={T} raised ValueError({str(err)!r}), which does not say "
                        "what to do. Hint: name the argument and the values it takes, e.g. "
                        "'temperature must be > 0, got ...', and if you like, what to use "
                        "(1.0 samples the model as trained)") from None
                continue
            except Exception as err:  # noqa: BLE001 - report what was raised instead
                raise ExerciseFailed(f"temperature={T} raised {type(err).__name__}. Hint: "
                                     "raise ValueError (with a message saying temperature must "
                                     "be > 0)") from None
            raise ExerciseFailed(f"temperature={T} was accepted. Hint: a temperature <= 0 has no "
                                 "meaning; raise ValueError saying that it must be > 0")


# ----------------------------------------------------------------- equality with nn.LSTM
def matches_nn_lstm(layer_forward, num_layers=2, tolerance=1e-10):
    """Stack ``layer_forward(X, state, W, b) -> (Hs, (H, C), cache)`` num_layers times with random
    float64 weights and states, and compare with ``torch.nn.LSTM`` holding the same weights."""
    torch = _torch()
    rng = np.random.default_rng(2)
    batch, num_steps, num_inputs, h = 3, 7, 4, 5
    X = rng.standard_normal((batch, num_steps, num_inputs))
    H0 = rng.standard_normal((num_layers, batch, h)) * 0.8
    C0 = rng.standard_normal((num_layers, batch, h))
    params = [(rng.standard_normal(((num_inputs if l == 0 else h) + h, 4 * h)) * 0.5,
               rng.standard_normal(4 * h) * 0.5) for l in range(num_layers)]
    lstm = torch.nn.LSTM(num_inputs, h, num_layers, batch_first=True, dtype=torch.float64)
    for l, (W, b) in enumerate(params):
        _copy_into(lstm, W, b, W.shape[0] - h, suffix=f"_l{l}")
    with torch.no_grad():
        out, (Hn, Cn) = lstm(torch.from_numpy(X), (torch.from_numpy(H0), torch.from_numpy(C0)))
    out_ref, Hn_ref, Cn_ref = out.numpy(), Hn.numpy(), Cn.numpy()
    Hs, finals = X, []
    for l, (W, b) in enumerate(params):
        Hs, (H, C), _ = layer_forward(Hs, (H0[l].copy(), C0[l].copy()), W, b)
        finals.append((as_array(H, "H"), as_array(C, "C")))
    Hs = as_array(Hs, "Hs")
    if Hs.shape != out_ref.shape:
        raise ExerciseFailed(f"the top layer's Hs has shape {Hs.shape}, torch.nn.LSTM's output "
                             f"has shape {out_ref.shape} (batch, num_steps, num_hiddens)")
    diffs = {"outputs": np.abs(Hs - out_ref).max()}
    for l, (H, C) in enumerate(finals):
        diffs[f"final H of layer {l}"] = np.abs(H - Hn_ref[l]).max()
        diffs[f"final C of layer {l}"] = np.abs(C - Cn_ref[l]).max()
    worst = max(diffs, key=diffs.get)
    if not diffs[worst] <= tolerance:
        raise ExerciseFailed(f"{layer_forward.__name__} differs from torch.nn.LSTM "
                             f"({num_layers} layers, float64): {worst} off by "
                             f"{diffs[worst]:.3g} > {tolerance:g}")
    name = getattr(layer_forward, "__name__", "layer")
    print(f"{name}: equal to torch.nn.LSTM ({num_layers} layers, float64), max abs difference "
          f"{max(diffs.values()):.1e} <= {tolerance:g}")

"""Checks for lesson 4 (book/04_pytorch_lstm.md).

The oracle is PyTorch's own LSTM: ``torch.nn.LSTMCell`` / ``torch.nn.LSTM`` with the same
weights, in float64. When an answer differs, the check runs the oracle again on weights crafted
to isolate one gate (a saturated candidate, a zero previous cell, the gate blocks permuted) so the
message can say *which* gate is wrong, not only that something is.
"""
import itertools

import numpy as np

from . import ExerciseFailed, exercise, expect_close

GATES = ("i", "f", "g", "o")  # nn.LSTM's order of the four row blocks
GATE_NAMES = {"i": "input gate i", "f": "forget gate f", "g": "candidate g", "o": "output gate o"}
D, H, B = 5, 4, 3  # input size, hidden size, batch of the fixed test case


def _torch():
    import torch
    return torch


def _oracle_cell(seed=0, bias_scale=1.0):
    """An nn.LSTMCell in float64 with random weights and biases of both kinds."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    cell = torch.nn.LSTMCell(D, H).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1)
        cell.bias_ih.mul_(bias_scale)
        cell.bias_hh.mul_(bias_scale)
    return cell


def _inputs(seed=1, zero_cell=False):
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(B, D, generator=gen, dtype=torch.float64)
    H0 = torch.randn(B, H, generator=gen, dtype=torch.float64)
    C0 = torch.zeros(B, H, dtype=torch.float64) if zero_cell else torch.randn(
        B, H, generator=gen, dtype=torch.float64)
    return X, H0, C0


def _permuted(cell, order):
    """A copy of ``cell`` whose row blocks are taken in ``order`` (a permutation of 0..3)."""
    torch = _torch()
    other = torch.nn.LSTMCell(D, H).double()
    with torch.no_grad():
        for name, p in cell.named_parameters():
            blocks = p.detach().split(H, dim=0)
            getattr(other, name).copy_(torch.cat([blocks[k] for k in order]))
    return other


def _saturate_candidate(cell):
    """Candidate block g with zero weights and a bias of 30: tanh(30) == 1.0, so C = F*C0 + I."""
    torch = _torch()
    with torch.no_grad():
        cell.weight_ih[2 * H:3 * H] = 0.0
        cell.weight_hh[2 * H:3 * H] = 0.0
        cell.bias_ih[2 * H:3 * H] = 30.0
        cell.bias_hh[2 * H:3 * H] = 0.0
    return cell


def _close(a, b, tol=1e-10):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and np.all(np.isfinite(a)) and np.allclose(a, b, atol=tol, rtol=0)


def _run(run, cell, X, H0, C0):
    """Call the answer through ``run`` and return its (H, C), checking types and shapes."""
    torch = _torch()
    out = run(cell, X, H0, C0)  # what it raises, @exercise reports with the line and a hint
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ExerciseFailed(f"the step should return a tuple (H, C), got {type(out).__name__}"
                             + (f" of length {len(out)}"
                                if isinstance(out, (tuple, list)) else ""))
    for name, value in zip(("H", "C"), out):
        if not isinstance(value, torch.Tensor):
            raise ExerciseFailed(f"{name} should be a torch.Tensor, got {type(value).__name__}; "
                                 "stay in PyTorch so that autograd can differentiate the step")
        if tuple(value.shape) != (B, H):
            raise ExerciseFailed(f"{name} has shape {tuple(value.shape)}, expected "
                                 f"(batch, hidden) = {(B, H)} for a batch of {B}, input size "
                                 f"{D}, hidden size {H}")
    return out


def _oracle(cell, X, H0, C0):
    torch = _torch()
    with torch.no_grad():
        return cell(X, (H0, C0))


PRE_ACTIVATION = ("the four gates share one pre-activation, A = X_t W_ih^T + H_{t-1} W_hh^T + "
                  "b_ih + b_hh of shape (batch, 4*hidden) (in the fused step: XW_t + H @ "
                  "W_hh.t(), XW_t holding the input term and both biases), and each gate is "
                  "its activation of its own block of A")
# A term left out of the shared pre-activation: the parameters it zeroes, and its name.
MISSING_TERMS = ((("weight_ih", "bias_ih", "bias_hh"), "the input projection with the biases, "
                  "X_t W_ih^T + b (XW_t in the fused step)"),
                 (("weight_ih",), "the input term X_t W_ih^T"),
                 (("weight_hh",), "the recurrent term H_{t-1} W_hh^T"),
                 (("bias_ih", "bias_hh"), "the biases b_ih + b_hh"))


def _without(cell, names):
    """A copy of ``cell`` with the parameters ``names`` set to zero."""
    other = _permuted(cell, (0, 1, 2, 3))
    torch = _torch()
    with torch.no_grad():
        for name in names:
            getattr(other, name).zero_()
    return other


def _diagnose(run):
    """Name the gate that makes the answer differ from nn.LSTMCell, using crafted weights."""
    cell = _oracle_cell()
    X, H0, C0 = _inputs()
    got = [v.detach().numpy() for v in _run(run, cell, X, H0, C0)]
    want = [v.numpy() for v in _oracle(cell, X, H0, C0)]
    # 0. A term missing from the pre-activation that all four gates share: all four differ.
    for names, term in MISSING_TERMS:
        other = _without(cell, names)
        if all(_close(g, w.numpy()) for g, w in zip(got, _oracle(other, X, H0, C0))):
            return (f"all four gates differ, because their pre-activation lacks {term}: "
                    f"{PRE_ACTIVATION}")
    # 1. The gates taken from the wrong row blocks: some permutation of i, f, g, o matches.
    for order in itertools.permutations(range(4)):
        if order == (0, 1, 2, 3):
            continue
        other = _permuted(cell, order)
        if all(_close(g, w.numpy()) for g, w in zip(got, _oracle(other, X, H0, C0))):
            used = ", ".join(f"{GATES[k]} <- rows of {GATES[order[k]]}" for k in range(4)
                             if order[k] != k)
            return (f"your gates are computed from the wrong weights ({used}). nn.LSTM's row "
                    f"blocks are in the order i, f, g, o: block 0 is the input gate, 1 the forget "
                    f"gate, 2 the candidate, 3 the output gate")
    # 2. C right, H wrong: only the output gate (or the tanh of C) can be at fault.
    if _close(got[1], want[1]):
        return ("C matches but H differs: check the output gate, o = sigmoid(...) (not tanh), "
                "and H = o * tanh(C)")
    # 3. With C_{t-1} = 0 the forget gate drops out of C = f * C_{t-1} + i * g.
    cell0 = _oracle_cell()
    X, H0, Z = _inputs(zero_cell=True)
    if _close(_run(run, cell0, X, H0, Z)[1].detach().numpy(), _oracle(cell0, X, H0, Z)[1].numpy()):
        return ("C differs only when the previous cell state is not zero: check the forget gate, "
                "f = sigmoid(...) computed from its own weights, multiplying C_{t-1}")
    # 4. With the candidate saturated at g = 1 and C_{t-1} = 0, C equals the input gate.
    cell1 = _saturate_candidate(_oracle_cell())
    if not _close(_run(run, cell1, X, H0, Z)[1].detach().numpy(),
                  _oracle(cell1, X, H0, Z)[1].numpy(), tol=1e-9):
        return "check the input gate: i = sigmoid(...) computed from the input gate's own weights"
    return "check the candidate cell: g = tanh(...) (not sigmoid) from the candidate's own weights"


def _compare_with_gradients(run):
    """Forward and backward of the answer against nn.LSTMCell on the fixed case."""
    torch = _torch()
    cell = _oracle_cell()
    X, H0, C0 = _inputs()
    args = [t.clone().requires_grad_() for t in (X, H0, C0)]
    H1, C1 = _run(run, cell, *args)
    want_H, want_C = _oracle(cell, X, H0, C0)
    if not (_close(H1.detach(), want_H) and _close(C1.detach(), want_C)):
        expect_close("H_t", H1.detach(), want_H, atol=1e-10, rtol=0, hint=_diagnose(run))
        expect_close("C_t", C1.detach(), want_C, atol=1e-10, rtol=0, hint=_diagnose(run))
    weights_H = torch.linspace(-1, 1, B * H, dtype=torch.float64).view(B, H)
    loss = (H1 * weights_H).sum() + (C1 ** 2).sum()
    if not loss.requires_grad:
        raise ExerciseFailed("the result does not depend on the inputs through autograd: do not "
                             "use .detach(), .item(), NumPy or torch.no_grad() inside the step")
    got = torch.autograd.grad(loss, args, allow_unused=True)
    ref_args = [t.clone().requires_grad_() for t in (X, H0, C0)]
    ref_H, ref_C = cell(ref_args[0], (ref_args[1], ref_args[2]))
    want = torch.autograd.grad((ref_H * weights_H).sum() + (ref_C ** 2).sum(), ref_args)
    for name, g, w in zip(("X", "H_{t-1}", "C_{t-1}"), got, want):
        if g is None:
            raise ExerciseFailed(f"the step's result does not depend on {name} through autograd")
        expect_close(f"the gradient with respect to {name}", g, w, atol=1e-10, rtol=0,
                     hint="the forward pass is right, so something in it is detached or in place")


@exercise("4.1", "the four gates of the naive cell",
          shapes="XH has shape (batch, input_size + hidden_size) and each cell.W_k maps it to "
                 "(batch, hidden_size)")
def naive_cell_step(answer):
    torch = _torch()

    def run(cell, X, H0, C0):
        # The naive cell's layout, built from the oracle's blocks: W_k = [W_ih[k]; W_hh[k]].
        class Cell(torch.nn.Module):
            pass
        naive = Cell()
        for k, gate in enumerate(GATES):
            rows = slice(k * H, (k + 1) * H)
            linear = torch.nn.Linear(D + H, H).double()
            with torch.no_grad():
                linear.weight.copy_(torch.cat([cell.weight_ih[rows], cell.weight_hh[rows]], dim=1))
                linear.bias.copy_(cell.bias_ih[rows] + cell.bias_hh[rows])
            setattr(naive, f"W_{gate}", linear)
        return answer(naive, X, (H0, C0))

    _compare_with_gradients(run)


@exercise("4.2", "the fused cell step",
          shapes="XW_t is (batch, 4*hidden), H is (batch, hidden) and W_hh is (4*hidden, "
                 "hidden), so the product is H @ W_hh.t(), e.g. torch.addmm(XW_t, H, W_hh.t()); "
                 "split the gates along dim=1")
def fused_step(answer):
    def run(cell, X, H0, C0):
        XW = X @ cell.weight_ih.detach().T + cell.bias_ih.detach() + cell.bias_hh.detach()
        return answer(XW, H0, C0, cell.weight_hh.detach())

    _compare_with_gradients(run)
    # One product for the four gates: the gradient must reach W_hh as a whole.
    cell = _oracle_cell()
    X, H0, C0 = _inputs()
    W_hh = cell.weight_hh.detach().clone().requires_grad_()
    XW = X @ cell.weight_ih.detach().T + cell.bias_ih.detach() + cell.bias_hh.detach()
    H1, C1 = answer(XW, H0, C0, W_hh)
    (H1.sum() + C1.sum()).backward()
    cell.zero_grad()
    ref_H, ref_C = cell(X, (H0, C0))
    (ref_H.sum() + ref_C.sum()).backward()
    if W_hh.grad is None:
        raise ExerciseFailed("no gradient reaches W_hh: use it through autograd, e.g. "
                             "torch.addmm(XW_t, H, W_hh.t())")
    expect_close("the gradient with respect to W_hh", W_hh.grad, cell.weight_hh.grad,
                 atol=1e-10, rtol=0, hint="use W_hh as given, transposed: H @ W_hh.t()")


def _describe_copy(naive, lstm, layers):
    """Say what went wrong in a weight copy, by comparing each gate with nn.LSTM's blocks."""
    torch = _torch()
    for layer in range(layers):
        cell = naive.cells[layer]
        W_ih = getattr(lstm, f"weight_ih_l{layer}").detach()
        W_hh = getattr(lstm, f"weight_hh_l{layer}").detach()
        b_ih = getattr(lstm, f"bias_ih_l{layer}").detach()
        b_hh = getattr(lstm, f"bias_hh_l{layer}").detach()
        n_in = W_ih.shape[1]
        for k, gate in enumerate(GATES):
            linear = getattr(cell, f"W_{gate}")
            W, b = linear.weight.detach(), linear.bias.detach()
            blocks = [slice(j * H, (j + 1) * H) for j in range(4)]
            rows = blocks[k]
            if tuple(W.shape) != (H, n_in + H):
                return (f"layer {layer}: W_{gate}.weight has shape {tuple(W.shape)}, expected "
                        f"{(H, n_in + H)}")
            if not torch.allclose(W[:, :n_in], W_ih[rows]):
                found = [GATES[j] for j, r in enumerate(blocks)
                         if torch.allclose(W[:, :n_in], W_ih[r])]
                if found:
                    return (f"layer {layer}: W_{gate} holds the rows of the "
                            f"{GATE_NAMES[found[0]]} (block {GATES.index(found[0])} of "
                            f"weight_ih_l{layer}); nn.LSTM's blocks are in the order i, f, g, o, "
                            f"so W_{gate} needs block {k}")
                return (f"layer {layer}: W_{gate}.weight[:, :input_size] should be rows "
                        f"{k * H}:{(k + 1) * H} of weight_ih_l{layer}"
                        + (" (this layer looks unchanged: copy every layer)"
                           if not any(torch.allclose(W[:, :n_in], W_ih[r]) for r in blocks)
                           else ""))
            if not torch.allclose(W[:, n_in:], W_hh[rows]):
                return (f"layer {layer}: W_{gate}.weight[:, input_size:] should be rows "
                        f"{k * H}:{(k + 1) * H} of weight_hh_l{layer} (the recurrent weights sit "
                        f"to the right of the input weights, since the cell reads [X, H])")
            if not torch.allclose(b, b_ih[rows] + b_hh[rows]):
                if torch.allclose(b, b_ih[rows]):
                    return (f"layer {layer}: W_{gate}.bias holds bias_ih only; nn.LSTM adds both "
                            "biases, so copy bias_ih + bias_hh")
                if torch.allclose(b, b_hh[rows]):
                    return (f"layer {layer}: W_{gate}.bias holds bias_hh only; nn.LSTM adds both "
                            "biases, so copy bias_ih + bias_hh")
                return (f"layer {layer}: W_{gate}.bias should be "
                        f"(bias_ih + bias_hh)[{k * H}:{(k + 1) * H}]")
    return None


@exercise("4.3", "copying nn.LSTM's weights")
def copy_lstm_weights(answer, NaiveLSTM):
    torch = _torch()
    layers = 2
    gen = torch.Generator().manual_seed(3)
    lstm = torch.nn.LSTM(D, H, num_layers=layers).double()
    with torch.no_grad():
        for p in lstm.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) * 2 - 1)
    naive = NaiveLSTM(D, H, num_layers=layers).double()
    result = answer(naive, lstm)
    if result is not None and result is not naive:
        raise ExerciseFailed("copy_lstm_weights should fill in and return the NaiveLSTM it was "
                             "given, not a new module")
    for name, p in naive.named_parameters():
        if not p.requires_grad:
            raise ExerciseFailed(f"{name} no longer requires a gradient: copy values with "
                                 "param.copy_(...) under torch.no_grad()")
    X = torch.randn(7, B, D, generator=gen, dtype=torch.float64)
    state = tuple(torch.randn(layers, B, H, generator=gen, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        want, (want_h, want_c) = lstm(X, state)
        got, (got_h, got_c) = naive(X, state)
    problem = _describe_copy(naive, lstm, layers)
    if problem:
        raise ExerciseFailed(problem)
    hint = ("the weights look right, so the naive module's forward differs: check "
            "naive_cell_step (exercise 4.1) and NaiveLSTM")
    expect_close("the output of the NaiveLSTM", got, want, atol=1e-10, rtol=0, hint=hint)
    expect_close("h_n", got_h, want_h, atol=1e-10, rtol=0, hint=hint)
    expect_close("c_n", got_c, want_c, atol=1e-10, rtol=0, hint=hint)


@exercise("4.4", "the forget-bias initialisation")
def init_forget_bias(answer, FusedLSTM=None):
    torch = _torch()
    modules = [("nn.LSTM", lambda: torch.nn.LSTM(D, H, num_layers=2))]
    if FusedLSTM is not None:
        modules.append(("FusedLSTM", lambda: FusedLSTM(D, H, num_layers=2)))
    for label, make in modules:
        for value in (1.0, -1.0, 0.0, 2.5):
            torch.manual_seed(4)
            lstm = make()
            before = {n: p.detach().clone() for n, p in lstm.named_parameters()}
            answer(lstm, value)  # a write outside torch.no_grad(): @exercise's hint says so
            params = dict(lstm.named_parameters())
            if set(params) != set(before):
                raise ExerciseFailed(f"the {label}'s parameters changed names: {sorted(params)}")
            for layer in range(2):
                b_ih = params[f"bias_ih_l{layer}"].detach()
                b_hh = params[f"bias_hh_l{layer}"].detach()
                total = (b_ih + b_hh).numpy()
                old_total = (before[f"bias_ih_l{layer}"] + before[f"bias_hh_l{layer}"]).numpy()
                where = f"{label}, layer {layer}, value={value:g}"
                forget = total[H:2 * H]
                if not np.allclose(forget, value, atol=1e-6):
                    if np.allclose(forget, old_total[H:2 * H]):
                        hint = (f"the forget block is unchanged in layer {layer}" +
                                (": set every layer" if layer > 0 else
                                 ": it is rows hidden:2*hidden, the second block"))
                    elif np.allclose(forget, 2 * value, atol=1e-6):
                        hint = ("it is twice the value: the gate adds bias_ih and bias_hh, so "
                                "set one of them to the value and the other to 0")
                    elif np.allclose(b_ih[H:2 * H].numpy(), value, atol=1e-6):
                        hint = ("bias_ih is right but bias_hh's forget block still holds its "
                                "random values, and the gate sees their sum: set bias_hh's block "
                                "to 0")
                    else:
                        hint = "the forget gate is the second block of rows, hidden:2*hidden"
                    raise ExerciseFailed(f"{where}: the forget gate's total bias "
                                         f"bias_ih + bias_hh is {forget[:3].round(3)}..., "
                                         f"expected {value:g} in every unit. Hint: {hint}")
                for k, gate in enumerate(GATES):
                    if gate == "f":
                        continue
                    rows = slice(k * H, (k + 1) * H)
                    if not np.allclose(total[rows], old_total[rows]):
                        raise ExerciseFailed(f"{where}: the {GATE_NAMES[gate]}'s bias changed; "
                                             "change only the forget gate's block (rows "
                                             "hidden:2*hidden, nn.LSTM's order is i, f, g, o)")
            for name, p in params.items():
                if name.startswith("weight") and not torch.equal(p.detach(), before[name]):
                    raise ExerciseFailed(f"{label}: {name} changed; only the biases should")


@exercise("4.5", "a gradient that never arrives",
          shapes="X is (seq_len, batch, input_size); h_0 and its gradient are (num_layers, "
                 "batch, hidden_size)")
def initial_state_gradient(answer):
    torch = _torch()
    layers, steps = 2, 6
    returned = {}
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(5)
        lstm = torch.nn.LSTM(D, H, num_layers=layers)
        X = torch.randn(steps, B, D)
        got = answer(lstm, X.clone(), dtype)
        returned[dtype] = got
        name = str(dtype).replace("torch.", "")
        if got is None:
            worked = returned.get(torch.float32) is not None
            raise ExerciseFailed(
                f"with dtype={name} your function returned None instead of the gradient"
                + (" (with float32 it returned one)" if worked else "") + ". Autograd fills "
                ".grad only for a leaf tensor, one created by you with requires_grad=True, not "
                "made by an operation. A tensor created with requires_grad=True and then "
                "converted or moved (.to(dtype), .to(device), .double(), .cuda()) is a copy "
                "made by an operation: it is not a leaf, and its .grad stays None (PyTorch "
                "warns when you read it). .to() returns the tensor itself when nothing "
                "changes, which is why the same code works on a CPU in float32 and fails on a "
                "GPU or in float64. Create h_0 where it will live, in one call: "
                "torch.zeros(shape, dtype=dtype, requires_grad=True), with device=... as well "
                "on a GPU")
        if not isinstance(got, torch.Tensor):
            raise ExerciseFailed(f"return the gradient as a torch.Tensor (h_0.grad), got "
                                 f"{type(got).__name__}")
        shape = (layers, B, H)
        if tuple(got.shape) != shape:
            raise ExerciseFailed(f"with dtype={name} the gradient has shape {tuple(got.shape)},"
                                 f" expected h_0's shape (num_layers, batch, hidden_size) = "
                                 f"{shape}")
        if got.dtype != dtype:
            raise ExerciseFailed(f"the gradient is {str(got.dtype).replace('torch.', '')}, "
                                 f"expected {name}: make h_0, X and the module {name}")
        torch.manual_seed(5)
        ref = torch.nn.LSTM(D, H, num_layers=layers).to(dtype)
        h_0 = torch.zeros(shape, dtype=dtype, requires_grad=True)
        out, _ = ref(X.to(dtype), (h_0, torch.zeros(shape, dtype=dtype)))
        (want,) = torch.autograd.grad(out[-1].sum(), h_0)
        expect_close(f"the gradient with respect to h_0 (dtype={name})", got.detach(), want,
                     atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0,
                     hint="the loss is the sum of the last step's output, out[-1].sum(), with "
                          "a zero c_0; backward() once, on a fresh h_0")

"""Lesson 5 (book/05_keras_word_lstm.md): Keras LSTM vs torch.nn.LSTM, the word pipeline, checks.

Equality tests run in float64 (Keras layers with dtype="float64", torch .double()) and require a
relative error <= 1e-7; the float32 test allows an absolute error of 1e-5.
"""
import re

import jupytext
import keras
import numpy as np
import pytest
import tensorflow as tf
import torch

from conftest import ROOT
from lstmbook import checks, data
from lstmbook.checks import keras_word_lstm as check
from lstmbook.lessons import keras_word_lstm as kw

# --------------------------------------------------------------------------------------------
# Keras' LSTM layer is torch.nn.LSTM with the same weights

def _keras_lstm(D, H, dtype="float64", seed=0):
    layer = keras.layers.LSTM(H, return_sequences=True, return_state=True, dtype=dtype)
    layer.build((None, None, D))
    rng = np.random.default_rng(seed)
    layer.set_weights([0.5 * rng.standard_normal(w.shape) for w in layer.get_weights()])
    return layer


def _torch_from_keras_by_hand(layer):
    """Independent of the lesson's code: Keras columns i,f,c,o -> torch rows i,f,g,o; one bias."""
    kernel, recurrent, bias = layer.get_weights()
    D, H = kernel.shape[0], recurrent.shape[0]
    lstm = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        for gate in range(4):  # block by block, to spell out that the order is the same
            rows = slice(gate * H, (gate + 1) * H)
            lstm.weight_ih_l0[rows] = torch.from_numpy(kernel[:, rows].T.copy())
            lstm.weight_hh_l0[rows] = torch.from_numpy(recurrent[:, rows].T.copy())
            lstm.bias_ih_l0[rows] = torch.from_numpy(bias[rows] / 2)
            lstm.bias_hh_l0[rows] = torch.from_numpy(bias[rows] / 2)  # torch adds the two
    return lstm


def test_keras_lstm_equals_torch_lstm_forward_and_gradients_float64():
    D, H, B, T = 5, 7, 3, 9
    layer = _keras_lstm(D, H)
    lstm = _torch_from_keras_by_hand(layer)
    X = np.random.default_rng(1).standard_normal((B, T, D))

    with tf.GradientTape() as tape:
        Xk = tf.constant(X)
        tape.watch(Xk)
        y, h, c = layer(Xk)
        loss = tf.reduce_sum(y * y) + tf.reduce_sum(c)
    grads = tape.gradient(loss, [Xk] + layer.trainable_weights)

    Xt = torch.tensor(X, requires_grad=True)
    yt, (ht, ct) = lstm(Xt)
    (yt.pow(2).sum() + ct.sum()).backward()

    def rel(a, b):
        a, b = np.asarray(a), np.asarray(b)
        return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)

    assert rel(y, yt.detach()) <= 1e-7
    assert rel(h, ht[0].detach()) <= 1e-7 and rel(c, ct[0].detach()) <= 1e-7
    assert rel(grads[0], Xt.grad) <= 1e-7
    assert rel(grads[1], lstm.weight_ih_l0.grad.T) <= 1e-7
    assert rel(grads[2], lstm.weight_hh_l0.grad.T) <= 1e-7
    assert rel(grads[3], lstm.bias_ih_l0.grad) <= 1e-7  # d/d(b_ih) = d/d(b_hh) = d/d(Keras b)


def test_lesson_mappings_round_trip_float64():
    D, H = 4, 6
    X = np.random.default_rng(2).standard_normal((2, 5, D))
    layer = _keras_lstm(D, H, seed=3)
    lstm = kw.keras_lstm_to_torch(layer)  # Keras -> torch, as in the lesson
    with torch.no_grad():
        expected = lstm(torch.from_numpy(X))[0].numpy()
    np.testing.assert_allclose(np.asarray(layer(X)[0]), expected, rtol=1e-7, atol=1e-12)

    other = torch.nn.LSTM(D, H, batch_first=True).double()  # torch -> Keras, the exercise
    back = _keras_lstm(D, H, seed=4)
    back.set_weights(kw.torch_lstm_to_keras(other))
    with torch.no_grad():
        expected = other(torch.from_numpy(X))[0].numpy()
    np.testing.assert_allclose(np.asarray(back(X)[0]), expected, rtol=1e-7, atol=1e-12)


def test_keras_lstm_equals_torch_float32_on_bench_shape():
    layer = _keras_lstm(64, 256, dtype="float32", seed=5)
    layer.set_weights([w * 0.2 for w in layer.get_weights()])  # keep the float32 gates unsaturated
    X = np.random.default_rng(6).standard_normal((4, 64, 64)).astype(np.float32)
    lstm = kw.keras_lstm_to_torch(layer)
    assert lstm.weight_ih_l0.dtype == torch.float32
    with torch.no_grad():
        expected = lstm(torch.from_numpy(X))[0].numpy()
    assert np.abs(np.asarray(layer(X)[0]) - expected).max() <= 1e-5


# --------------------------------------------------------------------------------------------
# tokenizer, vocabulary, split, pipeline

def test_tokenizer_keeps_punctuation_line_breaks_and_case():
    tokens = kw.tokenize("KING RICHARD III:\nNow is the winter of our discontent,\n\n"
                         "Made glorious!")
    assert tokens == ["KING", "RICHARD", "III", ":", "\n", "Now", "is", "the", "winter", "of",
                      "our", "discontent", ",", "\n", "\n", "Made", "glorious", "!"]
    assert kw.tokenize("I'll o'er 'tis look'd--") == ["I'll", "o'er", "'", "tis", "look'd",
                                                      "-", "-"]
    assert kw.tokenize(" \t ") == []


def test_detokenize_restores_common_lines():
    for line in ["ROMEO:", "Good morrow, neighbour Baptista.", "I'll go; good-night!",
                 "What, ho! Apothecary!", "3 KING HENRY VI"]:
        assert kw.detokenize(kw.tokenize(line)) == line
    assert kw.detokenize(["A", ":", "\n", "B"]) == "A:\nB"


def test_vocabulary_min_freq_and_unknown_token():
    tokens = "a a a b b c , , , , \n".split(" ")
    vocab = kw.WordVocab(tokens, min_freq=2)
    assert vocab.itos == ["<unk>", ",", "a", "b"]  # frequent first, ties alphabetical
    assert vocab.unk_id == 0 and len(vocab) == 4
    assert vocab.lookup(["a", "c", "zebra", ","]).tolist() == [2, 0, 0, 1]
    assert vocab.lookup(["a"]).dtype == np.int64
    assert vocab.tokens([2, 0]) == ["a", "<unk>"]
    assert kw.WordVocab(tokens, min_freq=1).lookup(["c"]).tolist() != [0]
    with pytest.raises(ValueError, match="min_freq"):
        kw.WordVocab(tokens, min_freq=0)
    assert vocab.decode(vocab.encode("a , b")) == "a, b"


def test_split_at_the_course_character_boundary():
    text = data.load_text()
    train_text, val_text = data.split(text)
    assert (len(train_text), len(val_text)) == (1_003_854, 111_540)
    assert train_text + val_text == text
    n_train = len(data.split(np.arange(len(text)))[0])  # the boundary the character models use
    assert len(train_text) == n_train


def test_window_dataset_shapes_and_targets():
    ids = np.arange(1000)
    X, Y = next(iter(kw.window_dataset(ids, 10, 4)))
    assert X.shape == (4, 10) and X.dtype == tf.int32
    np.testing.assert_array_equal(Y.numpy(), X.numpy() + 1)
    shuffled = kw.window_dataset(ids, 10, 4, shuffle=True, max_windows=10)
    assert [x.shape[0] for x, _ in shuffled] == [4, 4]  # partial batch dropped when training


# --------------------------------------------------------------------------------------------
# generation: temperature, top-k, bad input

def _peaked(token, state):
    return np.array([3.0, 2.0, 1.0, 0.0, -1.0]), state


def test_generate_top_k_and_temperature():
    rng = np.random.default_rng(0)
    assert set(kw.generate(_peaked, [0], 500, top_k=1, rng=rng)) == {0}
    assert set(kw.generate(_peaked, [0], 2000, top_k=2, rng=rng)) == {0, 1}
    cold = np.bincount(kw.generate(_peaked, [0], 2000, temperature=0.2, rng=rng), minlength=5)
    hot = np.bincount(kw.generate(_peaked, [0], 2000, temperature=5.0, rng=rng), minlength=5)
    assert cold[0] > 0.99 * 2000 and hot[4] > 0.1 * 2000


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, "temperature must be > 0"),
    ({"temperature": -0.5}, "temperature must be > 0"),
    ({"top_k": 0}, "top_k must be None or >= 1"),
])
def test_generate_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kw.generate(_peaked, [0], 3, **kwargs)


def test_generate_text_refuses_a_prompt_of_unknown_words_only():
    vocab = kw.WordVocab("ROMEO : \n the the the".split(" "), min_freq=1)
    with pytest.raises(ValueError, match="none of the prompt's tokens .* is in the vocabulary"):
        kw.generate_text(lambda t, s: (np.zeros(len(vocab)), s), vocab, "Zyzzyva quux", 3)
    out = kw.generate_text(lambda t, s: (np.eye(len(vocab))[vocab.stoi["the"]] * 50, s),
                           vocab, "ROMEO Zyzzyva", 2, top_k=1)
    assert out == "ROMEO Zyzzyva the the"  # a partly unknown prompt is fine, and kept as written
    likes_unk = lambda t, s: (np.eye(len(vocab))[vocab.unk_id] * 50, s)
    assert "<unk>" not in kw.generate_text(likes_unk, vocab, "ROMEO", 5)  # masked by default
    assert (kw.generate_text(likes_unk, vocab, "ROMEO", 2, top_k=1, allow_unk=True)
            == "ROMEO <unk> <unk>")


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    vocab = kw.WordVocab("a b c d e f g h".split(), min_freq=1)
    return vocab, kw.build_word_lm(len(vocab), embed_dim=4, num_hiddens=5)


def test_generation_model_shares_weights_with_training_model(tiny_model):
    vocab, model = tiny_model
    ids = np.array([[1, 4, 2, 8, 5, 3]], dtype=np.int32)
    full = model.predict_on_batch(ids)[0]
    step_fn = kw.keras_step_fn(kw.generation_model(model))
    state, stepped = None, []
    for token in ids[0]:
        logits, state = step_fn(int(token), state)
        stepped.append(logits)
    np.testing.assert_allclose(np.array(stepped), full, atol=1e-5)


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_saved_model_with_other_vocabulary_is_refused(tiny_model, tmp_path):
    vocab, model = tiny_model
    path = tmp_path / "word_lm.keras"
    model.save(path)
    kw.save_vocab(vocab, tmp_path)
    assert kw.load_word_model(path, vocab).get_layer("lstm").units == 5
    with pytest.raises(ValueError, match="vocabulary mismatch: .* trained with 9 tokens, this "
                                         "vocabulary has 5"):
        kw.load_word_model(path, kw.WordVocab("a b c d".split(), min_freq=1))
    shuffled = kw.WordVocab("a b c d e f g h".split(), min_freq=1)
    shuffled.itos = [shuffled.itos[0]] + shuffled.itos[1:][::-1]
    with pytest.raises(ValueError, match="same size .* id 1 is 'a' for the model"):
        kw.load_word_model(path, shuffled)


# --------------------------------------------------------------------------------------------
# the checks: accept the lesson's answer, refuse the placeholder and plausible wrong answers

def _placeholder(number):
    def answer(*args, **kwargs):
        raise NotImplementedError(f"Exercise {number}: write it")
    return answer


def _lesson_function(name):
    """A function defined in a code cell of the lesson (not saved to lstmbook.lessons), run from
    the lesson's own source, so that the test sees what the student sees."""
    lesson = jupytext.read(ROOT / "book" / "05_keras_word_lstm.md", fmt="md:myst")
    source = next(c.source for c in lesson.cells
                  if c.cell_type == "code" and f"def {name}(" in c.source)
    namespace = {"keras": keras, "np": np}
    exec(compile(source, f"book/05_keras_word_lstm.md ({name})", "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("run, answer", [
    (check.tokenize, kw.tokenize),
    (check.generate, kw.generate),
    (check.torch_lstm_to_keras, kw.torch_lstm_to_keras),
    (check.next_token_loss, "next_token_loss"),
], ids=["5.1", "5.2", "5.3", "5.4"])
def test_check_accepts_the_lesson_answer_and_refuses_the_placeholder(run, answer, capsys):
    run(_lesson_function(answer) if isinstance(answer, str) else answer)
    assert f"Exercise {run.number} passed" in capsys.readouterr().out
    with pytest.raises(checks.ExerciseNotDone,
                       match=f"Exercise {run.number} .*not implemented yet"):
        run(_placeholder(run.number))


@pytest.mark.parametrize("wrong, message", [
    (lambda text: text.split(), "line breaks are missing"),
    (lambda text: re.findall(r"\w+|[^\w\s]", text), "line breaks are missing"),
    (lambda text: [t.lower() for t in kw.tokenize(text)], "case was changed"),
    (lambda text: re.findall(r"\n|[^\s]+", text), "punctuation is glued to a word"),
    (lambda text: re.findall(r"[A-Za-z]+|\n|[^\sA-Za-z]", text), "\"I'll\" is one token"),
    (lambda text: re.findall(r"[A-Za-z']+|\n|[^\sA-Za-z']", text), "apostrophe at the edge"),
    (lambda text: "".join(kw.tokenize(text)), "list of strings"),
], ids=["split", "word-regex", "lower", "glued", "apostrophe-split", "apostrophe-edge", "str"])
def test_tokenizer_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.tokenize(wrong)


def _sampler(after_softmax=False, ignore_top_k=False, keep_state=True, feed_back=True,
             times_temperature=False, greedy=False, global_rng=False):
    """Variants of the generation loop, each with one plausible mistake."""
    def generate(step_fn, prompt_ids, length, temperature=1.0, top_k=None, rng=None):
        if not temperature > 0:
            raise ValueError("temperature must be > 0")
        state, logits = None, None
        for token in prompt_ids:
            logits, new_state = step_fn(int(token), state)
            state = new_state if keep_state else None
        last, out = int(prompt_ids[-1]), []
        for _ in range(length):
            z = np.asarray(logits, dtype=np.float64)
            if not after_softmax:
                z = z * temperature if times_temperature else z / temperature
            if top_k is not None and not ignore_top_k and top_k < z.size:
                z[z < np.sort(z)[-top_k]] = -np.inf
            p = np.exp(z - z.max())
            p /= p.sum()
            if after_softmax:
                p = p / temperature
                p /= p.sum()
            if greedy:
                token = int(np.argmax(p))
            elif global_rng:
                token = int(np.random.choice(z.size, p=p))
            else:
                token = int(rng.choice(z.size, p=p))
            out.append(token)
            logits, new_state = step_fn(token if feed_back else last, state)
            state = new_state if keep_state else None
        return out
    return generate


def test_generate_check_rejects_a_nested_list():
    def nested(*args, **kwargs):
        return [kw.generate(*args, **kwargs)]
    with pytest.raises(checks.ExerciseFailed, match=r"in the shape \(1, 5\): return a flat list"):
        check.generate(nested)


@pytest.mark.parametrize("wrong, message", [
    (_sampler(after_softmax=True), "divide the logits by the temperature"),
    (_sampler(times_temperature=True), "temperature 0.5"),
    (_sampler(ignore_top_k=True), "top_k=3"),
    (_sampler(keep_state=False), "pass the state that step_fn returned"),
    (_sampler(feed_back=False), "feed each sampled token back"),
    (_sampler(greedy=True), "all 3000 draws were token 0, the likeliest.*takes the argmax"),
    (_sampler(global_rng=True), "gave different tokens.*draw with the generator you were given"),
], ids=["after-softmax", "times-temperature", "ignores-top-k", "drops-state", "no-feedback",
        "argmax", "global-rng"])
def test_generate_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.generate(wrong)


def _params(lstm):
    return {n: p.detach().numpy() for n, p in lstm.named_parameters()}


def _tf1_order(lstm):
    """Copies the gates as if Keras used the order i, c, f, o (TensorFlow 1's LSTMCell did)."""
    p, H = _params(lstm), lstm.hidden_size
    order = [0, 2, 1, 3]
    blocks = lambda W: np.concatenate([W[k * H:(k + 1) * H] for k in order])
    return [blocks(p["weight_ih_l0"]).T, blocks(p["weight_hh_l0"]).T,
            blocks(p["bias_ih_l0"] + p["bias_hh_l0"])]


@pytest.mark.parametrize("wrong, message", [
    (_tf1_order, "no reordering is needed"),
    (lambda l: [_params(l)["weight_ih_l0"].T, _params(l)["weight_hh_l0"].T,
                _params(l)["bias_ih_l0"]], "only one of torch's two biases"),
    (lambda l: [_params(l)["weight_ih_l0"].reshape(l.input_size, -1),
                _params(l)["weight_hh_l0"].reshape(l.hidden_size, -1),
                _params(l)["bias_ih_l0"] + _params(l)["bias_hh_l0"]], "reshaped, not transposed"),
    (lambda l: [_params(l)["weight_ih_l0"], _params(l)["weight_hh_l0"],
                _params(l)["bias_ih_l0"] + _params(l)["bias_hh_l0"]],
     r"kernel has shape \(16, 3\)"),
    (lambda l: [_params(l)["weight_ih_l0"].T, _params(l)["weight_hh_l0"].T], "three arrays"),
    (lambda l: [_params(l)["weight_hh_l0"].T, _params(l)["weight_ih_l0"].T,
                _params(l)["bias_ih_l0"] + _params(l)["bias_hh_l0"]], "they are swapped"),
    (lambda l: [_params(l)["weight_ih_l0"].T, _params(l)["weight_hh_l0"].T,
                np.concatenate([_params(l)["bias_ih_l0"], _params(l)["bias_hh_l0"]])],
     "two biases side by side.*their sum"),
    (lambda l: [_params(l)["weight_ih_l0"].T, _params(l)["weight_hh_l0"].T,
                2 * _params(l)["bias_ih_l0"]], "the bias is not.*bias_ih \\+ bias_hh"),
], ids=["gate-order", "one-bias", "reshape", "no-transpose", "two-arrays", "swapped",
        "concatenated-biases", "doubled-bias"])
def test_mapping_check_rejects_wrong_answers(wrong, message):
    with pytest.raises(checks.ExerciseFailed, match=message):
        check.torch_lstm_to_keras(wrong)


# The debugging clinic (5.4): the lesson's buggy loss fails with the message that leads to its
# first mistake; with that one fixed, the check names the second; fixed, it passes (above).

def _losses(Y, logits, **kwargs):
    return keras.losses.sparse_categorical_crossentropy(Y, logits, **kwargs)


def _twice(Y, logits):
    """Probabilities fed to a loss that takes logits (NumPy's softmax, which Keras cannot see)."""
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return keras.ops.mean(_losses(Y, p / p.sum(axis=-1, keepdims=True), from_logits=True))


@pytest.mark.parametrize("wrong, message", [
    ("next_token_loss_as_written", "logits read as probabilities.*from_logits=False.*clips every "
                                   "value.*from_logits=True"),
    (lambda Y, z: keras.ops.sum(_losses(Y, z, from_logits=True)),
     "6 times the mean: the loss is summed over the 2 x 3 positions.*Take the mean"),
    (lambda Y, z: keras.ops.mean(_losses(Y, z)), "logits read as probabilities"),
    (lambda Y, z: keras.ops.mean(keras.ops.sum(_losses(Y, z, from_logits=True), axis=1)),
     "3 times the mean: the loss is summed over the 3 steps of each window"),
    (lambda Y, z: keras.ops.mean(keras.ops.sum(_losses(Y, z, from_logits=True), axis=0)),
     "2 times the mean: the loss is summed over the 2 windows"),
    (_twice, "the softmax is taken twice"),
    (lambda Y, z: _losses(Y, z, from_logits=True),
     r"returned shape \(2, 3\), expected one number"),
    (lambda Y, z: np.mean(-np.log(np.take_along_axis(z, Y[..., None], axis=-1))),
     "returned nan.*log of a logit that is 0 or negative"),
], ids=["as-written", "sum", "probabilities", "sum-over-steps", "sum-over-batch", "softmax-twice",
        "per-position", "log-of-logits"])
def test_loss_check_rejects_wrong_answers(wrong, message):
    wrong = _lesson_function(wrong) if isinstance(wrong, str) else wrong
    with np.errstate(invalid="ignore"), pytest.raises(checks.ExerciseFailed, match=message):
        check.next_token_loss(wrong)


def test_the_clinic_candidates_are_what_keras_computes():
    """The check's model of Keras' from_logits=False (clip, renormalise, log) is Keras' own."""
    Y, logits = check._loss_inputs(*check.LOSS_CASES[0])
    np.testing.assert_allclose(check._per_position(Y, logits, "as probabilities"),
                               np.asarray(_losses(Y, logits)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(check._per_position(Y, logits, "correct"),
                               np.asarray(_losses(Y, logits, from_logits=True)), rtol=1e-5,
                               atol=1e-5)


def test_time_budget_stops_mid_epoch_and_keras_still_validates(capsys):
    keras.utils.set_random_seed(0)
    vocab = kw.WordVocab("a b c d e f g h".split(), min_freq=1)
    model = kw.build_word_lm(len(vocab), embed_dim=4, num_hiddens=5)
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = np.arange(400) % len(vocab)
    train = kw.window_dataset(ids, 5, 4, shuffle=True)  # 80 windows: 20 batches per epoch
    seen = []
    count = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))
    history = model.fit(train, validation_data=kw.window_dataset(ids, 5, 4), epochs=3,
                        callbacks=[count, kw.TimeBudget(0.0)], verbose=0, shuffle=False)
    assert seen == [0]  # the first batch ends past a budget of 0 s: the run stops there
    assert len(history.history["val_loss"]) == 1  # and the stopped epoch is still validated
    assert "time budget of 0 s reached in epoch 1, after its batch 1" in capsys.readouterr().out

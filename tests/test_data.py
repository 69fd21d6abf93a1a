"""lstmbook.data and lstmbook.lm: the common task's data, split, batches, loss and sampler."""
import numpy as np
import pytest

from lstmbook import data, lm


@pytest.fixture(scope="module")
def corpus():
    return data.load_shakespeare()


def test_split_sizes_and_vocabulary(corpus):
    assert len(corpus.text) == 1_115_394
    assert len(corpus.vocab) == 65
    assert (len(corpus.train), len(corpus.val)) == (1_003_854, 111_540)
    assert np.array_equal(np.concatenate([corpus.train, corpus.val]),
                          corpus.vocab.encode(corpus.text))


def test_encode_decode_round_trip(corpus):
    text = "ROMEO:\nBut, soft! what light"
    assert corpus.vocab.decode(corpus.vocab.encode(text)) == text


def test_unknown_character_is_named(corpus):
    with pytest.raises(ValueError, match="'é' is not in the vocabulary"):
        corpus.vocab.encode("café")


def test_missing_data_file_names_path_and_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        data.load_shakespeare()
    assert str(tmp_path / "tinyshakespeare.txt") in str(err.value)
    assert "git checkout -- data/tinyshakespeare.txt" in str(err.value)


@pytest.mark.parametrize("damage", [
    lambda raw: b"",                                      # emptied
    lambda raw: raw[: len(raw) // 2],                     # cut short
    lambda raw: raw.decode().encode("utf-16"),            # re-encoded
    lambda raw: raw.replace(b"ROMEO", b"R\xd6MEO", 1),    # one stray Latin-1 byte
])
def test_a_damaged_corpus_stops_with_one_clear_message(tmp_path, damage):
    copy = tmp_path / data.CORPUS_NAME
    copy.write_bytes(damage(data.data_path().read_bytes()))
    with pytest.raises(data.DataError, match=r"expected 1,115,394 bytes with SHA-256 .*"
                                             r"git checkout -- data/tinyshakespeare\.txt"):
        data.load_shakespeare(copy)


def test_other_texts_are_not_checked_but_must_be_utf8(tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("to be or not to be", encoding="utf-8")
    assert data.load_text(text) == "to be or not to be"
    text.write_bytes(b"caf\xe9")
    with pytest.raises(data.DataError, match="not UTF-8 text.*byte 3"):
        data.load_text(text)


def test_bptt_batches_continue_each_row():
    ids = np.arange(101)
    chunks = list(data.bptt_batches(ids, batch_size=4, num_steps=5))
    assert len(chunks) == 5 and chunks[0][0].shape == (4, 5)
    X0, Y0 = chunks[0]
    X1, _ = chunks[1]
    assert np.array_equal(Y0, X0 + 1)                 # targets are the next ids
    assert np.array_equal(X1[:, 0], X0[:, -1] + 1)    # chunk k+1 continues chunk k, row by row


def test_bptt_batches_reject_too_little_data():
    with pytest.raises(ValueError, match="too few"):
        list(data.bptt_batches(np.arange(10), batch_size=4, num_steps=5))


def test_validation_windows_cover_split():
    X, Y = lm.validation_windows(np.arange(1000), window=256)
    assert X.shape == Y.shape == (3, 256)
    assert np.array_equal(Y, X + 1)


def test_validation_loss_of_uniform_model_is_log_v(corpus):
    V = len(corpus.vocab)
    loss = lm.validation_loss(lambda X: np.zeros(X.shape + (V,)), corpus.val, max_windows=4)
    assert loss == pytest.approx(np.log(V), abs=1e-12)


def test_cross_entropy_matches_hand_value():
    logits = np.log(np.array([[0.5, 0.25, 0.25]]))
    assert lm.cross_entropy(logits, np.array([1])) == pytest.approx(np.log(4))


def test_cross_entropy_names_expected_target_shape():
    with pytest.raises(ValueError, match=r"targets of shape \(2, 3\)"):
        lm.cross_entropy(np.zeros((2, 3, 5)), np.zeros((3, 2), dtype=int))


def test_sampler_refuses_non_positive_temperature(corpus):
    step = lambda token, state: (np.zeros(len(corpus.vocab)), state)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        lm.sample(step, corpus.vocab, "A", 5, temperature=0)


def test_sampler_follows_the_model(corpus):
    # A model that always puts (almost) all mass on 'a' must generate 'aaaa'.
    a = corpus.vocab.stoi["a"]
    logits = np.full(len(corpus.vocab), -50.0)
    logits[a] = 50.0
    out = lm.sample(lambda t, s: (logits, s), corpus.vocab, "Z", 4, rng=np.random.default_rng(0))
    assert out == "Zaaaa"

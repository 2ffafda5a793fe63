"""Error-correcting output codes (FTNA): the code book, soft decoding, the per-bit loss,
and ``head: ecoc`` on every network, on crossbars too."""

import itertools
import time

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import crossbar
import models
from models.ecoc import MIN_DISTANCE, code_book, decode, default_bits


def distances(book):
    return [int((a != b).sum()) for a, b in itertools.combinations(book, 2)]


@pytest.mark.parametrize("n_classes, bits", [(2, None), (10, None), (10, 12), (43, None)])
def test_the_code_book_is_deterministic_and_its_words_are_at_least_three_bits_apart(n_classes, bits):
    book = code_book(n_classes, bits)
    assert book.shape == (n_classes, bits or default_bits(n_classes))
    assert torch.equal(book, code_book(n_classes, bits)) and set(book.unique().tolist()) <= {0.0, 1.0}
    assert min(distances(book)) >= MIN_DISTANCE
    assert not (book.sum(1) == 0).any()  # no all-zero word


def test_ftnas_lengths_and_bits_that_tell_classes_apart():
    assert default_bits(10) == 7 and default_bits(43) == 10  # FTNA used 7 bits for 10 classes
    for n in (10, 43):
        mean = code_book(n).mean(0)
        assert ((mean > 0) & (mean < 1)).all()  # no bit is the same for every class


@pytest.mark.parametrize("call, message", [
    (lambda: code_book(43, 7), "a 7-bit code of distance 3 has 15 non-zero words, fewer than the 43 classes; "
                               "use code_bits >= 10"),
    (lambda: code_book(10, 2), "code_bits must be an integer in [3, 20], got 2"),
    (lambda: models.build("mlp", (1, 8, 8), 10, head="svm"), "mlp: head: unknown 'svm'; valid: softmax, ecoc"),
    (lambda: models.build("mlp", (1, 8, 8), 10, code_bits=7), "mlp: code_bits is an option of head: ecoc"),
    (lambda: models.build("mlp", (1, 8, 8), 10, heads="ecoc"), "valid: depth, width, activation, norm, head, "
                                                                "code_bits"),
])
def test_bad_heads_and_codes_are_one_clear_line(call, message):
    with pytest.raises(ValueError) as err:
        call()
    assert message in str(err.value)


def test_soft_decoding_picks_the_nearest_code_word_and_corrects_one_wrong_bit():
    book = code_book(10)
    logits = 6.0 * (2 * book - 1)  # confident bits of each class's word
    assert torch.equal(decode(logits, book).argmax(1), torch.arange(10))
    for k, b in itertools.product(range(10), range(book.shape[1])):
        wrong = logits[k].clone()
        wrong[b] = -wrong[b]
        assert decode(wrong[None], book).argmax(1).item() == k
    # an unsure bit counts for less than a sure one: scores are log-likelihoods
    scores = decode(torch.zeros(1, book.shape[1]), book)
    assert torch.allclose(scores, torch.full((1, 10), book.shape[1] * F.logsigmoid(torch.tensor(0.0)).item()))


def test_the_training_loss_is_the_per_bit_binary_cross_entropy():
    net = models.build("mlp", (1, 8, 8), 10, head="ecoc", width=16, seed=0)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    bits = net.body(x)
    expected = F.binary_cross_entropy_with_logits(bits, net.head.book[y])
    assert torch.allclose(net.loss(net(x), y), expected, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in models.list_models() if models.model_task(n) == "classification"])
def test_every_network_takes_an_ecoc_head(name, tmp_path):
    shape = (3, 32, 32) if name.startswith(("vgg", "resnet")) else (1, 8, 8)
    plain = models.build(name, shape, 10, seed=0)
    net = models.build(name, shape, 10, seed=0, head="ecoc")
    assert net.dropout_slots == plain.dropout_slots and net.spec["code_bits"] == 7
    net.eval()
    x = torch.randn(2, *shape)
    assert net(x).shape == (2, 10) and net.body(x).shape == (2, 7)
    again = models.build(**net.spec, seed=0).eval()
    assert torch.equal(again(x), net(x))
    models.save_checkpoint(tmp_path / "net.pt", net)
    loaded, _ = models.load_checkpoint(tmp_path / "net.pt")
    assert torch.equal(loaded.eval()(x), net(x))


def test_an_ecoc_network_learns_and_its_decoder_stays_digital_on_the_chips():
    splits = models.load_dataset("digits", seed=0)
    net = models.build("mlp", splits.in_shape, splits.n_classes, head="ecoc", width=64, seed=0)
    result = models.train(net, splits, models.TrainConfig(epochs=8), seed=0)
    assert result.ok and result.val_score > 0.85  # chance is 0.1
    digital = models.accuracy(result.model, splits.test)
    ideal = crossbar.evaluate(result.model, splits.test, "ideal", [1.0], 2, seed=0)
    assert (ideal == digital).all()  # exact conductances: the digital accuracy, argmax of the decoded scores
    mapped = crossbar.mapped_layers(result.model)
    assert len(mapped) == 3  # two hidden layers and the 7-bit output layer; the decoder is not a crossbar
    noisy = crossbar.evaluate(result.model, splits.test, crossbar.get_preset("lognormal", sigma=1.0), [1.0], 10,
                              seed=0)
    assert 0.1 < noisy.mean() < digital



def test_an_ecoc_lenet_is_within_three_points_of_the_softmax_one():
    splits = models.load_dataset("digits", seed=0)
    clean = {}
    for head in ("softmax", "ecoc"):
        net = models.build("lenet5", splits.in_shape, splits.n_classes, head=head, seed=0)
        clean[head] = models.accuracy(models.train(net, splits, models.TrainConfig(), seed=0).model, splits.test)
    assert clean["ecoc"] >= clean["softmax"] - 0.03, clean


def _lexicode_by_pairs(bits):
    """The lexicographic code as defined: each word joins if it is 3+ bits from every word before."""
    words = []
    for candidate in range(2**bits):
        if all((candidate ^ w).bit_count() >= MIN_DISTANCE for w in words):
            words.append(candidate)
    return words


def _book_by_definition(n_classes, bits):
    words = [w for w in _lexicode_by_pairs(bits) if w]
    chosen = [words[0]]
    nearest = {w: (w ^ words[0]).bit_count() for w in words[1:]}
    while len(chosen) < n_classes:
        best = max(nearest, key=lambda w: (nearest[w], -w))  # farthest, ties to the smaller word
        chosen.append(best)
        del nearest[best]
        nearest = {w: min(d, (w ^ best).bit_count()) for w, d in nearest.items()}
    return torch.tensor([[(w >> (bits - 1 - b)) & 1 for b in range(bits)] for w in chosen], dtype=torch.float32)


@pytest.mark.parametrize("bits", range(3, 13))
def test_the_fast_code_book_is_the_code_book_by_definition(bits):
    from models.ecoc import _lexicode

    assert _lexicode(bits).tolist() == _lexicode_by_pairs(bits)
    for n_classes in sorted({2, 3, 10, 43, len(_lexicode(bits)) - 1}):
        if n_classes < len(_lexicode(bits)):
            assert torch.equal(code_book(n_classes, bits), _book_by_definition(n_classes, bits)), n_classes


def test_the_longest_code_book_is_built_in_seconds():
    start = time.perf_counter()
    book = code_book(1000, 20)  # the largest code_bits: minutes by pairwise comparison (27 s at 18 bits)
    took = time.perf_counter() - start
    assert took < 10, f"code_book(1000, 20) took {took:.1f} s"
    words = (book.numpy().astype("int64") * (1 << torch.arange(19, -1, -1).numpy())).sum(1)
    pairwise = np.bitwise_count(words[:, None] ^ words[None, :])
    assert pairwise[~np.eye(1000, dtype=bool)].min() >= MIN_DISTANCE and len(set(words.tolist())) == 1000
    assert default_bits(2**15 - 2) == 20  # 20 bits hold 2^15 - 1 non-zero words
    with pytest.raises(ValueError, match="no code of at most 20 bits for 32768 classes"):
        default_bits(2**15)

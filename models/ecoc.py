"""Error-correcting output codes (FTNA, Liu et al., DAC 2019): a classifier whose last
layer outputs ``L`` code bits instead of one score per class.

Class ``k`` owns a code word ``C[k]`` of ``L`` bits; the last crossbar layer gives one
logit per bit, and a digital decoder turns them into class scores, the log-likelihood of
each code word (soft decoding)::

    score[k] = sum_b  C[k, b] * log sigmoid(z_b) + (1 - C[k, b]) * log sigmoid(-z_b)

so that the argmax of the scores is the most likely code word and every accuracy
(``crossbar.evaluate`` included) works unchanged. Training minimises the per-bit binary
cross-entropy against the true class's code word, which is ``-score[y] / L``.

The code book (:func:`code_book`) is deterministic: the code words of length ``L`` with
a minimum Hamming distance of at least 3 (a lexicographic code: for ``L = 7`` the
Hamming (7, 4) code), from which the ``K`` words are chosen farthest point first,
starting from the first non-zero word, ties to the smaller word; the ``k``-th chosen
word is class ``k``'s. A code of distance ``d`` corrects ``(d - 1) // 2`` wrong bits by
hard decoding. The default length (:func:`default_bits`) is the shortest whose code has
more than ``K`` words: 7 bits for 10 classes (FTNA's choice), 10 for 43.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: The minimum Hamming distance between any two code words.
MIN_DISTANCE = 3
MAX_BITS = 20


def _lexicode(bits: int, distance: int = MIN_DISTANCE) -> list[int]:
    words: list[int] = []
    for candidate in range(2**bits):
        if all((candidate ^ w).bit_count() >= distance for w in words):
            words.append(candidate)
    return words


def default_bits(n_classes: int) -> int:
    """The shortest code length whose distance-3 code has more than ``n_classes`` words."""
    for bits in range(3, MAX_BITS + 1):
        if len(_lexicode(bits)) > n_classes:
            return bits
    raise ValueError(f"ecoc: no code of at most {MAX_BITS} bits for {n_classes} classes")


def code_book(n_classes: int, bits: int | None = None) -> Tensor:
    """The ``(n_classes, bits)`` code book of 0/1 floats (see the module's text)."""
    bits = default_bits(n_classes) if bits is None else bits
    if isinstance(bits, bool) or not isinstance(bits, int) or not 3 <= bits <= MAX_BITS:
        raise ValueError(f"ecoc: code_bits must be an integer in [3, {MAX_BITS}], got {bits!r}")
    words = [w for w in _lexicode(bits) if w]  # the all-zero word would make every bit's target 0
    if len(words) < n_classes:
        need = default_bits(n_classes)
        raise ValueError(f"ecoc: a {bits}-bit code of distance {MIN_DISTANCE} has {len(words)} non-zero words, "
                         f"fewer than the {n_classes} classes; use code_bits >= {need}")
    chosen = [words[0]]
    nearest = {w: (w ^ words[0]).bit_count() for w in words[1:]}
    while len(chosen) < n_classes:
        best = max(nearest, key=lambda w: (nearest[w], -w))
        chosen.append(best)
        del nearest[best]
        for w in nearest:
            nearest[w] = min(nearest[w], (w ^ best).bit_count())
    return torch.tensor([[(w >> (bits - 1 - b)) & 1 for b in range(bits)] for w in chosen], dtype=torch.float32)


def decode(bit_logits: Tensor, book: Tensor) -> Tensor:
    """Class scores: the log-likelihood of each code word given the bit logits."""
    return F.logsigmoid(bit_logits) @ book.T + F.logsigmoid(-bit_logits) @ (1 - book).T


class EcocHead(nn.Module):
    """The digital decoder after a network's last layer: bit logits -> class scores."""

    def __init__(self, book: Tensor) -> None:
        super().__init__()
        self.register_buffer("book", book)

    def forward(self, bit_logits: Tensor) -> Tensor:
        return decode(bit_logits, self.book)

    def loss(self, scores: Tensor, y: Tensor) -> Tensor:
        """Per-bit binary cross-entropy against the true class's code word."""
        return -scores.gather(1, y[:, None]).mean() / self.book.shape[1]

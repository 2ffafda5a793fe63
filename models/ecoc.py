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

import functools
import itertools

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

#: The minimum Hamming distance between any two code words.
MIN_DISTANCE = 3
MAX_BITS = 20


@functools.lru_cache(maxsize=None)
def _lexicode(bits: int, distance: int = MIN_DISTANCE) -> np.ndarray:
    """The lexicographic code: each word from 0 up joins when it is ``distance`` or more
    bits from every word before it. A word joins unless a word already in lies within
    ``distance - 1`` bits, so each new word crosses out its ball of that radius: one pass
    over the ``2**bits`` candidates (a second at 20 bits), not one comparison per pair."""
    ball = np.array([sum(1 << b for b in flips) for r in range(distance)
                     for flips in itertools.combinations(range(bits), r)], dtype=np.int64)
    crossed = np.zeros(2**bits, dtype=bool)
    words = []
    candidate = 0
    while candidate < 2**bits:
        if not crossed[candidate]:
            words.append(candidate)
            crossed[candidate ^ ball] = True
        candidate += 1
    return np.array(words, dtype=np.int64)


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
    words = _lexicode(bits)[1:]  # without the all-zero word, which would make every bit's target 0
    if len(words) < n_classes:
        need = default_bits(n_classes)
        raise ValueError(f"ecoc: a {bits}-bit code of distance {MIN_DISTANCE} has {len(words)} non-zero words, "
                         f"fewer than the {n_classes} classes; use code_bits >= {need}")
    chosen = [0]  # indices into words, ascending: argmax's first maximum is the smaller word
    nearest = np.bitwise_count(words ^ words[0]).astype(np.int64)
    nearest[0] = -1
    while len(chosen) < n_classes:
        best = int(np.argmax(nearest))
        chosen.append(best)
        nearest = np.minimum(nearest, np.bitwise_count(words ^ words[best]))
        nearest[best] = -1  # chosen words stay at -1: the minimum keeps it
    shifts = np.arange(bits - 1, -1, -1)
    return torch.from_numpy(((words[chosen][:, None] >> shifts) & 1).astype(np.float32))


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

"""Caption text: a tokenizer and a vocabulary built from the training captions.

Tokens are lower-case words (hyphens and apostrophes inside a word are kept, so
"counter-clockwise" is one token) and single punctuation marks::

    >>> tokenize("A red Square, turning counter-clockwise.")
    ['a', 'red', 'square', ',', 'turning', 'counter-clockwise', '.']

The vocabulary stores itself as a plain list of words (``to_list`` /
``from_list``), so it travels inside a ``weights_only`` checkpoint. Ids 0-3 are
always ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import torch

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
_TOKEN = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*|[^\w\s]|_")


def tokenize(text: str) -> list[str]:
    """Lower-case words and separate punctuation marks."""
    return _TOKEN.findall(text.lower())


def normalize_caption(text: str) -> str:
    """The tokens joined by single spaces: how captions are compared and scored."""
    return " ".join(tokenize(text))


class Vocabulary:
    """Word <-> id maps with the four special tokens first."""

    def __init__(self, words: list[str]) -> None:
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {list(SPECIALS)}, got {words[:4]}")
        if len(set(words)) != len(words):
            raise ValueError("a vocabulary lists every word once")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, captions: Iterable[str], min_freq: int = 1) -> Vocabulary:
        """Words seen at least ``min_freq`` times, most frequent first (ties alphabetical)."""
        if min_freq < 1:
            raise ValueError(f"min_freq={min_freq}; use 1 or more")
        counts = Counter(token for text in captions for token in tokenize(text))
        kept = sorted((w for w, n in counts.items() if n >= min_freq and w not in SPECIALS),
                      key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + kept)

    @classmethod
    def from_list(cls, words: list[str]) -> Vocabulary:
        return cls(list(words))

    def to_list(self) -> list[str]:
        return list(self.words)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """``<bos> w1 ... wn <eos>`` as ids, unknown words as ``<unk>``; at most ``max_len`` words."""
        ids = [self.index.get(t, UNK_ID) for t in tokenize(text)]
        if max_len is not None:
            ids = ids[:max_len]
        return [BOS_ID] + ids + [EOS_ID]

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first ``<eos>``; ``<bos>`` and ``<pad>`` dropped."""
        words = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i not in (BOS_ID, PAD_ID):
                words.append(self.words[i] if 0 <= i < len(self.words) else UNK)
        return " ".join(words)


def pad_sequences(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists with ``<pad>``: ids ``(B, L)`` and a mask ``(B, L)``, True on real tokens."""
    if not sequences:
        raise ValueError("pad_sequences needs at least one sequence")
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), PAD_ID, dtype=torch.long)  # (B, L)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    mask = torch.arange(length)[None, :] < torch.tensor([len(s) for s in sequences])[:, None]  # (B, L)
    return ids, mask

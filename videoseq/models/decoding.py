"""Greedy and beam search over any step function.

A *step function* maps the previous tokens ``(N,)`` and a state to log-probabilities
of the next token ``(N, V)`` and the new state. A state is a tuple of tensors whose
first dimension is ``N`` (one row per hypothesis), so beam search can reorder and
repeat rows with ``index_select``; whatever the decoder needs at every step (the
encoder outputs, say) rides along in the state.

Scores: a hypothesis's score is its summed log-probability divided by the GNMT
length penalty ``((5 + n) / 6) ** alpha`` (n tokens including ``<eos>``); ``alpha=0``
ranks by the plain sum, larger ``alpha`` favours longer sentences. Beam search
ranks open hypotheses by their summed log-probability and applies the penalty to
finished ones. With ``beam=1`` it makes exactly the greedy choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

State = tuple[torch.Tensor, ...]
StepFn = Callable[[torch.Tensor, State], tuple[torch.Tensor, State]]


@dataclass(frozen=True)
class Decoding:
    """How captions are written: ``beam`` wide (1: greedy), at most ``max_words`` words, length penalty ``alpha``."""

    beam: int = 1
    max_words: int = 20
    alpha: float = 0.0

    @classmethod
    def of(cls, caption: Any, beam: int | None = None) -> Decoding:
        """What a ``CaptionConfig`` asks for (``beam``, ``max_words``, ``length_penalty``); ``beam`` overrides."""
        return cls(beam=beam or caption.beam, max_words=caption.max_words, alpha=caption.length_penalty)

    def generate(self, model: Any, clips: torch.Tensor) -> list[list[int]]:
        """Token ids per clip of a captioner's ``generate`` (``max_words`` words, then room for ``<eos>``)."""
        return model.generate(clips, beam=self.beam, max_len=self.max_words + 1, alpha=self.alpha)


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``."""
    return ((5.0 + length) / 6.0) ** alpha


def select_rows(state: State, rows: torch.Tensor) -> State:
    """The state of hypotheses ``rows`` (reordered, possibly repeated)."""
    return tuple(t.index_select(0, rows) for t in state)


@torch.no_grad()
def greedy_decode(step: StepFn, state: State, *, batch: int, bos: int, eos: int, max_len: int) -> list[list[int]]:
    """The most likely next token at every step, for ``batch`` sequences at once.

    Returns token ids per sequence, without ``<bos>`` and up to (not including) ``<eos>``.
    """
    device = state[0].device
    tokens = torch.full((batch,), bos, dtype=torch.long, device=device)  # (B,)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    out: list[list[int]] = [[] for _ in range(batch)]
    for _ in range(max_len):
        log_probs, state = step(tokens, state)  # (B, V)
        tokens = log_probs.argmax(dim=1)  # (B,)
        for row in torch.nonzero(~done & (tokens != eos)).flatten().tolist():
            out[row].append(int(tokens[row]))
        done |= tokens == eos
        if bool(done.all()):
            break
    return out


@dataclass
class Hypothesis:
    tokens: list[int]  # without <bos>; ends with <eos> when finished
    log_prob: float
    score: float


@torch.no_grad()
def beam_search(
    step: StepFn, state: State, *, beam: int, bos: int, eos: int, max_len: int, alpha: float = 0.0
) -> Hypothesis:
    """The best hypothesis of a beam search for ONE sequence (state rows: 1).

    Each step extends the open hypotheses by every token, ranks the candidates by
    summed log-probability, moves those ending in ``<eos>`` among the best ``beam``
    to the finished list and keeps the best ``beam`` others open. The search stops
    when ``beam`` hypotheses have finished, none is open, or after ``max_len`` tokens
    (open ones then count as finished). The returned tokens exclude ``<bos>`` and ``<eos>``.
    """
    if beam < 1 or max_len < 1:
        raise ValueError(f"beam={beam} and max_len={max_len} must both be >= 1")
    device = state[0].device
    tokens = torch.full((1,), bos, dtype=torch.long, device=device)  # (K,) last token of each open hypothesis
    sums = torch.zeros(1, device=device)  # (K,)
    history: list[list[int]] = [[]]
    finished: list[Hypothesis] = []
    for length in range(1, max_len + 1):
        log_probs, state = step(tokens, state)  # (K, V)
        vocab = log_probs.shape[1]
        candidates = (sums[:, None] + log_probs.float()).flatten()  # (K*V,)
        top_sums, top_index = candidates.topk(min(2 * beam, candidates.numel()))
        keep_rows, keep_tokens, keep_sums = [], [], []
        for rank, (total, flat) in enumerate(zip(top_sums.tolist(), top_index.tolist())):
            row, token = divmod(flat, vocab)
            if token == eos:
                if rank < beam:
                    finished.append(Hypothesis(history[row] + [eos], total, total / length_penalty(length, alpha)))
            elif len(keep_rows) < beam:
                keep_rows.append(row)
                keep_tokens.append(token)
                keep_sums.append(total)
        if len(finished) >= beam or not keep_rows:
            break
        history = [history[r] + [t] for r, t in zip(keep_rows, keep_tokens)]
        rows = torch.tensor(keep_rows, device=device)
        state = select_rows(state, rows)
        tokens = torch.tensor(keep_tokens, device=device)
        sums = torch.tensor(keep_sums, device=device)
    else:
        finished += [Hypothesis(h, s, s / length_penalty(len(h), alpha)) for h, s in zip(history, sums.tolist())]
    best = max(finished, key=lambda h: h.score)
    return Hypothesis([t for t in best.tokens if t != eos], best.log_prob, best.score)

"""Greedy and beam search: beam 1 is greedy; beam search finds what greedy misses."""

import itertools
import math

import pytest
import torch

from videoseq.models.captioner import CaptionDecoder
from videoseq.models.decoding import beam_search, greedy_decode, select_rows

BOS, EOS = 1, 2


def table_step(table: dict[int, list[float]]):
    """A hand-built decoder: the next-token probabilities depend only on the previous token."""

    def step(tokens, state):
        probs = torch.tensor([table.get(int(t), [0.2] * 5) for t in tokens])  # (N, V)
        return probs.log(), state

    return step


# vocab: 0 pad, 1 bos, 2 eos, 3 A, 4 B. Greedy takes A (0.6) then must pay 0.4 for <eos>
# (A A ... keeps losing); B then <eos> has probability 0.4 * 0.9 = 0.36 > 0.6 * 0.4 = 0.24.
TABLE = {
    BOS: [1e-9, 1e-9, 1e-9, 0.6, 0.4],
    3: [1e-9, 1e-9, 0.4, 0.35, 0.25],
    4: [1e-9, 1e-9, 0.9, 0.05, 0.05],
}


def brute_force_best(table, max_len):
    best, best_logp = None, -math.inf
    for n in range(1, max_len + 1):
        for words in itertools.product([3, 4], repeat=n - 1):
            seq, prev, logp = list(words) + [EOS], BOS, 0.0
            for t in seq:
                logp += math.log(table[prev][t])
                prev = t
            if logp > best_logp:
                best, best_logp = list(words), logp
    return best, best_logp


def test_beam_search_finds_the_better_sequence_greedy_misses():
    step, state = table_step(TABLE), (torch.zeros(1, 1),)
    greedy = greedy_decode(step, state, batch=1, bos=BOS, eos=EOS, max_len=4)[0]
    assert greedy == [3]  # A <eos>: 0.24
    found = beam_search(step, state, beam=2, bos=BOS, eos=EOS, max_len=4)
    best, best_logp = brute_force_best(TABLE, 4)
    assert found.tokens == best == [4]
    assert found.log_prob == pytest.approx(best_logp) and found.log_prob == pytest.approx(math.log(0.36))
    assert beam_search(step, state, beam=1, bos=BOS, eos=EOS, max_len=4).tokens == greedy


def test_length_penalty_can_prefer_longer_sentences():
    table = {BOS: [1e-9, 1e-9, 0.5, 0.5, 1e-9], 3: [1e-9, 1e-9, 0.45, 0.55, 1e-9]}
    table[4] = table[3]
    step, state = table_step(table), (torch.zeros(1, 1),)
    plain = beam_search(step, state, beam=3, bos=BOS, eos=EOS, max_len=6, alpha=0.0)
    long = beam_search(step, state, beam=3, bos=BOS, eos=EOS, max_len=6, alpha=6.0)
    assert plain.tokens == [] and len(long.tokens) > 0


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_beam_one_equals_greedy_on_a_random_decoder(cell):
    torch.manual_seed(0)
    decoder = CaptionDecoder(12, 30, cell=cell, embed=8, hidden=16, attention=8).eval()
    memory = torch.randn(5, 4, 12)  # (B, T, E)
    state = decoder.init_state(memory)
    greedy = greedy_decode(decoder.step, state, batch=5, bos=BOS, eos=EOS, max_len=7)
    for row in range(5):
        one = beam_search(decoder.step, select_rows(state, torch.tensor([row])), beam=1, bos=BOS, eos=EOS, max_len=7)
        assert one.tokens == greedy[row]

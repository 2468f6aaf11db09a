"""A clip captioner: per-frame backbone -> temporal encoder -> attentive recurrent decoder.

The encoder is the classifier's own backbone and temporal head: per frame, the
head's ``sequence`` output ``(B, T, E)`` (what happened up to that frame: motion)
next to the frame's pooled backbone features ``(B, T, D)`` (what the frame shows:
colour, shape). The decoder attends over these ``(B, T, E + D)`` frame vectors
(additive, Bahdanau-style attention) while it writes a sentence word by word. With
``spatial`` it attends over every position of every frame's feature map instead
(``(B, T * h * w, E + D)``, as in Show, Attend and Tell), so the words for the
object's colour and shape can read the object rather than the whole frame. With
``task="both"`` the head's classifier also gives class logits from the same encoder,
so one model classifies and captions; with ``class_posterior`` the decoder is also
given the class head's posterior ``softmax(logits)`` ``(B, C)``: in its first state,
beside every word it reads and in every word's output layer. The class head reads the
motion from the last frame's encoder state, which attention over all frames finds
hard to pick out; the posterior hands the decoder that decision directly.

Token ids are plain ints here (``pad``, ``bos``, ``eos``); the vocabulary itself
lives with the data code (``videoseq.text``) and travels in the checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from videoseq.config import TASKS
from videoseq.errors import UsageError
from videoseq.models.classifier import VideoClassifier
from videoseq.models.decoding import (
    Hypothesis,
    State,
    beam_search,
    greedy_decode,
    select_rows,
)
from videoseq.validation import check_keyword_args, check_value

DECODER_CELLS = {"gru": nn.GRUCell, "lstm": nn.LSTMCell}


class AdditiveAttention(nn.Module):
    """``score(h, m_t) = v^T tanh(W_h h + W_m m_t)``, softmax over the frames."""

    def __init__(self, query_dim: int, memory_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(query_dim, attention_dim, bias=False)
        self.memory = nn.Linear(memory_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, query: torch.Tensor, memory: torch.Tensor,
                keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``query (N, Hq)``, ``memory (N, T, E)``, precomputed ``keys = self.memory(memory)`` ``(N, T, A)``
        -> context ``(N, E)`` and weights ``(N, T)``."""
        energy = self.score(torch.tanh(keys + self.query(query)[:, None])).squeeze(2)  # (N, T)
        weights = energy.softmax(dim=1)  # (N, T)
        return torch.bmm(weights[:, None], memory).squeeze(1), weights  # (N, E), (N, T)


class CaptionDecoder(nn.Module):
    """A GRU or LSTM cell that reads the previous word and an attention context.

    Step t: ``context = attend(h_{t-1}, memory)``; ``h_t = cell([embed(y_{t-1}); context; z], h_{t-1})``;
    ``logits = fc(dropout([h_t; context; z]))``. The first state comes from ``[mean(memory); z]``.
    ``z`` ``(N, condition_dim)`` is a fixed vector per clip (the class posterior); with
    ``condition_dim=0`` it is empty and the decoder reads the memory alone.
    """

    def __init__(
        self,
        memory_dim: int,
        vocab_size: int,
        *,
        cell: str = "gru",
        embed: int = 128,
        hidden: int = 256,
        attention: int = 128,
        dropout: float = 0.3,
        pad_id: int = 0,
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        if cell not in DECODER_CELLS:
            raise UsageError(f"unknown decoder cell {cell!r}; valid cells: {sorted(DECODER_CELLS)}")
        self.cell_kind = cell
        self.vocab_size = vocab_size
        self.condition_dim = condition_dim
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=pad_id)
        self.attention = AdditiveAttention(hidden, memory_dim, attention)
        self.cell = DECODER_CELLS[cell](embed + memory_dim + condition_dim, hidden)
        self.init_h = nn.Linear(memory_dim + condition_dim, hidden)
        self.init_c = nn.Linear(memory_dim + condition_dim, hidden) if cell == "lstm" else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden + memory_dim + condition_dim, vocab_size)

    def init_state(self, memory: torch.Tensor, condition: torch.Tensor | None = None) -> State:
        """``memory (N, T, E)`` and ``condition (N, condition_dim)`` -> the state tuple
        ``(memory, keys, condition, h[, c])``, every part ``(N, ...)``."""
        if condition is None:
            condition = memory.new_zeros(memory.shape[0], 0)  # (N, 0)
        if condition.shape != (memory.shape[0], self.condition_dim):
            raise ValueError(f"the decoder is conditioned on {self.condition_dim} values per clip, "
                             f"got a condition of shape {tuple(condition.shape)} for {memory.shape[0]} clips")
        start = torch.cat([memory.mean(dim=1), condition], dim=1)  # (N, E + Z)
        h = torch.tanh(self.init_h(start))  # (N, H)
        keys = self.attention.memory(memory)  # (N, T, A)
        if self.init_c is None:
            return memory, keys, condition, h
        return memory, keys, condition, h, torch.tanh(self.init_c(start))

    def step_logits(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Previous tokens ``(N,)`` -> next-word logits ``(N, V)`` and the new state."""
        memory, keys, condition, h = state[:4]
        context, _ = self.attention(h, memory, keys)  # (N, E)
        inputs = torch.cat([self.embed(tokens), context, condition], dim=1)  # (N, embed + E + Z)
        if self.init_c is None:
            h = self.cell(inputs, h)  # (N, H)
            new_state: State = (memory, keys, condition, h)
        else:
            h, c = self.cell(inputs, (h, state[4]))  # (N, H) each
            new_state = (memory, keys, condition, h, c)
        return self.fc(self.dropout(torch.cat([h, context, condition], dim=1))), new_state  # (N, V)

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Like :meth:`step_logits` with log-probabilities: the step function of the searches."""
        logits, state = self.step_logits(tokens, state)
        return logits.float().log_softmax(dim=1), state

    def forward(self, memory: torch.Tensor, inputs: torch.Tensor, *, condition: torch.Tensor | None = None,
                sampling: float = 0.0) -> torch.Tensor:
        """Teacher forcing: ``memory (B, T, E)``, input ids ``(B, L)`` (``<bos> w1 ... wn``) -> logits ``(B, L, V)``.

        With ``sampling`` p > 0 (scheduled sampling, Bengio et al. 2015) each input
        after the first is, with probability p, replaced by the model's own most
        likely word of the previous step.
        """
        state = self.init_state(memory, condition)
        tokens = inputs[:, 0]  # (B,)
        steps = []
        for t in range(inputs.shape[1]):
            logits, state = self.step_logits(tokens, state)  # (B, V)
            steps.append(logits)
            if t + 1 < inputs.shape[1]:
                tokens = inputs[:, t + 1]
                if sampling > 0:
                    own = logits.detach().argmax(dim=1)  # (B,)
                    swap = torch.rand(tokens.shape, device=tokens.device) < sampling
                    tokens = torch.where(swap & (tokens != self.embed.padding_idx), own, tokens)
        return torch.stack(steps, dim=1)  # (B, L, V)


class VideoCaptioner(VideoClassifier):
    """A :class:`VideoClassifier` whose temporal head also feeds a :class:`CaptionDecoder`.

    ``forward(clips)`` gives class logits (tasks ``classify`` / ``both``);
    ``forward_both(clips, inputs)`` gives class and word logits under teacher forcing;
    ``generate(clips, beam=...)`` writes token ids. A decoder built with
    ``condition_dim = num_classes`` (task ``both``, ``class_posterior``) is conditioned on
    the class head's posterior, detached: the class loss alone trains the class head.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, decoder: CaptionDecoder, *, task: str,
                 bos_id: int, eos_id: int, spatial: bool = False) -> None:
        super().__init__(backbone, head)
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; valid tasks: {list(TASKS)}")
        if decoder.condition_dim and (task != "both" or decoder.condition_dim != head.num_classes):
            raise ValueError(f"a decoder conditioned on {decoder.condition_dim} values needs task 'both' and a head "
                             f"with as many classes (got task {task!r}, {head.num_classes} classes)")
        self.decoder = decoder
        self.task = task
        self.spatial = spatial
        self.bos_id, self.eos_id = bos_id, eos_id

    @property
    def classifies(self) -> bool:
        return self.task in ("classify", "both")

    def encode_both(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, C, H, W)`` -> the head's sequence ``(B, T, E)`` and the decoder memory:
        ``(B, T, E + D)``, one vector per frame, or with ``spatial`` ``(B, T * h * w, E + D)``,
        one per position of every frame's map (the frame's sequence vector beside the
        position's features)."""
        if not self.spatial:
            features = self.backbone(clips)  # (B, T, D) or (B, T, D, h, w)
            sequence = self.head.sequence(features)  # (B, T, E)
            pooled = features.mean(dim=(3, 4)) if features.dim() == 5 else features  # (B, T, D)
            return sequence, torch.cat([sequence, pooled], dim=2)
        maps = self.backbone(clips, maps=True)  # (B, T, D, h, w)
        sequence = self.head.sequence(maps if self.backbone.spatial else maps.mean(dim=(3, 4)))  # (B, T, E)
        positions = maps.flatten(3).transpose(2, 3)  # (B, T, h*w, D)
        beside = sequence[:, :, None].expand(-1, -1, positions.shape[2], -1)  # (B, T, h*w, E)
        return sequence, torch.cat([beside, positions], dim=3).flatten(1, 2)  # (B, T*h*w, E + D)

    def encode(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> the memory the decoder attends over, ``(B, T[*h*w], E + D)``."""
        return self.encode_both(clips)[1]

    def encode_for_decoder(self, clips: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """One encoding -> class logits ``(B, C)`` (None for task caption), the memory ``(B, T, E + D)``
        and the decoder's condition: the class posterior ``(B, C)``, or None when it takes none."""
        sequence, memory = self.encode_both(clips)
        logits = self.head.classify_sequence(sequence) if self.classifies else None
        condition = logits.detach().softmax(dim=1) if self.decoder.condition_dim else None  # (B, C)
        return logits, memory, condition

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> class logits ``(B, num_classes)``."""
        if not self.classifies:
            raise UsageError("this model was trained to caption only (model.task=caption); it gives no class scores")
        return self.head(self.backbone(clips))

    def forward_both(self, clips: torch.Tensor, inputs: torch.Tensor, *, sampling: float = 0.0,
                     rows: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Class logits ``(B, C)`` (None for task caption) and word logits ``(R, L, V)`` from one encoding.

        ``inputs (R, L)`` holds one caption per clip (``R = B``) or, with ``rows (R,)``, caption
        ``r`` of clip ``rows[r]`` (several references of one clip share its encoding).
        """
        logits, memory, condition = self.encode_for_decoder(clips)
        if rows is not None:
            memory = memory.index_select(0, rows)  # (R, T, E + D)
            condition = None if condition is None else condition.index_select(0, rows)  # (R, C)
        return logits, self.decoder(memory, inputs, condition=condition, sampling=sampling)

    @torch.no_grad()
    def generate(self, clips: torch.Tensor, *, beam: int = 1, max_len: int = 20, alpha: float = 0.0
                 ) -> list[list[int]]:
        """Token ids per clip (no ``<bos>`` / ``<eos>``): greedy for ``beam=1``, else beam search."""
        _, memory, condition = self.encode_for_decoder(clips)
        return self.generate_from_memory(memory, condition=condition, beam=beam, max_len=max_len, alpha=alpha)

    def generate_from_memory(self, memory: torch.Tensor, *, condition: torch.Tensor | None = None, beam: int = 1,
                             max_len: int = 20, alpha: float = 0.0) -> list[list[int]]:
        """Like :meth:`generate`, from encoder outputs ``(B, T, E)`` (and the condition ``(B, C)``)."""
        state = self.decoder.init_state(memory, condition)
        ids = dict(bos=self.bos_id, eos=self.eos_id, max_len=max_len)
        if beam == 1:
            return greedy_decode(self.decoder.step, state, batch=memory.shape[0], **ids)
        found: list[Hypothesis] = [
            beam_search(self.decoder.step, select_rows(state, torch.tensor([row], device=memory.device)),
                        beam=beam, alpha=alpha, **ids)
            for row in range(memory.shape[0])
        ]
        return [h.tokens for h in found]


def check_decoder_args(decoder_args: dict[str, Any]) -> dict[str, Any]:
    """``model.decoder`` keys of the :class:`CaptionDecoder` (not ``class_posterior`` / ``spatial``), checked
    against its signature: names, types and ranges."""
    return check_keyword_args("model.decoder", CaptionDecoder.__init__, decoder_args,
                              leave_out=("pad_id", "condition_dim"), extra=("class_posterior", "spatial"))


def build_captioner(classifier: VideoClassifier, *, task: str, vocab_size: int, special_ids: dict[str, int],
                    decoder_args: dict[str, Any] | None = None) -> VideoCaptioner:
    """Add a caption decoder to a built classifier (its backbone and head become the encoder).

    ``decoder_args``: the :class:`CaptionDecoder` keywords (``cell``, ``embed``, ``hidden``,
    ``attention``, ``dropout``), ``class_posterior`` (task ``both``: condition the decoder
    on the class head's posterior) and ``spatial`` (attend over every position of every
    frame's feature map instead of over whole frames).
    """
    decoder_args = dict(decoder_args or {})
    class_posterior = check_value("model.decoder.class_posterior", decoder_args.pop("class_posterior", False), bool)
    spatial = check_value("model.decoder.spatial", decoder_args.pop("spatial", False), bool)
    decoder_args = check_decoder_args(decoder_args)
    if class_posterior and task != "both":
        raise UsageError(f"model.decoder.class_posterior needs model.task=both (a class head), got task {task!r}")
    memory_dim = classifier.head.sequence_dim + classifier.backbone.feature_dim
    condition_dim = classifier.head.num_classes if class_posterior else 0
    decoder = CaptionDecoder(memory_dim, vocab_size, pad_id=special_ids["pad"], condition_dim=condition_dim,
                             **decoder_args)
    return VideoCaptioner(classifier.backbone, classifier.head, decoder, task=task, spatial=spatial,
                          bos_id=special_ids["bos"], eos_id=special_ids["eos"])

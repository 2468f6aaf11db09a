"""Temporal heads: per-frame features in, clip logits ``(B, num_classes)`` out.

Every head is built as ``HeadClass(feature_dim, num_classes, **head_args)``.
The class attribute ``spatial`` says which features it needs: ``(B, T, D)``
(pooled) or ``(B, T, D, h, w)`` (spatial maps, ConvLSTM only).

Recurrent heads can also run one frame at a time for live video::

    state = head.init_state(batch, device)
    for features_t in frames:                  # (B, D) or (B, D, h, w)
        logits, state = head.step(features_t, state)

which gives the same logits as ``head(features)`` on the whole sequence.
Heads that look at the whole clip at once (``mean``, bidirectional RNNs) have
``supports_step = False``.

Every head is also a temporal encoder: ``sequence(features)`` gives one vector per
frame ``(B, T, sequence_dim)`` (what a caption decoder attends over), and
``forward`` is ``classify_sequence(sequence(features))``.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from videoseq.errors import UsageError
from videoseq.validation import check_keyword_args

RNNState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
ConvLSTMState = tuple[torch.Tensor, torch.Tensor] | None


def check_pooled(features: torch.Tensor, head: str) -> None:
    """Fail clearly when a pooled head receives spatial maps (or vice versa)."""
    if features.dim() != 3:
        raise ValueError(f"head {head!r} expects features (B, T, D), got {tuple(features.shape)}")


class MeanHead(nn.Module):
    """TSN-style baseline: average the frame features over time, dropout, linear."""

    spatial = False
    supports_step = False

    def __init__(self, feature_dim: int, num_classes: int, *, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.sequence_dim = feature_dim
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)

    def sequence(self, features: torch.Tensor) -> torch.Tensor:
        """The frame features themselves, ``(B, T, D)``."""
        check_pooled(features, "mean")
        return features

    def classify_sequence(self, sequence: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, num_classes)`` from the time average."""
        return self.fc(self.dropout(sequence.mean(dim=1)))  # (B, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, num_classes)``."""
        return self.classify_sequence(self.sequence(features))


class RecurrentHead(nn.Module):
    """Shared GRU / LSTM head: classify from the output at the last time step.

    Bidirectional heads concatenate the forward direction's last output with
    the backward direction's first output (both have then seen the whole clip).
    ``dropout`` applies between stacked layers and before the classifier.
    """

    spatial = False
    supports_step = True  # False per instance when bidirectional
    rnn_class: type[nn.RNNBase] = nn.GRU
    kind = "gru"

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        *,
        hidden: int = 256,
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.hidden = hidden
        self.layers = layers
        self.bidirectional = bidirectional
        self.supports_step = not bidirectional
        self.rnn = self.rnn_class(
            feature_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.sequence_dim = hidden * (2 if bidirectional else 1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.sequence_dim, num_classes)

    def sequence(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> the RNN output at every frame, ``(B, T, hidden * directions)``."""
        check_pooled(features, self.kind)
        out, _ = self.rnn(features)  # (B, T, hidden * directions)
        return out

    def classify_sequence(self, out: torch.Tensor) -> torch.Tensor:
        """``(B, T, hidden * directions)`` -> ``(B, num_classes)`` from the output that has seen the clip."""
        if self.bidirectional:
            last = torch.cat([out[:, -1, : self.hidden], out[:, 0, self.hidden :]], dim=1)  # (B, 2*hidden)
        else:
            last = out[:, -1]  # (B, hidden)
        return self.fc(self.dropout(last))  # (B, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, num_classes)``."""
        return self.classify_sequence(self.sequence(features))

    def _check_step(self) -> None:
        if not self.supports_step:
            raise UsageError(
                f"head {self.kind!r} with bidirectional=True needs the whole clip and cannot step "
                "frame by frame; use bidirectional=False or sliding-window prediction"
            )

    def init_state(self, batch: int, device: torch.device | str) -> RNNState:
        """Zero hidden state, ``(layers, B, hidden)`` (a pair ``(h, c)`` for LSTM)."""
        self._check_step()
        h = torch.zeros(self.layers, batch, self.hidden, device=device)  # (L, B, hidden)
        return (h, torch.zeros_like(h)) if self.rnn_class is nn.LSTM else h

    def step(self, features_t: torch.Tensor, state: RNNState | None) -> tuple[torch.Tensor, RNNState]:
        """One frame: ``(B, D)`` and the previous state -> ``(B, num_classes)`` and the new state."""
        self._check_step()
        out, state = self.rnn(features_t.unsqueeze(1), state)  # (B, 1, hidden)
        return self.fc(self.dropout(out[:, -1])), state  # (B, num_classes)


class GRUHead(RecurrentHead):
    """GRU over the frame features; see :class:`RecurrentHead`."""

    rnn_class = nn.GRU
    kind = "gru"


class LSTMHead(RecurrentHead):
    """LSTM over the frame features; see :class:`RecurrentHead`."""

    rnn_class = nn.LSTM
    kind = "lstm"


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell (Shi et al., 2015) without peephole connections.

    The four gates come from one convolution over ``concat(input, hidden)``, so
    the hidden state keeps its spatial layout ``(B, hidden, h, w)``.
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise UsageError(f"convlstm kernel_size must be odd to keep the map size, got {kernel_size}")
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)
        with torch.no_grad():  # forget-gate bias 1: remember by default early in training
            self.gates.bias[hidden : 2 * hidden].fill_(1.0)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, C, h, w)``, ``(h, c)`` each ``(B, hidden, h, w)`` -> the new ``(h, c)``."""
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)  # each (B, hidden, h, w)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, hidden, h, w)
        h = torch.sigmoid(o) * torch.tanh(c)  # (B, hidden, h, w)
        return h, c


class ConvLSTMHead(nn.Module):
    """ConvLSTM over spatial feature maps, then pool, dropout and linear.

    ``proj_channels`` adds a 1x1 convolution (+ReLU) that first reduces the
    backbone's ``D`` channels, which keeps the gate convolution small.
    """

    spatial = True
    supports_step = True

    def __init__(
        self,
        feature_dim: int,
        num_classes: int,
        *,
        hidden: int = 64,
        proj_channels: int | None = None,
        kernel_size: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.hidden = hidden
        if proj_channels is None:
            self.proj: nn.Module = nn.Identity()
            cell_in = feature_dim
        else:
            self.proj = nn.Sequential(nn.Conv2d(feature_dim, proj_channels, 1), nn.ReLU(inplace=True))
            cell_in = proj_channels
        self.cell = ConvLSTMCell(cell_in, hidden, kernel_size)
        self.sequence_dim = hidden
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def init_state(
        self, batch: int, device: torch.device | str, size: tuple[int, int] | None = None
    ) -> ConvLSTMState:
        """Zero ``(h, c)`` of shape ``(B, hidden, h, w)``; None when the map size is not known yet.

        A None state is replaced by zeros at the first :meth:`step`, once the
        feature map size is known.
        """
        if size is None:
            return None
        h = torch.zeros(batch, self.hidden, *size, device=device)  # (B, hidden, h, w)
        return h, torch.zeros_like(h)

    def _advance(self, features_t: torch.Tensor, state: ConvLSTMState) -> tuple[torch.Tensor, torch.Tensor]:
        """One cell update from ``(B, D, h, w)`` features."""
        x = self.proj(features_t)  # (B, C, h, w)
        if state is None:
            state = self.init_state(x.shape[0], x.device, size=(x.shape[2], x.shape[3]))
        return self.cell(x, state)

    def _classify(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, hidden, h, w)`` -> ``(B, num_classes)`` by global average pooling."""
        return self.fc(self.dropout(h.mean(dim=(2, 3))))  # (B, num_classes)

    def sequence(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D, h, w)`` -> the hidden map of every frame, average pooled, ``(B, T, hidden)``."""
        if features.dim() != 5:
            raise ValueError(
                f"head 'convlstm' expects spatial features (B, T, D, h, w), got {tuple(features.shape)}"
            )
        state: ConvLSTMState = None
        pooled = []
        for t in range(features.shape[1]):
            state = self._advance(features[:, t], state)  # each (B, hidden, h, w)
            pooled.append(state[0].mean(dim=(2, 3)))  # (B, hidden)
        return torch.stack(pooled, dim=1)  # (B, T, hidden)

    def classify_sequence(self, sequence: torch.Tensor) -> torch.Tensor:
        """``(B, T, hidden)`` -> ``(B, num_classes)`` from the last frame's pooled state."""
        return self.fc(self.dropout(sequence[:, -1]))  # (B, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D, h, w)`` -> ``(B, num_classes)``."""
        return self.classify_sequence(self.sequence(features))

    def step(self, features_t: torch.Tensor, state: ConvLSTMState) -> tuple[torch.Tensor, ConvLSTMState]:
        """One frame: ``(B, D, h, w)`` and the previous state -> ``(B, num_classes)`` and the new state."""
        state = self._advance(features_t, state)
        return self._classify(state[0]), state


HEADS: dict[str, type[nn.Module]] = {
    "mean": MeanHead,
    "gru": GRUHead,
    "lstm": LSTMHead,
    "convlstm": ConvLSTMHead,
}


def get_head_class(name: str) -> type[nn.Module]:
    """Look up ``name`` in :data:`HEADS`; unknown names list the valid ones."""
    if name not in HEADS:
        raise UsageError(f"unknown head {name!r}; valid heads: {sorted(HEADS)}")
    return HEADS[name]


def head_arg_names(name: str) -> list[str]:
    """The keyword arguments head ``name`` accepts in ``head_args``."""
    params = inspect.signature(get_head_class(name).__init__).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def check_head_args(name: str, head_args: dict) -> dict:
    """``head_args`` checked against the keyword arguments of head ``name``: names, types (from its
    signature) and ranges (sizes >= 1, dropout in [0, 1)); a ``ConfigError`` names the first wrong key."""
    return check_keyword_args("model.head_args", get_head_class(name).__init__, head_args, owner=f"head {name!r}")

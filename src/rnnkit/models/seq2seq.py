"""Encoder-decoder (sequence to sequence) with optional attention.

    encoder: Embedding -> Recurrent (any cell, stacked, bidirectional) over the source, with lengths
    bridge:  the encoder's final state -> the decoder's initial state, h = tanh(W [h_fwd; h_bwd] + b)
             for each layer (other state entries, e.g. the LSTM cell, without tanh); the
             identity when the encoder is unidirectional and as wide as the decoder
    decoder: Embedding -> Recurrent (same cell, unidirectional) over the target, then
             with attention (Luong et al. 2015, scored with the current decoder output h_t):
                 c_t = sum_i a_{t,i} e_i,  a_{t,.} = softmax_i g(h_t, e_i)   (rnnkit.models.attention)
                 h~_t = tanh(W_c [h_t; c_t]),  p(y_t | y_<t, x) = softmax(W_o h~_t)
             and with input feeding h~_{t-1} is concatenated to the embedding of y_{t-1};
             without attention (Sutskever et al. 2014) p(y_t | ...) = softmax(W_o h_t).

Training uses teacher forcing: the decoder reads the gold target shifted right
(start token first). With `sampling_probability` p > 0 (scheduled sampling, Bengio
et al. 2015) each row reads, with probability p, the model's own previous argmax
token instead of the gold one.

Decoding runs `decode_step` once per token from `start(source, lengths)`; `reorder_state`
picks rows of a DecoderState for beam search:

    decode(model.decode_step, model.start(source, lengths), N, BeamSearch(5), bos=.., eos=..,
           max_length=.., reorder=model.reorder_state)          # rnnkit.decode.decode
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..layers import Dropout, Recurrent
from .attention import ATTENTION_KINDS, Attention


class DecoderState(NamedTuple):
    """Everything a decoder step needs, B rows.

    rnn: the decoder's recurrent state, tuple of (layers, B, H).
    feed: (B, H) the previous attentional vector h~ (input feeding), else None.
    memory: (B, S, He) encoder outputs; keys: (B, S, K) their projection; mask: (B, S)
        True at real source positions (all None without attention).
    weights: (B, S) the attention weights of the last step (None before the first or
        without attention).
    """

    rnn: tuple
    feed: torch.Tensor | None
    memory: torch.Tensor | None
    keys: torch.Tensor | None
    mask: torch.Tensor | None
    weights: torch.Tensor | None


class Seq2SeqOutput(NamedTuple):
    """logits (N, T, V) of every target step; attention (N, T, S) weights, None without attention."""

    logits: torch.Tensor
    attention: torch.Tensor | None


class Seq2Seq(nn.Module):
    """Recurrent encoder-decoder over token ids.

    source_vocab_size, target_vocab_size: V_s, V_t (id `pad_id` is padding in both).
    cell: any rnnkit cell name (with **cell_options, e.g. variant="peephole").
    hidden_size: H of the decoder (and of the encoder unless encoder_hidden_size is set).
    embedding_size: E of both embeddings (default: hidden_size).
    num_layers: stacked layers of encoder and decoder.
    bidirectional: a bidirectional encoder (its states are 2·He wide).
    attention: "additive", "dot", "general" or "none".
    input_feeding: feed h~_{t-1} into step t (Luong); ignored without attention.
    dropout: on embeddings, between stacked layers and before the output layer.
    """

    def __init__(self, source_vocab_size: int, target_vocab_size: int, cell: str = "lstm", hidden_size: int = 128,
                 embedding_size: int | None = None, num_layers: int = 1, bidirectional: bool = True,
                 attention: str = "additive", input_feeding: bool = True, dropout: float = 0.0,
                 encoder_hidden_size: int | None = None, pad_id: int = 0, **cell_options):
        super().__init__()
        if attention not in ATTENTION_KINDS + ("none",):
            raise ValueError(f"unknown attention {attention!r}: expected one of "
                             f"{', '.join(ATTENTION_KINDS + ('none',))}")
        E, H = embedding_size or hidden_size, hidden_size
        He = encoder_hidden_size or hidden_size
        dirs = 2 if bidirectional else 1
        self.hidden_size, self.num_layers, self.pad_id = H, num_layers, pad_id
        self.input_feeding = input_feeding and attention != "none"
        self.source_embed = nn.Embedding(source_vocab_size, E, padding_idx=pad_id)
        self.target_embed = nn.Embedding(target_vocab_size, E, padding_idx=pad_id)
        self.encoder = Recurrent(cell, E, He, num_layers=num_layers, bidirectional=bidirectional,
                                 dropout=dropout, **cell_options)
        self.decoder = Recurrent(cell, E + (H if self.input_feeding else 0), H, num_layers=num_layers,
                                 dropout=dropout, **cell_options)
        self.num_cell_states = len(self.decoder.cells[0].state_names)
        self.bridge = None
        if dirs * He != H:
            self.bridge = nn.ModuleList(nn.Linear(dirs * He, H) for _ in range(self.num_cell_states))
        self.attention = None if attention == "none" else Attention(attention, H, dirs * He)
        if self.attention is not None:
            self.combine = nn.Linear(H + dirs * He, H)  # W_c of h~ = tanh(W_c [h; c])
        self.dropout = Dropout(dropout)
        self.out = nn.Linear(H, target_vocab_size)
        self.dirs = dirs

    # -- encoder -------------------------------------------------------------------------
    def start(self, source: torch.Tensor, lengths: torch.Tensor) -> DecoderState:
        """Encode `source` (N, S) ids with `lengths` (N,) and return the decoder's initial state."""
        if source.dim() != 2:
            raise ValueError(f"source must be (N, S) token ids, got shape {tuple(source.shape)}")
        lengths = lengths.to("cpu")
        memory, final = self.encoder(self.dropout(self.source_embed(source)), None, lengths)  # (N, S, dirs*He)
        N = source.shape[0]
        rnn = []
        for k, entry in enumerate(final[: self.num_cell_states]):  # each (layers*dirs, N, He)
            entry = entry.view(self.num_layers, self.dirs, N, -1).permute(0, 2, 1, 3).reshape(self.num_layers, N, -1)
            if self.bridge is not None:
                entry = self.bridge[k](entry)  # (layers, N, H)
                entry = torch.tanh(entry) if k == 0 else entry
            rnn.append(entry.contiguous())
        feed = memory.new_zeros(N, self.hidden_size) if self.input_feeding else None
        if self.attention is None:
            return DecoderState(tuple(rnn), feed, None, None, None, None)
        S = source.shape[1]
        mask = torch.arange(S, device=source.device).unsqueeze(0) < lengths.to(source.device).unsqueeze(1)  # (N, S)
        return DecoderState(tuple(rnn), feed, memory, self.attention.keys(memory), mask, None)

    # -- decoder -------------------------------------------------------------------------
    def _output(self, out: torch.Tensor, state: DecoderState):
        """Decoder outputs (..., H) -> (logits, attentional vector h~ or None, weights or None)."""
        if self.attention is None:
            return self.out(self.dropout(out)), None, None
        context, weights = self.attention(out, state.memory, state.mask, state.keys)
        hidden = torch.tanh(self.combine(torch.cat([out, context], dim=-1)))
        return self.out(self.dropout(hidden)), hidden, weights

    def decode_step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """One decoder step: tokens (B,) the previous target tokens -> (logits (B, V), new state)."""
        x = self.dropout(self.target_embed(tokens))  # (B, E)
        if self.input_feeding:
            x = torch.cat([x, state.feed], dim=-1)  # (B, E + H)
        out, rnn = self.decoder.step(x, state.rnn)  # (B, H)
        logits, hidden, weights = self._output(out, state._replace(rnn=rnn))
        return logits, state._replace(rnn=rnn, feed=hidden if self.input_feeding else None, weights=weights)

    @staticmethod
    def reorder_state(state: DecoderState, rows: torch.Tensor) -> DecoderState:
        """The rows `rows` (B,) of a DecoderState (beam search follows its prefixes with this)."""
        def pick(t, dim=0):
            return None if t is None else t.index_select(dim, rows)
        return DecoderState(tuple(pick(s, 1) for s in state.rnn), pick(state.feed), pick(state.memory),
                            pick(state.keys), pick(state.mask), pick(state.weights))

    def forward(self, source: torch.Tensor, lengths: torch.Tensor, target_in: torch.Tensor,
                sampling_probability: float = 0.0) -> Seq2SeqOutput:
        """Teacher-forced decoding of `target_in` (N, T) (start token first) given `source` (N, S).

        lengths: (N,) real source lengths. sampling_probability: scheduled sampling (training only).
        Returns Seq2SeqOutput(logits (N, T, V), attention (N, T, S) or None).
        """
        state = self.start(source, lengths)
        scheduled = self.training and sampling_probability > 0
        if not (self.input_feeding or scheduled):  # the whole target in one recurrent pass
            out, _ = self.decoder(self.dropout(self.target_embed(target_in)), state.rnn)  # (N, T, H)
            logits, _, weights = self._output(out, state)
            return Seq2SeqOutput(logits, weights)
        logits, weights = [], []
        tokens = target_in[:, 0]
        for t in range(target_in.shape[1]):
            if scheduled and t > 0:
                own = logits[-1].argmax(-1)  # (N,) the model's previous choice
                coin = torch.rand(own.shape, device=own.device) < sampling_probability
                tokens = torch.where(coin, own, target_in[:, t])
            elif t > 0:
                tokens = target_in[:, t]
            step_logits, state = self.decode_step(tokens, state)
            logits.append(step_logits)
            weights.append(state.weights)
        attention = torch.stack(weights, dim=1) if self.attention is not None else None  # (N, T, S)
        return Seq2SeqOutput(torch.stack(logits, dim=1), attention)

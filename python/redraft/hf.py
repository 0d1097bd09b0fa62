"""redraft.hf: a Hugging Face transformers causal LM as a redraft target model.

``HFTarget(model)`` implements the TargetModel protocol (redraft.TargetModel) over any
``*ForCausalLM`` whose decoder accepts a 4-D attention mask, ``position_ids`` and a
``transformers.Cache`` (the Llama family: Llama, Mistral, Qwen2, ...):

* prefill runs each prompt through the decoder, filling the request's KV slot;
* verify is ONE forward pass over the packed tree tokens of every request, with
  ``position_ids`` = committed length + depth and a 4-D additive attention mask
  [B, 1, n_max, K] that lets tree node i see the request's committed entries and its own
  ancestors (the tree mask), over the committed cache;
* commit keeps only the accepted entries of the cache (the root and the accepted path, moved
  right after the committed prefix), so no rejected token is ever attended to again;
* the hidden state handed to the draft head is the decoder's last-layer, post-final-norm output
  (``last_hidden_state``, which is ``hidden_states[-1]`` for Llama).

The KV cache lives in one preallocated tensor per layer and K/V, [slots, kv_heads, capacity,
head_dim]; request r's committed entries are 0 .. committed_r - 1 of its slot, and the verify
pass writes tree node i at committed_r + i (the convention of redraft's KV plans).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch
from transformers.cache_utils import Cache

__all__ = ["HFTarget", "hf_greedy_generate", "hf_prompt_lookup_generate", "patch_transformers_for_old_torch"]


class _SlotCache(Cache):
    """A transformers Cache that writes each forward's keys and values at chosen positions of
    chosen slots and returns the first ``kv_len`` entries of those slots (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: List[torch.Tensor] = []  # per layer [S, kv_heads, capacity, head_dim]
        self.values: List[torch.Tensor] = []
        self.slots = 0
        self.capacity = 0
        # Set before every forward by HFTarget:
        self.rows: Optional[torch.Tensor] = None  # [B] int64 slot of each batch row
        self.row_slice: Optional[slice] = None  # the same as a slice when the slots are consecutive
        self.cols: Optional[torch.Tensor] = None  # [B, n] int64 cache position of each new token
        self.kv_len = 0  # entries returned (and attended to) per row

    def reserve(self, slots: int, capacity: int) -> None:
        """Grows every layer's buffers to at least [slots, ..., capacity, ...], keeping contents."""
        self.slots = max(self.slots, slots)
        self.capacity = max(self.capacity, capacity)
        for store in (self.keys, self.values):
            for i, t in enumerate(store):
                if t.shape[0] < self.slots or t.shape[2] < self.capacity:
                    grown = t.new_zeros((self.slots, t.shape[1], self.capacity, t.shape[3]))
                    grown[: t.shape[0], :, : t.shape[2]] = t
                    store[i] = grown

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
        # key_states, value_states: [B, kv_heads, n, head_dim]
        if layer_idx == len(self.keys):
            shape = (self.slots, key_states.shape[1], self.capacity, key_states.shape[3])
            self.keys.append(key_states.new_zeros(shape))
            self.values.append(value_states.new_zeros(shape))
        k, v = self.keys[layer_idx], self.values[layer_idx]
        rows = self.rows[:, None]  # [B, 1]
        k[rows, :, self.cols] = key_states.transpose(1, 2)  # [B, n, kv_heads, head_dim]
        v[rows, :, self.cols] = value_states.transpose(1, 2)
        if self.row_slice is not None:  # a view, no copy
            return k[self.row_slice, :, : self.kv_len], v[self.row_slice, :, : self.kv_len]
        return k[self.rows, :, : self.kv_len], v[self.rows, :, : self.kv_len]

    def get_seq_length(self, layer_idx: Optional[int] = 0) -> int:
        return self.kv_len

    def get_max_cache_shape(self) -> Optional[int]:
        return None

    def move(self, slot_of_entry: torch.Tensor, source: torch.Tensor, destination: torch.Tensor) -> None:
        """entry e: cache[slot_of_entry[e], :, destination[e]] = cache[slot_of_entry[e], :, source[e]].
        The right side is gathered first, so overlapping moves read the old values."""
        for store in (self.keys, self.values):
            for t in store:
                t[slot_of_entry, :, destination] = t[slot_of_entry, :, source]


class HFTarget:
    """A Hugging Face causal LM as a redraft target (see the module doc).

    model: a ``*ForCausalLM`` in eval mode, on the CPU (redraft's backend here is the CPU).
    max_context: the longest sequence a slot holds (default: config.max_position_embeddings).

    Attributes for the loop: vocab_size, hidden_size, max_context, embedding() [V, H] float32
    (the model's input embedding table, shared without a copy), prefill, verify, commit.
    ``forward_calls`` counts decoder forward passes (prefill + verify).
    """

    def __init__(self, model, max_context: Optional[int] = None) -> None:
        self.model = model.eval()
        config = model.config
        self.decoder = model.get_decoder()
        self.lm_head = model.get_output_embeddings()
        self.vocab_size = int(config.vocab_size)
        self.hidden_size = int(config.hidden_size)
        self.max_context = int(max_context or config.max_position_embeddings)
        weight = model.get_input_embeddings().weight.detach()
        self._embedding = weight if weight.dtype == torch.float32 else weight.float()
        self._embedding = self._embedding.contiguous()
        self._dtype = next(model.parameters()).dtype
        self.cache = _SlotCache()
        self.committed: dict[int, int] = {}  # slot -> committed length
        self.forward_calls = 0

    def embedding(self) -> torch.Tensor:
        return self._embedding  # [V, H]

    # ---- helpers ----
    def _forward(self, input_ids, position_ids, mask, rows: Sequence[int], cols, kv_len: int):
        cache = self.cache
        cache.rows = torch.as_tensor(rows, dtype=torch.long)
        first = rows[0]
        consecutive = all(r == first + i for i, r in enumerate(rows))
        cache.row_slice = slice(first, first + len(rows)) if consecutive else None
        cache.cols = cols
        cache.kv_len = kv_len
        self.forward_calls += 1
        out = self.decoder(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            cache_position=torch.arange(input_ids.shape[1]),
        )
        hidden = out.last_hidden_state  # [B, n, H], post final norm
        return self.lm_head(hidden), hidden  # [B, n, V], [B, n, H]

    def _min(self) -> float:
        return torch.finfo(self._dtype).min

    # ---- TargetModel protocol ----
    @torch.no_grad()
    def prefill(self, slots, token_offsets, tokens):
        """slots [R] int32, token_offsets [R + 1] int32, tokens [sum] int32 ->
        (logits [R, V] float32, hidden [R, H] float32) at each prompt's last token."""
        slots = [int(s) for s in slots]
        lengths = np.diff(token_offsets)
        self.cache.reserve(max(slots) + 1, self.max_context + 1)
        logits_rows, hidden_rows = [], []
        for r, slot in enumerate(slots):
            n = int(lengths[r])
            ids = torch.from_numpy(np.asarray(tokens[token_offsets[r] : token_offsets[r + 1]], dtype=np.int64))
            # Causal mask over the prompt, additive: 0 = attend, min = masked.
            mask = torch.full((n, n), self._min(), dtype=self._dtype).triu(1)[None, None]
            logits, hidden = self._forward(
                ids[None], torch.arange(n)[None], mask, [slot], torch.arange(n)[None], n
            )
            logits_rows.append(logits[0, -1])
            hidden_rows.append(hidden[0, -1])
            self.committed[slot] = n
        return (
            torch.stack(logits_rows).float().contiguous(),
            torch.stack(hidden_rows).float().contiguous(),
        )

    @torch.no_grad()
    def verify(self, batch):
        """batch: redraft.VerifyBatch -> (logits [n_total, V] float32, hidden [n_total, H] float32),
        row i for packed node i, from one forward pass over every request's tree."""
        slots = [int(s) for s in batch.slots]
        offsets = batch.node_offsets
        counts = np.diff(offsets)  # [B] n_b
        b, n_max = len(slots), int(counts.max())
        committed = np.array([self.committed[s] for s in slots], dtype=np.int64)  # [B]
        kv_len = int(committed.max()) + n_max
        self.cache.reserve(max(slots) + 1, kv_len)

        input_ids = torch.zeros((b, n_max), dtype=torch.long)  # padding rows: token 0
        position_ids = torch.zeros((b, n_max), dtype=torch.long)
        # [B, 1, n_max, kv_len]: committed prefix visible to every real row, tree part = tree mask.
        allowed = torch.zeros((b, 1, n_max, kv_len), dtype=torch.bool)
        tokens = torch.from_numpy(batch.tokens.astype(np.int64))
        positions = torch.from_numpy(batch.positions.astype(np.int64))
        tree_masks = _tree_masks(batch, counts)
        for i in range(b):
            n, c, first = int(counts[i]), int(committed[i]), int(offsets[i])
            input_ids[i, :n] = tokens[first : first + n]
            position_ids[i, :n] = positions[first : first + n]
            position_ids[i, n:] = positions[first + n - 1]
            allowed[i, 0, :n, :c] = True
            allowed[i, 0, :n, c : c + n] = tree_masks[i]
            allowed[i, 0, n:, 0] = True  # padding rows see one entry, so their softmax stays finite
        mask = torch.zeros(allowed.shape, dtype=self._dtype).masked_fill_(~allowed, self._min())
        cols = torch.from_numpy(committed)[:, None] + torch.arange(n_max)[None]  # [B, n_max]
        logits, hidden = self._forward(input_ids, position_ids, mask, slots, cols, kv_len)
        if b == 1:
            return logits[0].float().contiguous(), hidden[0].float().contiguous()
        rows = torch.cat([torch.arange(int(counts[i])) + i * n_max for i in range(b)])  # [n_total]
        return (
            logits.reshape(b * n_max, -1).index_select(0, rows).float().contiguous(),
            hidden.reshape(b * n_max, -1).index_select(0, rows).float().contiguous(),
        )

    @torch.no_grad()
    def commit(self, plan) -> None:
        """plan: redraft.KVPlan. Moves each kept node's entry from committed + source_node to its
        destination and sets the slot's committed length past the last one."""
        offsets = plan.offsets
        counts = np.diff(offsets)
        slot_of_entry = np.repeat(plan.slot, counts)
        base = np.repeat(plan.destination[offsets[:-1]], counts)  # committed length before the step
        source = torch.from_numpy((base + plan.source_node).astype(np.int64))
        destination = torch.from_numpy(plan.destination.astype(np.int64))
        self.cache.move(torch.from_numpy(slot_of_entry.astype(np.int64)), source, destination)
        for r, slot in enumerate(plan.slot):
            self.committed[int(slot)] = int(plan.destination[offsets[r + 1] - 1]) + 1


def _tree_masks(batch, counts) -> List[torch.Tensor]:
    """Each request's ancestor-or-self mask [n_b, n_b] bool, from the dense mask when the decoder
    built it (DecodeOptions(masks='dense' or 'both')), else unpacked from the packed rows."""
    masks = []
    for i, n in enumerate(int(c) for c in counts):
        if batch.dense_mask is not None:
            block = batch.dense_mask[batch.dense_offsets[i] : batch.dense_offsets[i + 1]].reshape(n, n)
        else:
            first = int(batch.node_offsets[i])
            words = batch.packed_mask[first : first + n]  # [n, words_per_row] uint32
            j = np.arange(n)
            block = (words[:, j // 32] >> (j % 32).astype(np.uint32)) & 1
        masks.append(torch.from_numpy(np.ascontiguousarray(block, dtype=np.uint8)).bool())
    return masks


def patch_transformers_for_old_torch() -> None:
    """transformers 4.49's generate() probes torch.distributed.fsdp, which does not import under
    Debian's torch 1.13 on Python 3.11; assisted generation also calls is_fsdp_managed_module.
    Replaces that probe by one that returns False (nothing here runs under FSDP)."""
    import transformers.generation.utils as generation_utils

    generation_utils.is_fsdp_managed_module = lambda module: False


def _eos_outside_vocab(model) -> int:
    # NOTE: the config may have no eos token; an id past the vocabulary never stops generation.
    eos = model.generation_config.eos_token_id
    return model.config.vocab_size if eos is None else eos


@torch.no_grad()
def hf_greedy_generate(model, prompt: Sequence[int], max_new_tokens: int) -> List[int]:
    """HF's own greedy decoding (model.generate(do_sample=False)) of one prompt: the new tokens."""
    patch_transformers_for_old_torch()
    ids = torch.tensor([list(prompt)], dtype=torch.long)
    eos = _eos_outside_vocab(model)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        min_new_tokens=0,
        synced_gpus=False,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    return out[0, ids.shape[1] :].tolist()


@torch.no_grad()
def hf_prompt_lookup_generate(model, prompt: Sequence[int], max_new_tokens: int, num_tokens: int = 10) -> List[int]:
    """HF's prompt lookup decoding (prompt_lookup_num_tokens), greedy. NOTE: transformers 4.49 may
    return a few tokens more than asked; they are cut to max_new_tokens here."""
    patch_transformers_for_old_torch()
    ids = torch.tensor([list(prompt)], dtype=torch.long)
    eos = _eos_outside_vocab(model)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        prompt_lookup_num_tokens=num_tokens,
        synced_gpus=False,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    return out[0, ids.shape[1] : ids.shape[1] + max_new_tokens].tolist()

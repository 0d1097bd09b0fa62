"""The target-model protocol of SpeculativeDecoder: the Python mirror of the C++ ``TargetModel``
concept (include/redraft/loop/target_model.hpp).

The loop never owns the model nor its KV cache; it refers to sequences by *slot*. Arrays passed
in are NumPy int32 arrays the target may keep; arrays returned may be NumPy arrays or PyTorch CPU
tensors (float32, C-contiguous), read in place without a copy and kept referenced by the loop
until the target's next call.
"""

from typing import Any, Protocol, Tuple, runtime_checkable


@runtime_checkable
class TargetModel(Protocol):
    """What ``SpeculativeDecoder(target, ...)`` calls. Attributes may be ints or methods.

    vocab_size, hidden_size   V and H.
    max_context               the longest sequence a slot holds, prompt and tree included.
    embedding()               the input embedding table [V, H] float32 (the draft head reads it).
    prefill(slots [R], token_offsets [R + 1], tokens [sum of prompt lengths])
        starts each slot from empty with its prompt tokens[token_offsets[r]:token_offsets[r + 1]],
        fills its KV cache, and returns (logits [R, V], hidden [R, H]) of each prompt's last token;
        hidden is the last layer's post-final-norm state.
    verify(batch: VerifyBatch)
        one forward pass over the packed tree tokens of every listed slot, attending to the slot's
        committed KV entries plus the tree under the tree mask, at batch.positions; returns
        (logits [n_total, V], hidden [n_total, H]), row i for packed node i. The tree's KV entries
        are pending until commit; node i's entry is thought of as sitting at committed + i.
    commit(plan: KVPlan)
        for each request r: keeps the pending entries of plan.source_node[offsets[r]:offsets[r + 1]]
        at positions plan.destination[...] (the committed prefix grows by their count) and drops
        the rest of the tree.
    """

    vocab_size: Any
    hidden_size: Any
    max_context: Any

    def embedding(self) -> Any: ...

    def prefill(self, slots: Any, token_offsets: Any, tokens: Any) -> Tuple[Any, Any]: ...

    def verify(self, batch: Any) -> Tuple[Any, Any]: ...

    def commit(self, plan: Any) -> None: ...

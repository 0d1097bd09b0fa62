"""redraft: ReDrafter-style speculative decoding on NumPy and PyTorch arrays.

The compiled module ``redraft._redraft`` binds the header-only C++ library; every function takes
any CPU array that speaks DLPack or the buffer protocol (NumPy arrays, PyTorch CPU tensors)
without copying it, checks its dtype and shape, and raises ``ValueError`` with the C++ message
on bad input. Results are NumPy arrays that own their memory (``torch.from_numpy`` wraps them
without a copy).

Components (shapes in each docstring): trees (``build_tree``, ``build_tree_from_parents``,
``build_tree_from_choices``), masks and positions (``build_dense_tree_mask``,
``build_packed_tree_mask``, ``build_attention_mask``, ``build_padded_attention_mask``,
``build_positions``), verifiers (``verify_greedy``, ``verify_lossless``, ``verify_redrafter``,
``verify_typical``) and logits processing, KV plans (``make_kv_plan``, ``apply_kv_plan``), the
draft head (``DraftHead.load``, ``beam_search``), the distillation losses
(``drafter_cross_entropy``, ``distill_loss``) and the loop (``SpeculativeDecoder``, with a
fixed draft shape, plain steps, or an ``AdaptivePolicy`` that picks each step's shape).

``redraft.hf`` adapts Hugging Face causal LMs as targets.
"""

from ._redraft import (
    Acceptance,
    AdaptivePolicy,
    DecodeOptions,
    DraftHead,
    GenerationResult,
    KVPlan,
    RequestStats,
    SpeculativeDecoder,
    StepStats,
    Tree,
    VerifyBatch,
    apply_kv_plan,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    beam_search,
    build_attention_mask,
    build_dense_tree_mask,
    build_packed_tree_mask,
    build_padded_attention_mask,
    build_positions,
    build_tree,
    build_tree_from_choices,
    build_tree_from_parents,
    distill_loss,
    drafter_cross_entropy,
    make_kv_plan,
    to_log_probs,
    to_probs,
    verify_greedy,
    verify_lossless,
    verify_redrafter,
    verify_typical,
    warp_top_k,
)
from ._redraft import _simd_isa  # the CPU kernels' instruction set: "avx512", "avx2", "sse2", "portable"
from .target import TargetModel

__all__ = [name for name in dir() if not name.startswith("_")]
__version__ = "0.1.0"

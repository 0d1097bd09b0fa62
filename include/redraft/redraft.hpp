// redraft/redraft.hpp: umbrella header for host code: core, every algorithm, the decoding loop
// and the CPU backend. CUDA users include redraft/cuda.cuh from .cu files instead.
// The reference models and naive references of redraft/testing/ are not included: include them
// by name (they are meant for tests and examples). Distillation (train/) has its own umbrella,
// redraft/train.hpp: it is heavy to compile and only trainers need it.
#pragma once

// core: vocabulary types
#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/half.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/core/transfer.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"

#include "redraft/step/greedy.hpp"
#include "redraft/step/lossless.hpp"
#include "redraft/step/packed_mask.hpp"
#include "redraft/step/redrafter.hpp"
#include "redraft/step/row_ops.hpp"
#include "redraft/step/run_step.hpp"
#include "redraft/step/typical.hpp"
#include "redraft/step/uniforms.hpp"
#include "redraft/step/walk.hpp"
// the CPU backend
#include "redraft/cpu/cpu_backend.hpp"
// draft head, beam search, checkpoints
#include "redraft/draft/beam_search.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/draft_config.hpp"
#include "redraft/draft/draft_head.hpp"
#include "redraft/draft/draft_init.hpp"
#include "redraft/draft/safetensors.hpp"
// trees, masks, positions
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/build_tree_parallel.hpp"
#include "redraft/tree/chain_tree.hpp"
#include "redraft/tree/masks.hpp"
#include "redraft/tree/static_tree.hpp"
// verification and KV compaction
#include "redraft/kv/compaction.hpp"
#include "redraft/kv/kv_plan.hpp"
#include "redraft/verify/acceptance.hpp"
#include "redraft/verify/deferred.hpp"
#include "redraft/verify/greedy.hpp"
#include "redraft/verify/logits_processing.hpp"
#include "redraft/verify/lossless.hpp"
#include "redraft/verify/redrafter.hpp"
#include "redraft/verify/typical.hpp"
#include "redraft/verify/uniforms.hpp"
// the decoding loop
#include "redraft/loop/adaptive_policy.hpp"
#include "redraft/loop/capturable_step.hpp"
#include "redraft/loop/draft_head_drafter.hpp"
#include "redraft/loop/drafter.hpp"
#include "redraft/loop/generation.hpp"
#include "redraft/loop/plain_decoder.hpp"
#include "redraft/loop/policy_trace.hpp"
#include "redraft/loop/speculation_policy.hpp"
#include "redraft/loop/speculative_decoder.hpp"
#include "redraft/loop/target_model.hpp"
// the drafter loss (the rest of training: redraft/train.hpp)
#include "redraft/train/drafter_loss.hpp"

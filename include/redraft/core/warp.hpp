// redraft/core/warp.hpp: ReDrafter's top-k warp of one logit, the one definition shared by the
// draft head (draft/draft_head.hpp), the ReDrafter verifier's steps (step/redrafter.hpp) and the
// matrix op warp_top_k (verify/logits_processing.hpp, through its threshold).
//
// warp(x) = mask_value if x < kth else x, with kth the row's k-th largest logit: logits strictly
// below the k-th largest are masked, ties with it survive (so more than k may survive).
#pragma once

#include "redraft/core/macros.hpp"

namespace redraft {

REDRAFT_HOST_DEVICE inline float warp_logit(float x, float kth, float mask_value) {
  return x < kth ? mask_value : x;
}

}  // namespace redraft

// redraft/redraft.hpp: umbrella header for host code (core + algorithms + the CPU backend).
// CUDA users include redraft/cuda.cuh from .cu files instead.
#pragma once

#include "redraft/core/backend.hpp"
#include "redraft/core/error.hpp"
#include "redraft/core/macros.hpp"
#include "redraft/core/philox.hpp"
#include "redraft/core/tree.hpp"
#include "redraft/core/view.hpp"
#include "redraft/cpu/cpu_backend.hpp"
#include "redraft/draft/beam_search.hpp"
#include "redraft/draft/checkpoint.hpp"
#include "redraft/draft/draft_config.hpp"
#include "redraft/draft/draft_head.hpp"
#include "redraft/draft/safetensors.hpp"
#include "redraft/tree/build_tree.hpp"
#include "redraft/tree/build_tree_parallel.hpp"
#include "redraft/tree/masks.hpp"
#include "redraft/tree/static_tree.hpp"

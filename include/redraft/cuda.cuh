// redraft/cuda.cuh: the umbrella for .cu files: everything of redraft.hpp plus the CUDA backend
// (cuda_backend, cuda_context, REDRAFT_CUDA_CHECK). Include from nvcc-compiled code only.
#pragma once

#include "redraft/cuda/cuda_backend.cuh"
#include "redraft/redraft.hpp"

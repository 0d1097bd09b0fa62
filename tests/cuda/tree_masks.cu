// The typed tests of tests/test_tree_masks.cpp on cuda_backend (see typed_only.hpp).
#include "typed_only.hpp"

#include "test_tree_masks.cpp"

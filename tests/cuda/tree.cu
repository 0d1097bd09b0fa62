// The typed tests of tests/test_tree.cpp on cuda_backend (see typed_only.hpp).
#include "typed_only.hpp"

#include "test_tree.cpp"

// The typed tests of tests/test_random_decisions.cpp on cuda_backend (see typed_only.hpp).
#include "typed_only.hpp"

#include "test_random_decisions.cpp"

// The typed tests of tests/test_loop_synthetic.cpp on cuda_backend (see typed_only.hpp).
#include "typed_only.hpp"

#include "test_loop_synthetic.cpp"

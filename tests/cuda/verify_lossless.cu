// The typed tests of tests/test_verify_lossless.cpp on cuda_backend (see typed_only.hpp).
#include "typed_only.hpp"

#include "test_verify_lossless.cpp"

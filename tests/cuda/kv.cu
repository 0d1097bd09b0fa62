// The typed tests of tests/test_kv.cpp on cuda_backend (see typed_only.hpp).
#include "typed_only.hpp"

#include "test_kv.cpp"

// redraft/cpu/eigen.hpp: the one place redraft includes Eigen.
//
// Eigen is third-party code: warnings that its headers raise (for example GCC 12's
// -Wmaybe-uninitialized inside avx512fintrin.h, inlined from Eigen's AVX-512 packet transposes
// when built with -march=native on an AVX-512 CPU) are silenced here, at the include boundary,
// and never by switching a warning off for redraft's own code. The pragmas cover every line of
// the headers included between push and pop, including the compiler's intrinsics headers that
// Eigen pulls in, so warnings that GCC reports later at those lines (after inlining) are
// silenced too.
#pragma once

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // first inclusion must fall inside the pragma scope
#endif
#include <Eigen/Core>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

// redraft/core/error.hpp: the one exception type, and the checks that throw it.
//
// Every public entry point validates its arguments once, at the top, before it writes any
// output, and throws redraft::error with a message that names the function, the argument and
// the values that disagree, e.g.
//   "build_tree: beam_length 1 must be at least 2".
// Device code never throws.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace redraft {

class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// Concatenates its arguments with operator<< and throws redraft::error.
template <class... Args>
[[noreturn]] void throw_error(const Args&... args) {
  std::ostringstream message;
  (message << ... << args);
  throw error(message.str());
}

}  // namespace detail
}  // namespace redraft

// REDRAFT_REQUIRE(condition, message parts...): throws redraft::error when condition is false.
// The message parts are only evaluated on failure.
#define REDRAFT_REQUIRE(condition, ...)                            \
  do {                                                             \
    if (!(condition)) ::redraft::detail::throw_error(__VA_ARGS__); \
  } while (0)

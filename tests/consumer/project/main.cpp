// Builds a tree from two beams through the public API and checks the node count, on the CPU
// backend and, when the package offers it, on the Thrust host backend.
#include <redraft/redraft.hpp>
#if CONSUMER_THRUST_HOST
#include <redraft/cuda/thrust_backend.hpp>
#endif

#include <cstdio>

template <class Backend>
int count_nodes(const Backend& backend) {
  const std::int32_t beams[] = {7, 1, 2, 7, 1, 3};  // [B=1, W=2, L=3]: shared prefix 7 1
  auto t = redraft::build_tree(backend, redraft::view<const std::int32_t, 3>(beams, 1, 2, 3));
  return t.total_nodes();
}

int main() {
  const int cpu_nodes = count_nodes(redraft::cpu_backend{});
  std::printf("nodes (cpu): %d\n", cpu_nodes);
  if (cpu_nodes != 4) return 1;
#if CONSUMER_THRUST_HOST
  const int thrust_nodes = count_nodes(redraft::thrust_host_backend{});
  std::printf("nodes (thrust_host): %d\n", thrust_nodes);
  if (thrust_nodes != 4) return 1;
#endif
  return 0;
}

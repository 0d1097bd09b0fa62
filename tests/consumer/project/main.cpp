// Builds a tree from two beams through the public API and checks the node count.
#include <redraft/redraft.hpp>

#include <cstdio>

int main() {
  const std::int32_t beams[] = {7, 1, 2, 7, 1, 3};  // [B=1, W=2, L=3]: shared prefix 7 1
  redraft::cpu_backend cpu;
  auto t = redraft::build_tree(cpu, redraft::view<const std::int32_t, 3>(beams, 1, 2, 3));
  std::printf("nodes: %d\n", t.total_nodes());
  return t.total_nodes() == 4 ? 0 : 1;
}

// python/src/bindings.hpp: the parts of the extension module, one function per component.
#pragma once

#include <nanobind/nanobind.h>

namespace redraft::python {

void bind_tree(nanobind::module_& m);    // trees, masks, positions
void bind_verify(nanobind::module_& m);  // verifiers, logits processing, KV plans
void bind_draft(nanobind::module_& m);   // draft head, beam search, distillation losses
void bind_policy(nanobind::module_& m);  // AdaptivePolicy, the speculation policy of the loop
void bind_loop(nanobind::module_& m);    // SpeculativeDecoder over Python targets and drafters

}  // namespace redraft::python

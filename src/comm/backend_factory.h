#pragma once
// Building a group's backends: Gloo among any ranks, and the transport transport_choice.h
// picks for a group (shared memory on one host falling back to Gloo, hierarchical over hosts).
#include <memory>
#include <string>
#include <vector>

#include "comm/context.h"

namespace kdist::comm {

class Backend;
class GlooBackend;

// Gloo among `ranks` (global, in group order; this process among them), its store keys
// under `prefix`. Collective over those ranks.
std::shared_ptr<GlooBackend> make_gloo(Context& ctx, const std::vector<int>& ranks, const std::string& prefix,
                                       const std::string& name);
// The transport of the group `impl` describes (and impl.gloo, its flat Gloo). Collective.
std::shared_ptr<Backend> make_backend(Context& ctx, Group::Impl& impl, Transport asked);

std::string rank_list(const std::vector<int>& ranks);  // "0,2,3"

}  // namespace kdist::comm

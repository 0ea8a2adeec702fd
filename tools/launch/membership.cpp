#include "launch/membership.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace kdist::tools {
namespace {

using Clock = std::chrono::steady_clock;

std::string join_key(const MembershipOptions& o, int node) {
  return o.key_prefix + "kdist/launch/join/" + std::to_string(node);
}
std::string members_key(const MembershipOptions& o) { return o.key_prefix + "kdist/launch/members"; }

std::string list(const std::vector<int>& nodes) {
  std::string text;
  for (int node : nodes) text += (text.empty() ? "" : ", ") + std::to_string(node);
  return text;
}

// The nodes that have joined so far: the store's node first, the others ascending.
Membership joined(const MembershipOptions& o) {
  Membership m{{o.store_node}, {o.address}, {}};
  for (int node = 0; node < o.max_nodes; ++node) {
    if (node == o.store_node) continue;
    auto address = o.store->get(join_key(o, node));
    if (!address) {
      m.missing.push_back(node);
      continue;
    }
    if (address->find_first_of(",@") != std::string::npos)  // the members' separators
      throw std::runtime_error("[kdist.launch] node " + std::to_string(node) + " joined with address '" +
                               *address + "'; expected a host address without ',' or '@'");
    m.nodes.push_back(node), m.addresses.push_back(*address);
  }
  return m;
}

// The store's node: the nodes that joined, once all have or MIN have and join_timeout
// passed since.
Membership decide(const MembershipOptions& o) {
  const auto start = Clock::now();
  auto enough_since = Clock::time_point::max();
  while (true) {
    Membership m = joined(o);
    const auto now = Clock::now();
    if (static_cast<int>(m.nodes.size()) >= o.min_nodes) enough_since = std::min(enough_since, now);
    if (m.missing.empty() ||
        (enough_since != Clock::time_point::max() && now - enough_since >= o.join_timeout))
      return m;
    if (now - start > o.connect_timeout)
      throw std::runtime_error("[kdist.launch] only node" + std::string(m.nodes.size() == 1 ? " " : "s ") +
                               list(m.nodes) + " of " + std::to_string(o.max_nodes) + " joined within " +
                               std::to_string(o.connect_timeout.count() / 1000) +
                               " s; --nnodes needs at least " + std::to_string(o.min_nodes));
    std::this_thread::sleep_for(o.interval);
  }
}

// Any other node: join, then wait for the store's node to publish the members.
Membership read_members(const MembershipOptions& o) {
  o.store->set(join_key(o, o.node_rank), o.address);
  const auto deadline = Clock::now() + o.connect_timeout + o.join_timeout;
  while (true) {
    if (auto text = o.store->get(members_key(o))) {
      Membership m = Membership::parse(*text, o.max_nodes);
      if (m.index_of(o.node_rank) < 0)
        throw std::runtime_error("[kdist.launch] node " + std::to_string(o.node_rank) +
                                 " joined after node " + std::to_string(o.store_node) +
                                 " had settled this attempt's members (" + m.describe() + ")");
      return m;
    }
    if (Clock::now() > deadline)
      throw std::runtime_error("[kdist.launch] node " + std::to_string(o.store_node) +
                               " published no members for this attempt within " +
                               std::to_string((o.connect_timeout + o.join_timeout).count() / 1000) + " s");
    std::this_thread::sleep_for(o.interval);
  }
}

}  // namespace

int Membership::index_of(int node) const {
  const auto it = std::find(nodes.begin(), nodes.end(), node);
  return it == nodes.end() ? -1 : static_cast<int>(it - nodes.begin());
}

std::string Membership::describe() const {
  std::vector<int> sorted = nodes;
  std::sort(sorted.begin(), sorted.end());
  const int all = static_cast<int>(nodes.size() + missing.size());
  std::string text = (nodes.size() == 1 ? "node " : "nodes ") + list(sorted) + " of " + std::to_string(all);
  if (!missing.empty())
    text += " (node" + std::string(missing.size() == 1 ? " " : "s ") + list(missing) + " did not join)";
  return text;
}

std::string Membership::serialize() const {
  std::string text;
  for (size_t i = 0; i < nodes.size(); ++i)
    text += (i ? "," : "") + std::to_string(nodes[i]) + "@" + addresses[i];
  return text;
}

Membership Membership::parse(const std::string& text, int max_nodes) {
  Membership m;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const auto at = item.find('@');
    const std::string node = item.substr(0, at);
    const bool digits =
        !node.empty() && node.size() < 6 && node.find_first_not_of("0123456789") == std::string::npos;
    if (at == std::string::npos || !digits || std::stoi(node) >= max_nodes ||
        m.index_of(std::stoi(node)) >= 0)
      throw std::runtime_error("[kdist.launch] this attempt's members are '" + text +
                               "'; expected NODE@ADDRESS,... with distinct nodes below " +
                               std::to_string(max_nodes));
    m.nodes.push_back(std::stoi(node));
    m.addresses.push_back(item.substr(at + 1));
  }
  if (m.nodes.empty())
    throw std::runtime_error("[kdist.launch] this attempt's members are '" + text +
                             "'; expected NODE@ADDRESS,...");
  for (int node = 0; node < max_nodes; ++node)
    if (m.index_of(node) < 0) m.missing.push_back(node);
  return m;
}

Membership agree_membership(const MembershipOptions& o) {
  if (o.node_rank != o.store_node) return read_members(o);
  Membership m = decide(o);
  o.store->set(members_key(o), m.serialize());
  return m;
}

}  // namespace kdist::tools

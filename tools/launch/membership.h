#pragma once
// Which nodes take part in one attempt of an elastic job (`kdist launch --nnodes MIN:MAX`).
//
// At the start of every attempt each launcher writes "<prefix>kdist/launch/join/<node>" to the
// job's store. Node 0 waits for every node to join; once MIN have, it waits at most
// `join_timeout` more for the rest, then publishes the members under
// "<prefix>kdist/launch/members" ("0,2"). Every launcher reads them and runs the attempt as
// node index_of(itself) of members.size(): a job that lost a host restarts without it.
//
//   Membership m = agree_membership(options);   // collective over the launchers
//   run_attempt(world of m.nodes.size() nodes, this node = m.index_of(node_rank));
//
// Throws std::runtime_error naming the nodes when fewer than MIN join within
// `connect_timeout`, and on a node the members leave out (it joined too late).
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "comm/job_store.h"

namespace kdist::tools {

struct MembershipOptions {
  std::shared_ptr<comm::JobStore> store;  // the store (node 0 serves it, others connect)
  std::string key_prefix;                 // the attempt's: "<token>/attempt-<n>/"
  int node_rank = 0;                      // this node's rank among MAX
  int min_nodes = 1, max_nodes = 1;
  std::chrono::milliseconds join_timeout{30000};
  std::chrono::milliseconds connect_timeout{300000};
  std::chrono::milliseconds interval{100};
};

struct Membership {
  std::vector<int> nodes;    // node ranks, ascending; node 0 always first
  std::vector<int> missing;  // those that did not join
  int index_of(int node) const;
  std::string describe() const;  // "nodes 0, 1 of 2" or "node 0 of 2 (node 1 did not join)"
  static Membership parse(const std::string& text, int max_nodes);
  std::string serialize() const;
};

Membership agree_membership(const MembershipOptions& options);

}  // namespace kdist::tools

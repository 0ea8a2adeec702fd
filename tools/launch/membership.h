#pragma once
// Which nodes take part in one attempt of an elastic job (`kdist launch --nnodes MIN:MAX`).
//
// At the start of every attempt each launcher writes "<prefix>kdist/launch/join/<node>" to the
// job's store, its value the address this launcher is reached at. The node that serves the
// store (node 0, or the node that took the store over when node 0 was lost) waits for every
// node to join; once MIN have, it waits at most `join_timeout` more for the rest, then
// publishes the members under "<prefix>kdist/launch/members" ("0@10.0.0.1,2@10.0.0.3"), itself
// first. Every launcher reads them and runs the attempt as node index_of(itself) of
// nodes.size(): a job that lost a host restarts without it, and the store's node is node 0.
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
  std::shared_ptr<comm::JobStore> store;  // the store (store_node serves it, others connect)
  std::string key_prefix;                 // the attempt's: "<token>/attempt-<n>/"
  int node_rank = 0;                      // this node's rank among MAX
  std::string address;                    // where this node's launcher is reached
  int store_node = 0;                     // the node that serves the store and decides
  int min_nodes = 1, max_nodes = 1;
  std::chrono::milliseconds join_timeout{30000};
  std::chrono::milliseconds connect_timeout{300000};
  std::chrono::milliseconds interval{100};
};

struct Membership {
  std::vector<int> nodes;              // node ranks: the store's node, then the others ascending
  std::vector<std::string> addresses;  // of each node's launcher
  std::vector<int> missing;            // those that did not join
  int index_of(int node) const;
  std::string describe() const;  // "nodes 0, 1 of 2" or "node 0 of 2 (node 1 did not join)"
  static Membership parse(const std::string& text, int max_nodes);
  std::string serialize() const;
};

Membership agree_membership(const MembershipOptions& options);

}  // namespace kdist::tools

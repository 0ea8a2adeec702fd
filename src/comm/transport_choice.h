#pragma once
// Which transport a group gets, from where its processes run: all on one host, shared memory;
// over hosts with several processes on some, hierarchical; one process per host, Gloo.
// KDIST_TRANSPORT (the job's default) and GroupOptions override.
#include <kdist/comm.h>

#include <string>
#include <vector>

namespace kdist::comm {

// The processes of a group, by host: hosts in the order of their first group rank.
struct HostLayout {
  std::vector<std::vector<int>> hosts;  // group ranks on each host, ascending
  int host = 0;                         // this process's host
  int local_rank = 0;                   // this process's index in hosts[host]
  bool leader() const { return local_rank == 0; }
};

// `host_of[r]`: the host label of global rank r, from the rendezvous; `ranks`: the group's
// global ranks in group order; `rank`: this process's group rank.
HostLayout host_layout(const std::vector<std::string>& host_of, const std::vector<int>& ranks, int rank);

// `forced`: the job's KDIST_TRANSPORT ("auto", "gloo", "shm"); `asked`: the group's.
Transport choose_transport(const std::string& forced, const HostLayout& layout, Transport asked);

}  // namespace kdist::comm

#pragma once
// Collective steps of save and load: every process learns whether any failed, and processes
// exchange their chunk lists as text.
#include <functional>
#include <string>
#include <vector>

namespace kdist::checkpoint {

// Runs `step` on every process, then agrees: if it threw anywhere, every process throws:
// its own exception, or std::runtime_error naming the first rank that failed and carrying that
// rank's message ("load failed on rank 1: [kdist.checkpoint] checksum mismatch ..."). A single
// process (or none initialized) just runs it.
void run_agreed(const std::string& operation, const std::function<void()>& step);

// Every process's `text`, in rank order.
std::vector<std::string> all_gather_text(const std::string& text);

}  // namespace kdist::checkpoint

#pragma once
// How a rank and the `kdist launch` that started it watch each other (tools/launch/launcher.cpp).
// The launcher hands each rank two pipes, named by KDIST_HEARTBEAT_FD and KDIST_LAUNCHER_FD:
//   - the rank writes 'B' to the heartbeat pipe every second while it is a member of a job
//     (initialize to shutdown) and 'D' at shutdown: a launcher that sees no beat for its
//     heartbeat timeout names the rank as stopped responding (SIGSTOP, a frozen host), even
//     though the process still exists;
//   - the launcher alone holds the other pipe's write end, so the rank sees it hang up when the
//     launcher dies, whatever killed it, and ends its own process group: no rank outlives its
//     launcher (PR_SET_PDEATHSIG, set by the launcher, covers only its direct child).
//   - progress, on the heartbeat pipe too: "S<n>\n" after step n and "R<k>\n" when the
//     attempt resumes after step k (report_step, report_resumed), each one atomic write;
// Started once per process by initialize(); a process without both variables (torchrun, a
// single process) starts nothing. A variable naming anything but a pipe is ignored.
#include <cstdint>

#include "runtime/resolve_job_config.h"

namespace kdist::detail {

// Starts the watch if the environment names both pipes, and tells the launcher this process
// is (again) a member of a job.
void start_supervision(const EnvLookup& env);
// Tells the launcher this process left the job (shutdown): it stops expecting beats.
void leave_supervision();
// Tells the launcher one line of progress: 'S' or 'R' and a step (see above).
void tell_progress(char kind, int64_t step);

}  // namespace kdist::detail

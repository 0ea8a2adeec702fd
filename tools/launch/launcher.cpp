#include "launch/launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/syscall.h>

#include "comm/addresses.h"
#include "launch/job_watch.h"
#include "launch/membership.h"
#include "launch/verdict.h"

extern char** environ;

namespace kdist::tools {
namespace {

using Clock = std::chrono::steady_clock;

int g_signal_pipe[2] = {-1, -1};

void on_signal(int signo) {
  unsigned char byte = static_cast<unsigned char>(signo);
  [[maybe_unused]] auto n = write(g_signal_pipe[1], &byte, 1);
}

// One rank's process, the unfinished last line of each of its streams, and its liveness.
struct Rank {
  int global_rank = 0;
  pid_t pid = -1;
  int pidfd = -1;         // readable once the process has ended: when it ended, to the poll
  int fds[2] = {-1, -1};  // stdout, stderr
  std::string partial[2];
  // src/supervision.h: the rank beats on heartbeat_fd; launcher_fd's write end, held here alone,
  // hangs up when the launcher dies.
  int heartbeat_fd = -1;
  int launcher_fd = -1;
  std::string progress;   // a progress line being read from the heartbeat pipe ("S12")
  bool beating = false;   // a beat came: the rank is a kdist job member, watched
  bool left_job = false;  // it said it left the job (shutdown): no longer watched
  Clock::time_point last_beat;
  double pipe_closed_at = 0;  // when its heartbeat pipe hung up: the process was ending
  std::string unresponsive;   // why the launcher declared it stopped responding
  double unresponsive_at = 0;
  bool left_early = false;  // exited 0 without leaving the job while others ran
  bool exited = false;
  bool signalled_by_us = false;
  int status = 0;
  double ended_at = 0;  // wall-clock seconds
};

// When an ended (zombie) process last ran, which is when it exited: the scheduler's
// se.exec_start in /proc/<pid>/sched, in ms since boot. Infinity where the kernel does not
// say (no CONFIG_SCHED_DEBUG): those keep rank order.
double last_ran_ms(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/sched");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("se.exec_start", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return std::strtod(line.c_str() + colon + 1, nullptr);
    }
  return std::numeric_limits<double>::infinity();
}

// Whether the process has ended, leaving it to be reaped (waitid with WNOWAIT).
bool has_ended(pid_t pid) {
  siginfo_t info{};
  return waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid;
}

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void emit(const Rank& rank, int stream, const std::string& line) {
  std::string out = "[rank " + std::to_string(rank.global_rank) + "] " + line + "\n";
  int fd = stream == 0 ? STDOUT_FILENO : STDERR_FILENO;
  for (size_t done = 0; done < out.size();) {
    ssize_t n = write(fd, out.data() + done, out.size() - done);
    if (n <= 0 && errno != EINTR) return;
    if (n > 0) done += static_cast<size_t>(n);
  }
}

void pump(Rank& rank, int stream) {
  char buffer[65536];
  ssize_t n = read(rank.fds[stream], buffer, sizeof(buffer));
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {  // end of stream: flush what is left
    if (!rank.partial[stream].empty()) emit(rank, stream, rank.partial[stream]);
    rank.partial[stream].clear();
    close(rank.fds[stream]);
    rank.fds[stream] = -1;
    return;
  }
  std::string& text = rank.partial[stream];
  text.append(buffer, static_cast<size_t>(n));
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
    emit(rank, stream, text.substr(start, nl - start));
  text.erase(0, start);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  return "ended with status " + std::to_string(status);
}

bool failed(int status) { return !(WIFEXITED(status) && WEXITSTATUS(status) == 0); }

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

// The program's path as execvp would find it, looked up before fork: between fork and exec
// the child of a threaded process (the store's server runs threads) may only make
// async-signal-safe calls, which excludes a PATH search that allocates.
std::string resolve_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    std::string dir = dirs.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return program;  // execve fails and the child says so
}

// One attempt of the job: where its store is and which keys are its own.
struct Attempt {
  int port = 0;
  int number = 0;     // 0 for the first, then the restart count
  std::string token;  // the job's secret (may be empty: unprotected keys)
  std::string key_prefix() const {
    return (token.empty() ? "" : token + "/") + "attempt-" + std::to_string(number) + "/";
  }
};

// torchrun's environment for one rank, with the store the launcher serves.
std::vector<std::string> rank_environment(const LaunchOptions& o, const Attempt& attempt, int global_rank,
                                          int local_rank, int heartbeat_fd, int launcher_fd) {
  std::vector<std::string> env;
  const std::vector<std::string> ours{"MASTER_ADDR",
                                      "MASTER_PORT",
                                      "WORLD_SIZE",
                                      "RANK",
                                      "LOCAL_RANK",
                                      "LOCAL_WORLD_SIZE",
                                      "GROUP_RANK",
                                      "TORCHELASTIC_USE_AGENT_STORE",
                                      "TORCHELASTIC_RESTART_COUNT",
                                      "TORCHELASTIC_MAX_RESTARTS",
                                      "KDIST_RESTART_COUNT",
                                      "KDIST_JOB_TOKEN",
                                      "KDIST_HEARTBEAT_FD",
                                      "KDIST_LAUNCHER_FD"};
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (std::find(ours.begin(), ours.end(), name) == ours.end()) env.push_back(entry);
  }
  env.push_back("MASTER_ADDR=" + o.master_addr);
  env.push_back("MASTER_PORT=" + std::to_string(attempt.port));
  env.push_back("WORLD_SIZE=" + std::to_string(o.nproc_per_node * o.nnodes));
  env.push_back("RANK=" + std::to_string(global_rank));
  env.push_back("LOCAL_RANK=" + std::to_string(local_rank));
  env.push_back("LOCAL_WORLD_SIZE=" + std::to_string(o.nproc_per_node));
  env.push_back("GROUP_RANK=" + std::to_string(o.node_rank));
  // The launcher of node 0 serves the store (as torchrun's agent does): every rank connects.
  env.push_back("TORCHELASTIC_USE_AGENT_STORE=True");
  env.push_back("TORCHELASTIC_RESTART_COUNT=" + std::to_string(attempt.number));
  env.push_back("TORCHELASTIC_MAX_RESTARTS=" + std::to_string(o.max_restarts));
  env.push_back("KDIST_RESTART_COUNT=" + std::to_string(attempt.number));
  // The ranks' keys live under the token (runtime's store scope); /proc/<pid>/environ is
  // readable by the rank's own user alone.
  if (!attempt.token.empty()) env.push_back("KDIST_JOB_TOKEN=" + attempt.token);
  env.push_back("KDIST_HEARTBEAT_FD=" + std::to_string(heartbeat_fd));
  env.push_back("KDIST_LAUNCHER_FD=" + std::to_string(launcher_fd));
  // glibc returns a freed block of 128 KiB or more to the kernel (munmap, or a trim of the
  // heap), and the next allocation of that size faults every page in again. Training frees
  // and reallocates the same large tensors every step (FSDP's gathered weights, gradients):
  // keep them in the heap (docs/PERFORMANCE.md has what it saves). The rank's own environment wins if it sets
  // either variable.
  if (!std::getenv("MALLOC_MMAP_THRESHOLD_") && !std::getenv("MALLOC_TRIM_THRESHOLD_")) {
    env.push_back("MALLOC_MMAP_THRESHOLD_=33554432");    // blocks up to 32 MiB (glibc's most) from the heap
    env.push_back("MALLOC_TRIM_THRESHOLD_=1073741824");  // and the heap kept up to 1 GiB free
  }
  return env;
}

void spawn(Rank& rank, const LaunchOptions& o, const Attempt& attempt, int local_rank) {
  int out[2], err[2], beat[2], alive[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 || pipe2(beat, O_CLOEXEC) != 0 ||
      pipe2(alive, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("[kdist.launch] pipe: ") + std::strerror(errno));
  const std::string program = resolve_program(o.command.front());
  const auto env_strings = rank_environment(o, attempt, rank.global_rank, local_rank, beat[1], alive[0]);
  const pid_t launcher = getpid();
  std::vector<char*> argv, envp;
  for (const auto& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string cannot_run = "[kdist.launch] cannot run '" + o.command.front() + "': ";
  // Until the child has reset its handlers, a signal must not run the launcher's handler in
  // it: that handler writes to the launcher's signal pipe, which the child shares. So the
  // signals stay blocked across fork, and the child unblocks them with default handlers.
  sigset_t block, previous;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &previous);
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("[kdist.launch] fork: ") + std::strerror(errno));
  if (pid == 0) {  // async-signal-safe calls only, up to execve
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    setpgid(0, 0);  // its own group: the launcher can stop the rank and its children together
    prctl(PR_SET_PDEATHSIG, SIGKILL);       // the launcher's death ends it, whatever killed the launcher
    if (getppid() != launcher) _exit(137);  // it died before that line
    fcntl(beat[1], F_SETFD, 0);             // these two, alone of the launcher's pipes, cross execve
    fcntl(alive[0], F_SETFD, 0);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    execve(program.c_str(), argv.data(), envp.data());
    const char* reason = strerror(errno);
    [[maybe_unused]] auto a = write(STDERR_FILENO, cannot_run.data(), cannot_run.size());
    [[maybe_unused]] auto b = write(STDERR_FILENO, reason, strlen(reason));
    [[maybe_unused]] auto c = write(STDERR_FILENO, "\n", 1);
    _exit(127);
  }
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  setpgid(pid, pid);
  close(out[1]);
  close(err[1]);
  close(beat[1]);
  close(alive[0]);
  fcntl(beat[0], F_SETFL, O_NONBLOCK);
  rank.heartbeat_fd = beat[0];
  rank.launcher_fd = alive[1];
  rank.pid = pid;
  rank.pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  rank.fds[0] = out[0];
  rank.fds[1] = err[0];
}

void signal_all(std::vector<Rank>& ranks, int signo) {
  for (auto& r : ranks)
    if (!r.exited && r.pid > 0) {
      kill(-r.pid, signo);  // kill(0, ...) would hit our own group
      r.signalled_by_us = true;
    }
}

std::string rank_name(const LaunchOptions& o, int global_rank) {
  std::string name = "rank " + std::to_string(global_rank);
  return o.nnodes > 1 ? name + " (node " + std::to_string(o.node_rank) + ")" : name;
}

Failure failure_of(const LaunchOptions& o, const Rank& r) {
  Failure f;
  f.wall_time = r.ended_at;
  f.who = rank_name(o, r.global_rank);
  if (!r.unresponsive.empty()) {  // its end, by the launcher's SIGKILL, followed from this
    f.wall_time = r.unresponsive_at;
    f.what = r.unresponsive;
    return f;
  }
  f.what = describe_status(r.status);
  f.exit_code = exit_code_of(r.status);
  f.by_signal = WIFSIGNALED(r.status);
  f.stopped_by_launcher = r.signalled_by_us;
  if (r.signalled_by_us) f.what = "was stopped by the launcher (" + f.what + ")";
  if (r.left_early) {
    f.what = "exited with code 0 without leaving the job (kdist::shutdown) while other ranks still ran";
    f.exit_code = 1;
    f.clean_exit = true;
  }
  return f;
}

// The scheduler's state of a process, for the message of one that stopped responding.
std::string process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto paren = text.rfind(')');
  const char state = paren != std::string::npos && paren + 2 < text.size() ? text[paren + 2] : '?';
  switch (state) {
    case 'T':
      return "its process is stopped (state T: SIGSTOP?)";
    case 't':
      return "its process is stopped by a debugger (state t)";
    case 'D':
      return "its process waits in the kernel (state D)";
    case 'R':
    case 'S':
      return std::string("its process still exists (state ") + state + ") but does not beat";
    default:
      return std::string("its process is in state ") + state;
  }
}

// The job's store: served here on node 0 (so it outlives every rank), reached by the others.
std::shared_ptr<comm::JobStore> serve_store(const LaunchOptions& o) {
  if (o.node_rank != 0) return nullptr;
  return comm::JobStore::serve(o.master_addr, o.master_port, std::chrono::seconds(30));
}

std::unique_ptr<JobWatch> watch_job(const LaunchOptions& o, std::shared_ptr<comm::JobStore> store,
                                    const Attempt& attempt) {
  if (o.nnodes == 1) return nullptr;
  JobWatchOptions w;
  w.store = std::move(store);
  w.host = o.master_addr;
  w.port = attempt.port;
  w.key_prefix = attempt.key_prefix();
  w.node_rank = o.node_rank;
  w.nnodes = o.nnodes;
  w.nproc_per_node = o.nproc_per_node;
  w.connect_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.connect_timeout_seconds * 1000));
  return std::make_unique<JobWatch>(std::move(w));
}

void install_signal_handlers() {
  if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    throw std::runtime_error("[kdist.launch] cannot create the signal pipe");
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

void check(const LaunchOptions& o) {
  if (o.command.empty()) throw std::invalid_argument("[kdist.launch] no program given after --");
  if (o.nproc_per_node < 1 || o.nnodes < 1 || o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw std::invalid_argument(
        "[kdist.launch] expected -n >= 1, --nnodes >= 1 and 0 <= "
        "--node-rank < --nnodes, got -n " +
        std::to_string(o.nproc_per_node) + ", --nnodes " + std::to_string(o.nnodes) + ", --node-rank " +
        std::to_string(o.node_rank));
  if (o.nnodes > 1 && o.master_port == 0)
    throw std::invalid_argument("[kdist.launch] --nnodes " + std::to_string(o.nnodes) +
                                " needs --master-port: every node must agree on it");
  if (o.min_nnodes < 0 || o.min_nnodes > o.nnodes)
    throw std::invalid_argument("[kdist.launch] --nnodes " + std::to_string(o.min_nnodes) + ":" +
                                std::to_string(o.nnodes) + ": expected MIN:MAX with 1 <= MIN <= MAX");
}

bool elastic(const LaunchOptions& o) { return o.min_nnodes > 0 && o.min_nnodes < o.nnodes; }

std::chrono::milliseconds milliseconds(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

// Where an elastic job's store is: node 0's launcher serves it; once node 0 is lost, the
// next member of the last attempt serves a new one (every launcher learnt the members'
// addresses from the membership), and the job goes on.
struct StoreHome {
  int node = 0;                            // the node (rank among MAX) that serves it
  std::string address;                     // its launcher's address
  std::shared_ptr<comm::JobStore> served;  // this launcher's own, where it is that node
  std::shared_ptr<comm::JobStore> client;  // how this launcher reaches it
  Membership last;                         // the last attempt's members
};

// An elastic attempt's options: its members, renumbered with the store's node first, are
// the job's nodes.
LaunchOptions elastic_attempt(const LaunchOptions& o, StoreHome& home, const Attempt& attempt,
                              const std::string& my_address) {
  if (!home.client)
    home.client =
        comm::JobStore::connect(home.address, attempt.port, milliseconds(o.connect_timeout_seconds));
  MembershipOptions m;
  m.store = home.client;
  m.key_prefix = attempt.key_prefix();
  m.node_rank = o.node_rank;
  m.address = my_address;
  m.store_node = home.node;
  m.min_nodes = o.min_nnodes;
  m.max_nodes = o.nnodes;
  m.join_timeout = milliseconds(o.join_timeout_seconds);
  m.connect_timeout = milliseconds(o.connect_timeout_seconds);
  home.last = agree_membership(m);
  LaunchOptions mine = o;
  mine.master_addr = home.address;
  mine.nnodes = static_cast<int>(home.last.nodes.size());
  mine.node_rank = home.last.index_of(o.node_rank);
  std::cerr << "[kdist.launch] attempt " << attempt.number + 1 << " runs on " << home.last.describe() << ": "
            << mine.nnodes * o.nproc_per_node << " ranks, this node as node " << mine.node_rank << "\n";
  return mine;
}

// After the store's node was lost: the next member of the last attempt serves a new store at
// its address and the same port. False where no member is left to.
bool move_store(const LaunchOptions& o, StoreHome& home, int port, const std::string& my_address) {
  if (home.last.nodes.size() < 2 || home.last.addresses[1].empty()) return false;
  const int lost = home.node;
  home.node = home.last.nodes[1];
  home.address = home.last.addresses[1];
  home.served = nullptr;
  home.client = nullptr;
  if (home.node == o.node_rank) {
    home.served = comm::JobStore::serve(my_address, port, std::chrono::seconds(30));
    home.client = home.served;
  }
  std::cerr << "[kdist.launch] node " << lost << "'s store is gone: node " << home.node
            << " serves the job's store at " << home.address << ":" << port << " from now on\n";
  return true;
}

// "steps 21-27 of attempt 1 run again", "step 21 ...", or "no step lost".
std::string run_again(int64_t resumed_after, int64_t last_step, int attempt_number) {
  if (last_step <= resumed_after) return "no step lost";
  const std::string of = " of attempt " + std::to_string(attempt_number) + " run again";
  if (last_step == resumed_after + 1) return "step " + std::to_string(last_step) + of;
  return "steps " + std::to_string(resumed_after + 1) + "-" + std::to_string(last_step) + of;
}

// The supervision loop's state: this node's ranks and what has happened to them.
struct Supervisor {
  const LaunchOptions& o;
  std::vector<Rank> ranks;
  JobWatch* watch = nullptr;
  bool stopping = false;     // the ranks were told to stop (a failure here or elsewhere)
  int forwarded_signal = 0;  // a signal the user sent us
  Clock::time_point kill_deadline = Clock::time_point::max();
  // Progress the ranks reported (kdist::report_step, report_resumed); -1: none.
  int64_t last_step = -1, resumed_from = -1;
  int attempt_number = 0;
  int64_t previous_last_step = -1;  // the attempt before this one's

  // The first rank to say where this attempt resumed: what the failure before it cost.
  void resumed(int64_t step) {
    if (resumed_from >= 0) return;
    resumed_from = step;
    if (attempt_number == 0 || previous_last_step < 0) return;
    std::cerr << "[kdist.launch] attempt " << attempt_number + 1 << " resumed after step " << step << ": "
              << run_again(step, previous_last_step, attempt_number) << "\n";
  }
  void progress_line(const std::string& line) {
    const int64_t step = std::strtoll(line.c_str() + 1, nullptr, 10);
    if (line[0] == 'S') last_step = std::max(last_step, step);
    if (line[0] == 'R') resumed(step);
  }

  Clock::time_point grace_from_now() const {
    return Clock::now() +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.grace_seconds));
  }
  bool all_done() const {
    for (const auto& r : ranks)
      if (!r.exited || r.fds[0] >= 0 || r.fds[1] >= 0) return false;
    return true;
  }
  void stop(const std::string& why) {
    if (stopping) return;
    stopping = true;
    std::cerr << "[kdist.launch] " << why << "; stopping the other ranks\n";
    signal_all(ranks, SIGTERM);
    kill_deadline = grace_from_now();
  }
  void forward(int signo) {
    std::cerr << "[kdist.launch] got signal " << signo << " (" << strsignal(signo)
              << "), forwarding it to every rank\n";
    signal_all(ranks, forwarded_signal ? SIGKILL : signo);
    forwarded_signal = signo;
    stopping = true;
    kill_deadline = std::min(kill_deadline, grace_from_now());
  }
  bool others_running(const Rank& r) const {
    for (const auto& other : ranks)
      if (&other != &r && !other.exited) return true;
    return false;
  }
  void reap(Rank& r, double ended_at) {
    if (r.exited || waitpid(r.pid, &r.status, WNOHANG) != r.pid) return;
    r.exited = true;
    r.ended_at = ended_at;
    if (r.pidfd >= 0) close(r.pidfd), r.pidfd = -1;
    if (r.launcher_fd >= 0) close(r.launcher_fd), r.launcher_fd = -1;  // what it left behind sees us go
    kill(-r.pid, SIGKILL);  // whatever the rank left behind in its group
    r.left_early = !failed(r.status) && r.beating && !r.left_job && others_running(r);
    if (failed(r.status) && !stopping && !forwarded_signal && r.unresponsive.empty()) {
      if (watch) watch->report(failure_of(o, r));
      stop(rank_name(o, r.global_rank) + " " + describe_status(r.status));
    }
  }
  // Ended processes first, before their output: the order of their ends is the verdict's.
  // Several can end between two polls on a busy machine (a peer that sees a rank die fails
  // within milliseconds), so each end is dated by when its heartbeat pipe hung up: a process
  // closes its files, that pipe (a low descriptor) before the sockets its peers notice, early
  // in its exit. Ends seen in one poll are ordered by when each last ran, and reaped in that
  // order, not in rank order.
  void reap_in_order_of_exit(double now) {
    struct Ended {
      double at, last_ran;
      Rank* rank;
    };
    std::vector<Ended> ended;
    for (auto& r : ranks)
      if (!r.exited && has_ended(r.pid)) {
        const bool dated = r.pipe_closed_at > 0 && now - r.pipe_closed_at < 2.0;
        ended.push_back({dated ? r.pipe_closed_at : now, last_ran_ms(r.pid), &r});
      }
    std::stable_sort(ended.begin(), ended.end(), [](const Ended& a, const Ended& b) {
      return a.at != b.at ? a.at < b.at : a.last_ran < b.last_ran;
    });
    double previous = 0;
    for (auto& e : ended) {
      previous = std::max(e.at, previous + 1e-6);  // ties keep their order in the verdict
      reap(*e.rank, previous);
    }
  }
  // A rank's beats: 'B' alive, 'D' left the job; the end of the pipe: the process is ending.
  void read_heartbeats(Rank& r, double now) {
    char bytes[256];
    for (;;) {
      const ssize_t n = read(r.heartbeat_fd, bytes, sizeof bytes);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return;  // EAGAIN: all read
      if (n == 0) {
        if (r.pipe_closed_at == 0) r.pipe_closed_at = now;
        close(r.heartbeat_fd);
        r.heartbeat_fd = -1;
        return;
      }
      for (ssize_t i = 0; i < n; ++i) {
        const char c = bytes[i];
        if (!r.progress.empty()) {  // inside a progress line: up to its newline
          if (c != '\n') r.progress += c;
          if (c == '\n' || r.progress.size() > 32) progress_line(r.progress), r.progress.clear();
          continue;
        }
        if (c == 'S' || c == 'R') r.progress = c;
        if (c == 'B') r.beating = true, r.left_job = false, r.last_beat = Clock::now();
        if (c == 'D') r.left_job = true;
      }
    }
  }
  // A member whose beats stopped for the heartbeat timeout stopped responding: it is the
  // failure, named first, whatever times out because of it later.
  void check_liveness() {
    if (o.heartbeat_timeout_seconds <= 0 || stopping || forwarded_signal) return;
    const auto now = Clock::now();
    for (auto& r : ranks) {
      if (r.exited || !r.beating || r.left_job || r.heartbeat_fd < 0) continue;
      const double silent = std::chrono::duration<double>(now - r.last_beat).count();
      if (silent <= o.heartbeat_timeout_seconds) continue;
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%.1f", silent);
      r.unresponsive = std::string("stopped responding: no heartbeat for ") + seconds + " s (" +
                       process_state(r.pid) + ")";
      r.unresponsive_at = wall_now() - silent;
      if (watch) watch->report(failure_of(o, r));
      stop(rank_name(o, r.global_rank) + " " + r.unresponsive);
      return;
    }
  }
  void poll_once() {
    std::vector<pollfd> fds{{g_signal_pipe[0], POLLIN, 0}};
    // rank index, stream: 0 stdout, 1 stderr, 2 its pidfd, 3 its heartbeat pipe
    std::vector<std::pair<int, int>> owners{{-1, -1}};
    for (int i = 0; i < static_cast<int>(ranks.size()); ++i) {
      for (int s = 0; s < 2; ++s)
        if (ranks[i].fds[s] >= 0) fds.push_back({ranks[i].fds[s], POLLIN, 0}), owners.emplace_back(i, s);
      if (ranks[i].pidfd >= 0) fds.push_back({ranks[i].pidfd, POLLIN, 0}), owners.emplace_back(i, 2);
      if (ranks[i].heartbeat_fd >= 0)
        fds.push_back({ranks[i].heartbeat_fd, POLLIN, 0}), owners.emplace_back(i, 3);
    }
    poll(fds.data(), fds.size(), 100);
    const double now = wall_now();
    for (size_t f = 0; f < fds.size(); ++f)
      if (owners[f].second == 3 && (fds[f].revents & (POLLIN | POLLHUP | POLLERR)))
        read_heartbeats(ranks[owners[f].first], now);
    reap_in_order_of_exit(now);
    for (size_t f = 0; f < fds.size(); ++f) {
      if (!(fds[f].revents & (POLLIN | POLLHUP | POLLERR)) || owners[f].second >= 2) continue;
      if (owners[f].first < 0) {
        unsigned char signo;
        while (read(g_signal_pipe[0], &signo, 1) == 1) forward(signo);
      } else {
        pump(ranks[owners[f].first], owners[f].second);
      }
    }
    check_liveness();
    if (watch && watch->job_failed() && !stopping) {
      auto remote = watch->first_remote_failure();
      stop(remote ? remote->who + " " + remote->what : std::string("another node failed"));
    }
    if (Clock::now() > kill_deadline) {
      signal_all(ranks, SIGKILL);
      kill_deadline = Clock::time_point::max();
    }
  }
};

// The job's secret: given, or 128 random bits where this launcher is the whole job.
std::string job_token(const LaunchOptions& o) {
  if (!o.job_token.empty()) {
    if (o.job_token.find_first_of("/\n") != std::string::npos)
      throw std::invalid_argument(
          "[kdist.launch] --job-token holds a '/' or a newline; expected a token without either (letters and "
          "digits, say)");
    return o.job_token;
  }
  if (o.nnodes > 1) {
    std::cerr << "[kdist.launch] no --job-token (KDIST_JOB_TOKEN): any process that reaches " << o.master_addr
              << ":" << o.master_port
              << " can read and steer this job's store; give every node's launcher the same token\n";
    return "";
  }
  std::random_device random;
  char text[33];
  for (int i = 0; i < 4; ++i) std::snprintf(text + 8 * i, 9, "%08x", random());
  return text;
}

struct AttemptEnd {
  Verdict verdict;
  int64_t last_step = -1;     // the last step its ranks reported; -1: none
  int64_t resumed_from = -1;  // the step it resumed after; -1: not reported
  int forwarded_signal = 0;
  bool store_lost = false;  // node 0's store is gone: no attempt can follow
};

// One attempt: this node's ranks started, watched until every one has ended, and judged.
AttemptEnd run_attempt(const LaunchOptions& o, std::shared_ptr<comm::JobStore> store, const Attempt& attempt,
                       int64_t previous_last_step) {
  auto watch = watch_job(o, store, attempt);
  Supervisor supervisor{o, std::vector<Rank>(o.nproc_per_node)};
  supervisor.watch = watch.get();
  supervisor.attempt_number = attempt.number;
  supervisor.previous_last_step = previous_last_step;
  for (int l = 0; l < o.nproc_per_node; ++l) {
    supervisor.ranks[l].global_rank = o.node_rank * o.nproc_per_node + l;
    spawn(supervisor.ranks[l], o, attempt, l);
  }
  while (!supervisor.all_done()) supervisor.poll_once();

  AttemptEnd end;
  end.last_step = supervisor.last_step;
  end.resumed_from = supervisor.resumed_from;
  end.forwarded_signal = supervisor.forwarded_signal;
  if (end.forwarded_signal) return end;
  std::vector<Failure> failures;
  for (const auto& r : supervisor.ranks)
    if (failed(r.status) || r.left_early || !r.unresponsive.empty()) failures.push_back(failure_of(o, r));
  if (watch) {
    // This node's earliest failure, should the loop not have reported one (it was stopping).
    auto earliest =
        std::min_element(failures.begin(), failures.end(),
                         [](const Failure& a, const Failure& b) { return a.wall_time < b.wall_time; });
    if (earliest != failures.end()) watch->report(*earliest);
    for (auto& f : watch->finish()) failures.push_back(f);
    end.store_lost = watch->store_lost();
  }
  end.verdict = judge(failures);
  for (const auto& line : end.verdict.lines) std::cerr << "[kdist.launch] " << line << "\n";
  return end;
}

// "3 attempts: 1 failed (rank 1 was killed by signal 9 (Killed)), 2 failed (...), 3 succeeded;
// 9 steps run again". steps_lost < 0: the ranks did not report their progress.
void print_summary(const std::vector<std::string>& causes, int last_exit_code, int64_t steps_lost) {
  std::string text = std::to_string(causes.size() + 1) + " attempts: ";
  for (size_t i = 0; i < causes.size(); ++i) text += std::to_string(i + 1) + " failed (" + causes[i] + "), ";
  text += std::to_string(causes.size() + 1) + (last_exit_code == 0 ? " succeeded" : " failed");
  if (steps_lost >= 0)
    text += "; " + std::to_string(steps_lost) + " step" + (steps_lost == 1 ? "" : "s") + " run again";
  std::cerr << "[kdist.launch] " << text << "\n";
}

// What the failure before `end` cost: the steps the attempt before it ran past the step `end`
// resumed after; -1 where either was not reported.
int64_t steps_run_again(int64_t previous_last_step, const AttemptEnd& end) {
  if (previous_last_step < 0 || end.resumed_from < 0) return -1;
  return std::max<int64_t>(0, previous_last_step - end.resumed_from);
}

}  // namespace

int launch(const LaunchOptions& given) {
  check(given);
  StoreHome home{0, given.master_addr, serve_store(given), nullptr, {}};
  home.client = home.served;
  Attempt attempt{home.served ? home.served->port() : given.master_port, 0, job_token(given)};
  install_signal_handlers();
  // Where the others reach this launcher, should it take the store over: the address on its
  // route to node 0.
  const std::string my_address = given.node_rank == 0 || !elastic(given)
                                     ? given.master_addr
                                     : comm::detail::address_routing_to(given.master_addr, given.master_port);
  std::vector<std::string> causes;                  // of the attempts that failed
  int64_t previous_last_step = -1, steps_lost = 0;  // steps_lost -1: not all reported
  for (;; ++attempt.number) {
    LaunchOptions o = given;
    o.master_addr = home.address;
    if (elastic(given)) {
      try {
        o = elastic_attempt(given, home, attempt, my_address);
      } catch (const std::runtime_error& e) {
        std::cerr << e.what() << "\n";
        if (!causes.empty()) print_summary(causes, 1, -1);
        return 1;
      }
    }
    const AttemptEnd end = run_attempt(o, home.served, attempt, previous_last_step);
    if (attempt.number > 0) {
      const int64_t again = steps_run_again(previous_last_step, end);
      steps_lost = again < 0 || steps_lost < 0 ? -1 : steps_lost + again;
    }
    previous_last_step = end.last_step;
    if (end.forwarded_signal) {
      std::cerr << "[kdist.launch] stopped by signal " << end.forwarded_signal << "\n";
      return 128 + end.forwarded_signal;
    }
    const bool failed = end.verdict.exit_code != 0;
    const bool restarts_left = attempt.number < o.max_restarts;
    const bool store_moved = failed && restarts_left && end.store_lost && elastic(given) &&
                             move_store(given, home, attempt.port, my_address);
    if (!failed || !restarts_left || (end.store_lost && !store_moved)) {
      if (failed && end.store_lost && restarts_left)
        std::cerr << "[kdist.launch] no restart: node " << home.node << "'s store is gone\n";
      if (!causes.empty()) print_summary(causes, end.verdict.exit_code, steps_lost);
      return end.verdict.exit_code;
    }
    causes.push_back(end.verdict.root_cause);
    std::cerr << "[kdist.launch] restart " << attempt.number + 1 << " of " << o.max_restarts << " after "
              << end.verdict.root_cause << "\n";
  }
}

}  // namespace kdist::tools

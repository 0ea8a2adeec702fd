#include "launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>

namespace kdist::tools {
namespace {

using Clock = std::chrono::steady_clock;

int g_signal_pipe[2] = {-1, -1};

void on_signal(int signo) {
  unsigned char byte = static_cast<unsigned char>(signo);
  [[maybe_unused]] auto n = write(g_signal_pipe[1], &byte, 1);
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error(std::string("[kdist.launch] cannot find a free port: ") +
                             std::strerror(errno));
  close(fd);
  return ntohs(addr.sin_port);
}

// One rank's process and the unfinished last line of each of its streams.
struct Rank {
  int global_rank = 0;
  pid_t pid = -1;
  int fds[2] = {-1, -1};  // stdout, stderr
  std::string partial[2];
  bool exited = false;
  int status = 0;
};

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

pid_t spawn(Rank& rank, const LaunchOptions& o, int local_rank, int port) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("[kdist.launch] pipe: ") + std::strerror(errno));
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
  if (pid == 0) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    setpgid(0, 0);  // its own group: the launcher can stop the rank and its children together
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    int world = o.nproc_per_node * o.nnodes;
    setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
    setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
    setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
    setenv("RANK", std::to_string(rank.global_rank).c_str(), 1);
    setenv("LOCAL_RANK", std::to_string(local_rank).c_str(), 1);
    setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc_per_node).c_str(), 1);
    setenv("GROUP_RANK", std::to_string(o.node_rank).c_str(), 1);
    std::vector<char*> argv;
    for (const auto& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "[kdist.launch] cannot run '%s': %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  setpgid(pid, pid);
  close(out[1]);
  close(err[1]);
  rank.pid = pid;
  rank.fds[0] = out[0];
  rank.fds[1] = err[0];
  return pid;
}

void signal_all(std::vector<Rank>& ranks, int signo) {
  for (auto& r : ranks)
    if (!r.exited && r.pid > 0) kill(-r.pid, signo);  // kill(0, ...) would hit our own group
}

}  // namespace

int launch(const LaunchOptions& o) {
  if (o.command.empty()) throw std::invalid_argument("[kdist.launch] no program given after --");
  if (o.nproc_per_node < 1 || o.nnodes < 1 || o.node_rank < 0 || o.node_rank >= o.nnodes)
    throw std::invalid_argument("[kdist.launch] expected -n >= 1, --nnodes >= 1 and 0 <= "
                                "--node-rank < --nnodes, got -n " +
                                std::to_string(o.nproc_per_node) + ", --nnodes " +
                                std::to_string(o.nnodes) + ", --node-rank " +
                                std::to_string(o.node_rank));
  if (o.nnodes > 1 && o.master_port == 0)
    throw std::invalid_argument("[kdist.launch] --nnodes " + std::to_string(o.nnodes) +
                                " needs --master-port: every node must agree on it");
  int port = o.master_port != 0 ? o.master_port : free_port();

  if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
    throw std::runtime_error("[kdist.launch] cannot create the signal pipe");
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::vector<Rank> ranks(o.nproc_per_node);
  for (int l = 0; l < o.nproc_per_node; ++l) {
    ranks[l].global_rank = o.node_rank * o.nproc_per_node + l;
    spawn(ranks[l], o, l, port);
  }

  int first_failure = -1;      // index of the rank that failed first
  int forwarded_signal = 0;    // a signal the user sent us
  Clock::time_point kill_deadline = Clock::time_point::max();

  auto all_done = [&] {
    for (const auto& r : ranks)
      if (!r.exited || r.fds[0] >= 0 || r.fds[1] >= 0) return false;
    return true;
  };
  while (!all_done()) {
    std::vector<pollfd> fds{{g_signal_pipe[0], POLLIN, 0}};
    std::vector<std::pair<int, int>> owners{{-1, -1}};
    for (int i = 0; i < static_cast<int>(ranks.size()); ++i)
      for (int s = 0; s < 2; ++s)
        if (ranks[i].fds[s] >= 0) {
          fds.push_back({ranks[i].fds[s], POLLIN, 0});
          owners.emplace_back(i, s);
        }
    poll(fds.data(), fds.size(), 100);
    for (size_t f = 0; f < fds.size(); ++f) {
      if (!(fds[f].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (owners[f].first < 0) {
        unsigned char signo;
        while (read(g_signal_pipe[0], &signo, 1) == 1) {
          std::cerr << "[kdist.launch] got signal " << int(signo) << " (" << strsignal(signo)
                    << "), forwarding it to every rank\n";
          signal_all(ranks, forwarded_signal ? SIGKILL : signo);
          forwarded_signal = signo;
          kill_deadline = std::min(kill_deadline, Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                      std::chrono::duration<double>(o.grace_seconds)));
        }
      } else {
        pump(ranks[owners[f].first], owners[f].second);
      }
    }
    for (int i = 0; i < static_cast<int>(ranks.size()); ++i) {
      auto& r = ranks[i];
      if (r.exited) continue;
      if (waitpid(r.pid, &r.status, WNOHANG) != r.pid) continue;
      r.exited = true;
      kill(-r.pid, SIGKILL);  // whatever the rank left behind in its group
      if (failed(r.status) && first_failure < 0 && !forwarded_signal) {
        first_failure = i;
        std::cerr << "[kdist.launch] rank " << r.global_rank << " " << describe_status(r.status)
                  << "; stopping the other ranks\n";
        signal_all(ranks, SIGTERM);
        kill_deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(o.grace_seconds));
      }
    }
    if (Clock::now() > kill_deadline) {
      signal_all(ranks, SIGKILL);
      kill_deadline = Clock::time_point::max();
    }
  }

  if (forwarded_signal) {
    std::cerr << "[kdist.launch] stopped by signal " << forwarded_signal << "\n";
    return 128 + forwarded_signal;
  }
  if (first_failure >= 0) {
    const auto& r = ranks[first_failure];
    std::cerr << "[kdist.launch] failed: rank " << r.global_rank << " " << describe_status(r.status)
              << "\n";
    if (WIFEXITED(r.status)) return WEXITSTATUS(r.status);
    return 128 + WTERMSIG(r.status);
  }
  return 0;
}

}  // namespace kdist::tools

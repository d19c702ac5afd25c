#include "cli/launcher.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <stdexcept>

namespace layerfreeze::cli {

namespace {

using Clock = std::chrono::steady_clock;

// The ranks run in their own process groups (so a signal reaches what each one starts), which
// also keeps a terminal's Ctrl-C from reaching them: the launcher forwards it.
volatile sig_atomic_t g_stop_signal = 0;
void on_stop_signal(int sig) { g_stop_signal = sig; }

struct Child {
  int rank = 0;
  pid_t pid = -1;
  int out = -1, err = -1;        // read ends of its stdout and stderr pipes
  std::string out_buf, err_buf;  // partial lines
  bool running = true;
  RankExit exit;
  Clock::time_point started;
};

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// A rank's partial line is kept up to this size, then forwarded as a line of its own: a rank
// that prints progress without newlines cannot grow the launcher's memory.
constexpr size_t kMaxPartialLine = 64 * 1024;

// Forwards whole lines from `buf` to `fd`, each with the rank's prefix. A `\r` (a progress bar
// redrawing itself) ends a line too, shown as one.
void flush_lines(std::string& buf, int fd, const std::string& prefix, bool all) {
  size_t start = 0;
  for (size_t end; (end = buf.find_first_of("\n\r", start)) != std::string::npos; start = end + 1) {
    if (end > start || buf[end] == '\n')
      write_all(fd, prefix + buf.substr(start, end - start) + "\n");
  }
  buf.erase(0, start);
  if ((all && !buf.empty()) || buf.size() >= kMaxPartialLine) {
    write_all(fd, prefix + buf + "\n");
    buf.clear();
  }
}

// Reads what is available on `fd`; closes it (sets -1) at end of file.
void drain(int& fd, std::string& buf, int to, const std::string& prefix) {
  char chunk[65536];
  ssize_t n = ::read(fd, chunk, sizeof chunk);
  if (n > 0) {
    buf.append(chunk, static_cast<size_t>(n));
    flush_lines(buf, to, prefix, false);
  } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    flush_lines(buf, to, prefix, true);
    ::close(fd);
    fd = -1;
  }
}

pid_t spawn(const LaunchOptions& o, int local_rank, int out[2], int err[2]) {
  const int world = o.nproc * o.nnodes;
  const int rank = o.node_rank * o.nproc + local_rank;
  pid_t pid = ::fork();
  if (pid != 0) return pid;
  // The child: its own process group (so a signal reaches what it starts), pipes, environment.
  ::setpgid(0, 0);
  ::signal(SIGPIPE, SIG_DFL);  // the launcher ignores it; its ranks should not inherit that
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  ::dup2(out[1], STDOUT_FILENO);
  ::dup2(err[1], STDERR_FILENO);
  ::close(out[0]);
  ::close(err[0]);
  ::close(out[1]);
  ::close(err[1]);
  ::setenv("RANK", std::to_string(rank).c_str(), 1);
  ::setenv("LOCAL_RANK", std::to_string(local_rank).c_str(), 1);
  ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
  ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
  ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
  ::setenv("MASTER_PORT", std::to_string(o.master_port).c_str(), 1);
  std::vector<char*> argv;
  for (const auto& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  std::string msg =
      "layerfreeze launch: cannot run '" + o.command[0] + "': " + std::strerror(errno) + "\n";
  write_all(STDERR_FILENO, msg);
  ::_exit(127);
}

void signal_all(std::vector<Child>& kids, int sig, bool timed_out) {
  for (auto& c : kids)
    if (c.running) {
      ::kill(-c.pid, sig);
      c.exit.killed = true;
      c.exit.timed_out = c.exit.timed_out || timed_out;
    }
}

}  // namespace

int stop_signal() { return g_stop_signal; }

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string("finding a free port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::vector<RankExit> launch(const LaunchOptions& opts) {
  LaunchOptions o = opts;
  if (o.master_port == 0) o.master_port = free_port();
  std::vector<Child> kids(static_cast<size_t>(o.nproc));
  // Children must not inherit a SIGPIPE-ignoring or blocked state surprise; the launcher itself
  // must survive a child closing its pipes.
  ::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  const auto start = Clock::now();
  for (int r = 0; r < o.nproc; ++r) {
    int out[2], err[2];
    // Close-on-exec: no rank inherits another rank's pipes (dup2 onto 1 and 2 clears the flag).
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
      throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    Child& c = kids[static_cast<size_t>(r)];
    c.rank = o.node_rank * o.nproc + r;
    c.exit.rank = c.rank;
    c.started = Clock::now();
    c.pid = spawn(o, r, out, err);
    if (c.pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    ::close(out[1]);
    ::close(err[1]);
    c.out = out[0];
    c.err = err[0];
  }

  std::optional<Clock::time_point> failed_at, termed_at, all_exited_at;
  for (;;) {
    // Output first, so nothing a rank printed before exiting is lost.
    std::vector<pollfd> fds;
    std::vector<std::pair<Child*, bool>> who;  // child, is stderr
    for (auto& c : kids) {
      if (c.out >= 0) fds.push_back({c.out, POLLIN, 0}), who.push_back({&c, false});
      if (c.err >= 0) fds.push_back({c.err, POLLIN, 0}), who.push_back({&c, true});
    }
    if (!fds.empty() && ::poll(fds.data(), fds.size(), 100) > 0) {
      for (size_t i = 0; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        Child& c = *who[i].first;
        std::string prefix = o.prefix ? "[rank " + std::to_string(c.rank) + "] " : "";
        if (who[i].second)
          drain(c.err, c.err_buf, STDERR_FILENO, prefix);
        else
          drain(c.out, c.out_buf, STDOUT_FILENO, prefix);
      }
    } else if (fds.empty()) {
      ::usleep(20000);
    }
    // Reap.
    bool any_running = false;
    for (auto& c : kids) {
      if (!c.running) continue;
      int status = 0;
      pid_t p = ::waitpid(c.pid, &status, WNOHANG);
      if (p == c.pid) {
        c.running = false;
        c.exit.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        c.exit.seconds = std::chrono::duration<double>(Clock::now() - c.started).count();
        if (c.exit.code != 0 && !failed_at) failed_at = Clock::now();
      } else {
        any_running = true;
      }
    }
    bool pipes_open = false;
    for (auto& c : kids) pipes_open = pipes_open || c.out >= 0 || c.err >= 0;
    if (!any_running) {
      // A grandchild may still hold a pipe: drain a little longer, then stop reading.
      if (!all_exited_at) all_exited_at = Clock::now();
      if (!pipes_open || Clock::now() - *all_exited_at > std::chrono::seconds(2)) break;
      continue;
    }
    const auto now = Clock::now();
    bool timed_out = o.timeout.count() > 0 && now - start > o.timeout;
    bool grace_over = failed_at && now - *failed_at > o.grace;
    if (g_stop_signal && !termed_at) {
      write_all(STDERR_FILENO, std::string("layerfreeze launch: ") + strsignal(g_stop_signal) +
                                   "; stopping every rank\n");
      signal_all(kids, SIGTERM, false);
      termed_at = now;
    } else if ((timed_out || grace_over) && !termed_at) {
      if (timed_out)
        write_all(STDERR_FILENO, "layerfreeze launch: the job exceeded --timeout " +
                                     std::to_string(o.timeout.count()) +
                                     " s; stopping every rank\n");
      signal_all(kids, SIGTERM, timed_out);
      termed_at = now;
    } else if (termed_at && now - *termed_at > std::chrono::seconds(5)) {
      signal_all(kids, SIGKILL, false);
    }
  }
  std::vector<RankExit> out;
  for (auto& c : kids) {
    for (int* fd : {&c.out, &c.err})
      if (*fd >= 0) ::close(*fd);
    out.push_back(c.exit);
  }
  return out;
}

}  // namespace layerfreeze::cli

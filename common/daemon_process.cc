#include "common/daemon_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/unique_fd.h"

namespace dpmfs {
namespace {

// Pids of running servers, for the signal handler (which may only call kill()). A fixed
// array of atomics: lock-free and async-signal-safe. One server runs at a time; a few
// spare entries cover a start overlapping a not yet reaped predecessor.
constexpr int kMaxServers = 16;
std::atomic<pid_t> g_servers[kMaxServers];
std::atomic<int> g_interrupt{0};

void Register(pid_t pid) {
  for (auto& s : g_servers) {
    pid_t expected = 0;
    if (s.compare_exchange_strong(expected, pid)) return;
  }
  spdlog::warn(
      "more than {} daemons at once; pid {} is not covered by the signal "
      "cleanup (PR_SET_PDEATHSIG still is)",
      kMaxServers, pid);
}

void Unregister(pid_t pid) {
  for (auto& s : g_servers) {
    pid_t expected = pid;
    if (s.compare_exchange_strong(expected, 0)) return;
  }
}

void OnTerminatingSignal(int sig) {
  for (auto& s : g_servers) {
    pid_t pid = s.load();
    if (pid > 0) ::kill(pid, SIGKILL);
  }
  g_interrupt.store(sig);
  ::signal(sig, SIG_DFL);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "ended with wait status " + std::to_string(status);
}

}  // namespace

int InterruptSignal() { return g_interrupt.load(); }

void InstallSignalCleanup() {
  struct sigaction sa {};
  sa.sa_handler = OnTerminatingSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

Result<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(const DaemonOptions& options,
                                                            uint64_t generation) {
  std::unique_ptr<DaemonProcess> p(new DaemonProcess());
  p->keep_logs_ = options.keep_logs;
  p->name_ = options.name;
  p->out_path_ =
      options.log_dir + "/" + options.log_prefix + "-" + std::to_string(generation) + ".out";
  p->err_path_ =
      options.log_dir + "/" + options.log_prefix + "-" + std::to_string(generation) + ".err";
  if (options.argv.empty()) return Status::InvalidArgument("no command given for " + options.name);

  std::vector<std::string> args = options.argv;
  for (const auto& a : args) p->command_ += (p->command_.empty() ? "" : " ") + a;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  UniqueFd out_fd(::open(p->out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out_fd.valid()) return Status::FromErrno(errno, "creating " + p->out_path_);
  UniqueFd err_fd(::open(p->err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!err_fd.valid()) return Status::FromErrno(errno, "creating " + p->err_path_);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno(errno, "fork for " + args[0]);
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);  // the tool died before prctl took effect
    ::dup2(out_fd.get(), STDOUT_FILENO);
    ::dup2(err_fd.get(), STDERR_FILENO);
    // The tool ignores SIGPIPE and blocks nothing, but dispositions set to "ignore" and
    // the mask survive exec: give the daemon a clean slate.
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(argv[0], argv.data());
    const char* msg = "exec of the daemon failed: ";
    (void)!::write(STDERR_FILENO, msg, std::strlen(msg));
    const char* why = std::strerror(errno);
    (void)!::write(STDERR_FILENO, why, std::strlen(why));
    (void)!::write(STDERR_FILENO, "\n", 1);
    ::_exit(127);
  }
  out_fd.reset();
  err_fd.reset();
  p->pid_ = pid;
  Register(pid);
  spdlog::debug("started {} pid {}: {}", p->name_, pid, p->command_);
  Status st = p->WaitReady(options.start_timeout);
  if (!st.ok()) {
    p->SendKill();
    (void)p->Wait(std::chrono::seconds(5));
    std::string tail = p->StderrTail();
    return Status(st.code(), st.message() + "\n  command: " + p->command_ + "\n  its stderr:\n" +
                                 (tail.empty() ? "  (empty)" : tail));
  }
  return p;
}

Status DaemonProcess::WaitReady(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Polling a file is cheap next to the daemon's start-up (mapping the pool) and keeps
  // this free of pipes (see the header).
  auto sleep = std::chrono::microseconds(200);
  while (true) {
    std::string out = ReadFile(out_path_);
    size_t pos = out.find("READY ");
    if (pos != std::string::npos && (pos == 0 || out[pos - 1] == '\n')) {
      size_t end = out.find('\n', pos);
      if (end != std::string::npos) {
        std::string addr = out.substr(pos + 6, end - pos - 6);
        auto ep = Endpoint::Parse(addr);
        if (!ep.ok()) {
          return Status::Corruption(name_ + " printed a READY line with a bad address '" + addr +
                                    "': " + ep.status().message());
        }
        if (ep->port == 0) {
          return Status::Corruption(
              name_ + " reported port 0 in its READY line; it must "
              "report the port it bound");
        }
        endpoint_ = *ep;
        return Status::OK();
      }
    }
    if (Exited()) {
      return Status::Unavailable(name_ + " " + DescribeWaitStatus(wait_status_) +
                                 " before it was ready");
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::TimedOut(name_ + " printed no READY line within " +
                              std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(sleep);
    if (sleep < std::chrono::milliseconds(5)) sleep *= 2;
  }
}

void DaemonProcess::SendKill() {
  if (pid_ > 0 && !reaped_) ::kill(pid_, SIGKILL);
}

bool DaemonProcess::Exited() {
  if (reaped_) return true;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    wait_status_ = status;
    Unregister(pid_);
    return true;
  }
  return false;
}

Result<std::string> DaemonProcess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!Exited()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::TimedOut(name_ + " pid " + std::to_string(pid_) + " did not exit within " +
                              std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return DescribeWaitStatus(wait_status_);
}

bool DaemonProcess::KilledBySigkill() const {
  return reaped_ && WIFSIGNALED(wait_status_) && WTERMSIG(wait_status_) == SIGKILL;
}

std::string DaemonProcess::StderrTail(size_t max_bytes) const {
  std::string err = ReadFile(err_path_);
  if (err.size() > max_bytes) err = "..." + err.substr(err.size() - max_bytes);
  // Indent for embedding in a multi-line error message.
  std::string out = "    ";
  for (char c : err) {
    out += c;
    if (c == '\n') out += "    ";
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
  return err.empty() ? std::string() : out;
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0 && !reaped_) {
    SendKill();
    auto r = Wait(std::chrono::seconds(10));
    if (!r.ok()) spdlog::error("{}", r.status().ToString());
  }
  if (!keep_logs_) {
    ::unlink(out_path_.c_str());
    ::unlink(err_path_.c_str());
  }
}

}  // namespace dpmfs

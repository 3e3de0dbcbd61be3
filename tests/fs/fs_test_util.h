// Helpers of the FUSE client's tests: daemons started as real processes (dpmfs-data,
// dpmfs-meta, dpmfs-mount) that are always stopped, even when a test fails.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace dpmfs::fs::testing {

inline std::string ReadFileText(const std::filesystem::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A child process with stdout and stderr in files. Killed (SIGKILL) on destruction.
class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() { Kill(); }

  // Starts `argv` (argv[0] is the binary's path); output to `out` / `err`.
  bool Start(const std::vector<std::string>& argv, const std::filesystem::path& out,
             const std::filesystem::path& err) {
    out_ = out;
    err_ = err;
    // Gone before the child starts: a READY line of an earlier run must not be seen.
    std::error_code ec;
    std::filesystem::remove(out, ec);
    std::filesystem::remove(err, ec);
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (o >= 0) dup2(o, 1);
      if (e >= 0) dup2(e, 2);
      // Nothing else of the test's: an inherited fd of a file on a FUSE mount would
      // keep that mount busy for the child's lifetime.
      ::close_range(3, ~0u, 0);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    return true;
  }

  // Waits for a line "READY host:port" on stdout; returns "host:port" or nothing if the
  // process exited or `timeout` passed.
  std::optional<std::string> WaitReady(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::string text = ReadFileText(out_);
      if (size_t p = text.find("READY "); p != std::string::npos) {
        size_t e = text.find('\n', p);
        if (e != std::string::npos) return text.substr(p + 6, e - p - 6);
      }
      if (Exited()) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return std::nullopt;
  }

  // Whether it has exited (reaps it).
  bool Exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      status_ = status;
      pid_ = -1;
      return true;
    }
    return false;
  }
  // Waits up to `timeout` for exit; the exit code, or -1 if it did not exit normally.
  std::optional<int> Wait(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!Exited()) {
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
  }
  void Signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
      status_ = status;
      pid_ = -1;
    }
  }
  pid_t pid() const { return pid_; }
  std::string err_text() const { return ReadFileText(err_); }
  std::string out_text() const { return ReadFileText(out_); }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  std::filesystem::path out_, err_;
};

// A scratch directory under /dev/shm (tmpfs: pools there cost no disk), removed at end.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& tag) {
    path_ = std::filesystem::path("/dev/shm") /
            ("dpmfs-" + tag + "-" + std::to_string(::getpid()) + "-" +
             std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace dpmfs::fs::testing

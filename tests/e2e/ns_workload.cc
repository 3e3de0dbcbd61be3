// e2e_ns_workload: a namespace workload for the metadata-server crash test
// (tests/e2e/run_e2e.sh, phase crash-meta), and its checker.
//
//   e2e_ns_workload run DIR --model FILE [--seed N] [--after N] [--max-ops N]
//       Creates (with data), renames (also over existing files and across directories),
//       unlinks, mkdirs and rmdirs in DIR, keeping a model of what every acknowledged
//       operation left behind. Runs until SIGUSR1, then N more operations (default 300:
//       the mount still works), or until --max-ops; then checks DIR against the model,
//       writes the model to FILE, and exits 0 if everything matched and no operation
//       failed. The wrapper kill -9s dpmfs-meta mid-run and restarts it before SIGUSR1:
//       operations in flight then must be retried transparently (the session's reply
//       cache), so a failed operation is an error too (reported with its errno).
//   e2e_ns_workload verify DIR --model FILE
//       Checks DIR (e.g. through a fresh second mount, with no cache) against FILE.
//
// Exit: 0 match, 1 mismatch or failed operations, 2 usage.
// Thread-safety: single-threaded program (SIGUSR1 only sets an atomic flag).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::atomic<bool> g_stop_requested{false};

void OnUsr1(int) { g_stop_requested = true; }

// A file whose content is not known (its write failed): only its existence is checked.
constexpr size_t kUnknownLength = static_cast<size_t>(-1);

// What DIR must hold: files (relative path -> content seed and length) and directories.
struct Model {
  std::map<std::string, std::pair<uint64_t, size_t>> files;
  std::set<std::string> dirs;
};

std::string Content(uint64_t seed, size_t len) {
  std::string s;
  s.reserve(len);
  std::mt19937_64 rng(seed);
  while (s.size() < len) s.push_back(static_cast<char>('a' + rng() % 26));
  return s;
}

bool WriteModel(const Model& m, const std::string& path) {
  std::ofstream out(path + ".tmp");
  for (const auto& d : m.dirs) out << "d " << d << "\n";
  for (const auto& [p, v] : m.files) out << "f " << p << " " << v.first << " " << v.second << "\n";
  out.close();
  if (!out) return false;
  return std::rename((path + ".tmp").c_str(), path.c_str()) == 0;
}

bool ReadModel(const std::string& path, Model* m) {
  std::ifstream in(path);
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string kind, p;
    ss >> kind >> p;
    if (kind == "d") {
      m->dirs.insert(p);
    } else if (kind == "f") {
      uint64_t seed = 0;
      size_t len = 0;
      ss >> seed >> len;
      m->files[p] = {seed, len};
    }
  }
  return true;
}

// Compares DIR with the model: every modeled entry with its content, nothing else.
// Prints each difference (the first 20); returns the number of differences.
int Verify(const std::string& root, const Model& m) {
  int diffs = 0;
  auto report = [&](const std::string& what) {
    if (diffs++ < 20) std::cerr << "e2e_ns_workload: MISMATCH: " << what << "\n";
  };
  // Walk the tree (two levels: the workload makes no deeper directories).
  std::set<std::string> seen_files, seen_dirs;
  std::vector<std::string> todo{""};
  while (!todo.empty()) {
    std::string rel = todo.back();
    todo.pop_back();
    std::string abs = rel.empty() ? root : root + "/" + rel;
    DIR* d = ::opendir(abs.c_str());
    if (d == nullptr) {
      report("opendir " + abs + ": " + std::strerror(errno));
      continue;
    }
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      std::string r = rel.empty() ? n : rel + "/" + n;
      struct stat st{};
      if (::lstat((root + "/" + r).c_str(), &st) != 0) {
        report("lstat " + r + " (listed by readdir): " + std::strerror(errno));
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        if (!seen_dirs.insert(r).second) report("directory " + r + " listed twice");
        todo.push_back(r);
      } else {
        if (!seen_files.insert(r).second) report("file " + r + " listed twice");
      }
    }
    ::closedir(d);
  }
  for (const auto& dname : m.dirs) {
    if (!seen_dirs.count(dname)) report("directory " + dname + " is missing");
  }
  for (const auto& dname : seen_dirs) {
    if (!m.dirs.count(dname)) report("directory " + dname + " should not exist");
  }
  for (const auto& [p, v] : m.files) {
    if (!seen_files.count(p)) {
      report("file " + p + " is missing");
      continue;
    }
    if (v.second == kUnknownLength) continue;
    std::ifstream in(root + "/" + p, std::ios::binary);
    std::string got((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (got != Content(v.first, v.second)) {
      report("file " + p + " has wrong content (" + std::to_string(got.size()) + " bytes, want " +
             std::to_string(v.second) + ")");
    }
  }
  for (const auto& p : seen_files) {
    if (!m.files.count(p)) report("file " + p + " should not exist");
  }
  return diffs;
}

int Usage() {
  std::cerr << "usage: e2e_ns_workload run DIR --model FILE [--seed N] [--after N] [--max-ops N]\n"
               "       e2e_ns_workload verify DIR --model FILE\n";
  return 2;
}

int Run(const std::string& root, const std::string& model_path, uint64_t seed, int after,
        long max_ops) {
  struct sigaction sa{};
  sa.sa_handler = OnUsr1;
  ::sigaction(SIGUSR1, &sa, nullptr);
  std::mt19937_64 rng(seed);
  Model m;
  int failures = 0;
  long op = 0, left_after_signal = after;
  double worst_ms = 0;
  std::string worst_op;
  auto fail = [&](const std::string& what) {
    if (failures++ < 20) {
      std::cerr << "e2e_ns_workload: op " << op << ": " << what << ": " << std::strerror(errno)
                << "\n";
    }
  };
  auto pick = [&](const auto& container) {
    auto it = container.begin();
    std::advance(it, static_cast<long>(rng() % container.size()));
    return *it;
  };
  auto pick_dir = [&]() -> std::string {
    if (m.dirs.empty() || rng() % 2 == 0) return "";
    return pick(m.dirs) + "/";
  };
  // The model starts empty, so the directory must too.
  DIR* d = ::opendir(root.c_str());
  if (d == nullptr) {
    std::cerr << "e2e_ns_workload: cannot open " << root << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  int entries = 0;
  while (struct dirent* e = ::readdir(d)) entries += std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..");
  ::closedir(d);
  if (entries > 0) {
    std::cerr << "e2e_ns_workload: " << root << " is not empty\n";
    return 1;
  }
  std::cout << "e2e_ns_workload: running in " << root << std::endl;
  while (max_ops <= 0 || op < max_ops) {
    if (g_stop_requested && left_after_signal-- <= 0) break;
    ++op;
    auto t0 = std::chrono::steady_clock::now();
    std::string desc;
    unsigned r = static_cast<unsigned>(rng() % 100);
    if (r < 40 || m.files.size() < 5) {
      // create + write + close
      std::string p = pick_dir() + "f" + std::to_string(op);
      size_t len = 1 + rng() % 9000;
      desc = "create " + p;
      int fd = ::open((root + "/" + p).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
      if (fd < 0) {
        fail(desc);
        continue;
      }
      std::string c = Content(static_cast<uint64_t>(op), len);
      bool ok = ::write(fd, c.data(), c.size()) == static_cast<ssize_t>(c.size());
      if (!ok) fail(desc + " (write)");
      if (::close(fd) != 0) {
        fail(desc + " (close)");
        ok = false;
      }
      // The name exists once open succeeded; its content is known only when the write
      // and the close were acknowledged (the failure is reported either way).
      m.files[p] = {static_cast<uint64_t>(op), ok ? len : kUnknownLength};
    } else if (r < 60) {
      // rename to a new name (maybe into another directory)
      auto [from, v] = pick(m.files);
      std::string to = pick_dir() + "r" + std::to_string(op);
      desc = "rename " + from + " -> " + to;
      if (::rename((root + "/" + from).c_str(), (root + "/" + to).c_str()) != 0) {
        fail(desc);
        continue;
      }
      m.files.erase(from);
      m.files[to] = v;
    } else if (r < 70) {
      // rename over an existing file
      auto [from, v] = pick(m.files);
      auto [to, w] = pick(m.files);
      if (from == to) continue;
      desc = "rename " + from + " over " + to;
      if (::rename((root + "/" + from).c_str(), (root + "/" + to).c_str()) != 0) {
        fail(desc);
        continue;
      }
      m.files.erase(from);
      m.files[to] = v;
    } else if (r < 88) {
      auto [p, v] = pick(m.files);
      desc = "unlink " + p;
      if (::unlink((root + "/" + p).c_str()) != 0) {
        fail(desc);
        continue;
      }
      m.files.erase(p);
    } else if (r < 95) {
      if (m.dirs.size() >= 8) continue;
      std::string p = "d" + std::to_string(op);
      desc = "mkdir " + p;
      if (::mkdir((root + "/" + p).c_str(), 0755) != 0) {
        fail(desc);
        continue;
      }
      m.dirs.insert(p);
    } else {
      // rmdir an empty directory (if there is one)
      std::string victim;
      for (const auto& d : m.dirs) {
        bool empty = true;
        for (const auto& [p, v] : m.files) {
          if (p.rfind(d + "/", 0) == 0) {
            empty = false;
            break;
          }
        }
        if (empty) {
          victim = d;
          break;
        }
      }
      if (victim.empty()) continue;
      desc = "rmdir " + victim;
      if (::rmdir((root + "/" + victim).c_str()) != 0) {
        fail(desc);
        continue;
      }
      m.dirs.erase(victim);
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (ms > worst_ms) {
      worst_ms = ms;
      worst_op = desc;
    }
    if (op % 5000 == 0) std::cout << "e2e_ns_workload: " << op << " operations" << std::endl;
  }
  std::cout << "e2e_ns_workload: " << op << " operations, " << failures << " failed; slowest "
            << worst_ms << " ms (" << worst_op << "); " << m.files.size() << " files, "
            << m.dirs.size() << " directories" << std::endl;
  if (!WriteModel(m, model_path)) {
    std::cerr << "e2e_ns_workload: cannot write the model to " << model_path << "\n";
    return 1;
  }
  int diffs = Verify(root, m);
  if (diffs > 0) std::cerr << "e2e_ns_workload: " << diffs << " differences from the model\n";
  if (failures > 0) std::cerr << "e2e_ns_workload: " << failures << " operations failed\n";
  return diffs == 0 && failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage();
  std::string cmd = argv[1], root = argv[2], model;
  uint64_t seed = 1;
  int after = 300;
  long max_ops = 0;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage();
    if (a == "--model") model = argv[++i];
    else if (a == "--seed") seed = std::stoull(argv[++i]);
    else if (a == "--after") after = std::stoi(argv[++i]);
    else if (a == "--max-ops") max_ops = std::stol(argv[++i]);
    else return Usage();
  }
  if (model.empty()) return Usage();
  if (cmd == "run") return Run(root, model, seed, after, max_ops);
  if (cmd == "verify") {
    Model m;
    if (!ReadModel(model, &m)) {
      std::cerr << "e2e_ns_workload: cannot read the model " << model << "\n";
      return 1;
    }
    int diffs = Verify(root, m);
    std::cout << "e2e_ns_workload: verify " << root << ": " << m.files.size() << " files, "
              << m.dirs.size() << " directories, " << diffs << " differences" << std::endl;
    return diffs == 0 ? 0 : 1;
  }
  return Usage();
}

// dpmfs-bench: the benchmarks of dpmfs, one subcommand each. `persist` measures the
// persist methods of the data path against a raw-TCP baseline; `fs` runs fio and a
// metadata profile through a mount beside bindfs and tmpfs; `meta` measures the metadata
// server's namespace operations through MetaClient.
#include <signal.h>

#include <iostream>

#include <spdlog/spdlog.h>

#include "common/cli.h"
#include "tools/bench/fs_bench.h"
#include "tools/bench/meta_bench.h"
#include "tools/bench/persist_bench.h"

using namespace dpmfs;

int main(int argc, char** argv) {
  CLI::App app{
      "dpmfs-bench: benchmarks for dpmfs. Each subcommand prints a table on stdout and "
      "writes every measurement, with the machine it ran on, to a JSON file.",
      "dpmfs-bench"};
  CommonFlags common;
  AddCommonFlags(app, &common);
  app.require_subcommand(1);

  bench::PersistBenchOptions persist;
  CLI::App* persist_cmd = bench::AddPersistCommand(app, &persist);
  bench::FsBenchOptions fs;
  CLI::App* fs_cmd = bench::AddFsCommand(app, &fs);
  bench::MetaBenchOptions meta;
  CLI::App* meta_cmd = bench::AddMetaCommand(app, &meta);

  if (auto rc = ParseCommandLine(app, argc, argv, common)) return *rc;
  // A baseline peer that goes away must be an error value, not a signal.
  signal(SIGPIPE, SIG_IGN);

  Status st;
  if (*persist_cmd) st = bench::RunPersistBench(persist);
  if (*fs_cmd) st = bench::RunFsBench(fs);
  if (*meta_cmd) st = bench::RunMetaBench(meta);
  if (!st.ok()) {
    std::cerr << "dpmfs-bench: error: " << st.ToString() << "\n";
    return 1;
  }
  return 0;
}

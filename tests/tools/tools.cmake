# The cluster launcher (tools/dpmfs) with the real daemons, and the README's two-command
# contract with CI.
add_test(NAME readme_commands_test
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tools/readme_commands_test.sh)
set_tests_properties(readme_commands_test PROPERTIES TIMEOUT 30 LABELS tools)

add_test(NAME launcher_test COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tools/launcher_test.sh)
set_tests_properties(launcher_test PROPERTIES
  ENVIRONMENT "DPMFS_BUILD_DIR=${CMAKE_BINARY_DIR}" SKIP_RETURN_CODE 77 TIMEOUT 180
  LABELS tools RESOURCE_LOCK dpmfs_e2e)

# The micro-benchmarks (tools/bench/README.md) run once, briefly: they build and finish.
add_test(NAME microbench_smoke
         COMMAND dpmfs-microbench --benchmark_min_time=0.001 --benchmark_format=json)
set_tests_properties(microbench_smoke PROPERTIES TIMEOUT 120 LABELS bench)

# tools/dpmfs up keeps waiting for a daemon while it prints PROGRESS (journal replay) and
# gives up on a silent one (~10 s).
add_test(NAME launcher_progress_test
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tools/launcher_progress_test.sh ${CMAKE_BINARY_DIR})
set_tests_properties(launcher_progress_test PROPERTIES TIMEOUT 120 LABELS tools)

# cmake --install into a scratch root: every file there, --version with the commit, a
# cluster from the units' command lines mounted through mount -t fuse.dpmfs (~10 s).
# The same with the .deb: `bash tests/tools/install_test.sh build --deb` (.ci/run).
add_test(NAME install_test
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tools/install_test.sh ${CMAKE_BINARY_DIR})
set_tests_properties(install_test PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 180 LABELS tools)

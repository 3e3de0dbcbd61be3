# End-to-end tests (tests/e2e/README.md): real daemons, real mounts, real syscalls.
#
# posix_test (a GoogleTest binary) runs in the directory $DPMFS_TEST_DIR names, and the
# two-client cases in $DPMFS_TEST_DIR2 (the same directory through a second mount).
# run_e2e.sh starts a cluster with tools/dpmfs into a temporary directory, runs one phase
# against it, and always stops and deletes it. A phase that cannot run here (no
# /dev/fuse, no fio, not root) exits 77, which ctest reports as skipped.
add_executable(posix_test e2e/posix_test.cc e2e/two_client_test.cc e2e/two_client_fsx_test.cc
               e2e/e2e_util.cc)
target_include_directories(posix_test PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(posix_test PRIVATE GTest::gtest GTest::gtest_main)
add_executable(e2e_ns_workload e2e/ns_workload.cc)
target_include_directories(e2e_ns_workload PRIVATE ${PROJECT_SOURCE_DIR})

set(_e2e_run bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/run_e2e.sh)
set(_e2e_env DPMFS_BUILD_DIR=${CMAKE_BINARY_DIR}
             DPMFS_POSIX_TEST=$<TARGET_FILE:posix_test>
             DPMFS_NS_WORKLOAD=$<TARGET_FILE:e2e_ns_workload>)

# The tests checked against tmpfs: a failure here is a wrong test, not a dpmfs bug.
add_test(NAME e2e_posix_tmpfs COMMAND ${_e2e_run} tmpfs)
set_tests_properties(e2e_posix_tmpfs PROPERTIES
  ENVIRONMENT "${_e2e_env}" SKIP_RETURN_CODE 77 TIMEOUT 120 LABELS e2e)

# Phases against a dpmfs cluster (~4 minutes in all on 2 cores). Each one has its own
# cluster; RESOURCE_LOCK keeps them one at a time: the crash phases are about timing,
# and two clusters at once on 2 cores only make each slower.
foreach(_phase posix fio two-clients crash-data crash-data-detects-loss crash-meta client-kill
               restart permissions tokens)
  string(REPLACE "-" "_" _name ${_phase})
  add_test(NAME e2e_${_name} COMMAND ${_e2e_run} ${_phase})
  set_tests_properties(e2e_${_name} PROPERTIES
    ENVIRONMENT "${_e2e_env}" SKIP_RETURN_CODE 77 TIMEOUT 240 LABELS e2e
    RESOURCE_LOCK dpmfs_e2e)
endforeach()

# The flood (issue 17, "Resource limits"): 1000 held connections, half-open ones,
# oversized requests and a connect/disconnect flood against the metadata server and a
# data server while the mount keeps working; daemon RSS bounded and given back (~30 s).
add_test(NAME e2e_flood COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/flood.sh)
set_tests_properties(e2e_flood PROPERTIES
  ENVIRONMENT "DPMFS_BUILD_DIR=${CMAKE_BINARY_DIR}" SKIP_RETURN_CODE 77 TIMEOUT 240
  LABELS e2e RESOURCE_LOCK dpmfs_e2e)

# Replication (docs/replication.md): R = 2 over 3 data servers through a mount, reads
# failing over while each server in turn is killed, a server whose pool was deleted and
# formatted again rebuilt in full (then the other copies killed, all reads back), EIO
# (not a hang) with both copies down. ~40 s idle, 120 s on a loaded machine.
add_test(NAME e2e_replication COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/replication_test.sh)
set_tests_properties(e2e_replication PROPERTIES
  ENVIRONMENT "DPMFS_BUILD_DIR=${CMAKE_BINARY_DIR}" SKIP_RETURN_CODE 77 TIMEOUT 300
  LABELS e2e RESOURCE_LOCK dpmfs_e2e)

# Writes through the loss of a data server (docs/replication.md): fio with verification
# while a data server is killed, verify-only from a fresh client, resync, another server
# killed, both copies down. ~60 s idle, longer on a loaded machine.
add_test(NAME e2e_replication_failover
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/replication_failover_test.sh)
set_tests_properties(e2e_replication_failover PROPERTIES
  ENVIRONMENT "DPMFS_BUILD_DIR=${CMAKE_BINARY_DIR}" SKIP_RETURN_CODE 77 TIMEOUT 400
  LABELS e2e RESOURCE_LOCK dpmfs_e2e)

# Several hosts (issue 18): 1 metadata, 3 data and 2 client hosts, each in its own network
# namespace (10.77.0.0/24, a bridge in a namespace of the test's own), from one cluster
# file: per-host mkfs, fio with verification and the two-client posix cases through both
# clients, netem (skipped where the kernel has no sch_netem), a 5 s partition of a data
# server during fio. ~90 s on 2 cores; `multihost_test.sh --long` adds the whole posix_test
# per client, 64 MiB fio jobs and a 15 s partition that must give EIO.
add_test(NAME e2e_multihost COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/multihost_test.sh)
set_tests_properties(e2e_multihost PROPERTIES
  ENVIRONMENT "DPMFS_BUILD_DIR=${CMAKE_BINARY_DIR};DPMFS_POSIX_TEST=$<TARGET_FILE:posix_test>"
  SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS e2e RESOURCE_LOCK dpmfs_e2e)

# Live metrics (issue 18, docs/monitoring.md): `dpmfs stats --json` after FUSE work
# (every server and the client, counts moved, histograms ordered), each daemon's
# /metrics parsed as the Prometheus text format, `dpmfs status` asking the servers, the
# log level changed at run time. ~30 s.
add_test(NAME e2e_metrics COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/metrics_test.sh)
set_tests_properties(e2e_metrics PROPERTIES
  ENVIRONMENT "DPMFS_BUILD_DIR=${CMAKE_BINARY_DIR}" SKIP_RETURN_CODE 77 TIMEOUT 240
  LABELS e2e RESOURCE_LOCK dpmfs_e2e)

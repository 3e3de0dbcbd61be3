# Tests of the metadata pool's durable layer (metadata/meta_store.*) and of the cluster
# file parser (common/cluster_file.*). Real pool files on tmpfs; the crash case forks a
# writer and kill -9s it 20 times (~3 s).
dpmfs_add_test(meta_store_test
  SOURCES metadata/meta_store_test.cc
  LIBS dpmfs_meta_store)

# Crash-point enumeration (meta_store_crash_points_test.cc): every persist point of a
# metadata workload on the fault-injecting PM, recovered and checked, in process.
dpmfs_add_test(meta_store_crash_points_test
  SOURCES metadata/meta_store_crash_points_test.cc
  LIBS dpmfs_meta_store dpmfs_meta_namespace)

dpmfs_add_test(cluster_file_test
  SOURCES metadata/cluster_file_test.cc
  LIBS dpmfs_common)

# mkfs_test (tests/CMakeLists.txt) also checks the metadata superblock mkfs writes.
target_link_libraries(mkfs_test PRIVATE dpmfs_meta_store)

# Crash consistency of dpmfs-meta by kill -9 (meta_crash_test.cc): two seeds, 60 crash
# points each.
dpmfs_add_test(meta_crash_test
  SOURCES metadata/meta_crash_test.cc
  LIBS dpmfs_meta_client dpmfs_meta_store dpmfs_common)
target_compile_definitions(meta_crash_test PRIVATE DPMFS_META_BIN="$<TARGET_FILE:dpmfs-meta>")
add_dependencies(meta_crash_test dpmfs-meta)

# A running dpmfs-meta under random/truncated payloads, malformed frames and garbage
# bytes keeps serving a well-behaved client (meta_wire_test.cc).
dpmfs_add_test(meta_wire_test
  SOURCES metadata/meta_wire_test.cc
  LIBS dpmfs_meta_client dpmfs_meta_store dpmfs_common)
target_compile_definitions(meta_wire_test PRIVATE DPMFS_META_BIN="$<TARGET_FILE:dpmfs-meta>")
add_dependencies(meta_wire_test dpmfs-meta)

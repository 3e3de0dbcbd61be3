# Namespace unit tests (in-process) and the metadata server's semantics suite (a real
# dpmfs-meta process driven over RPC).
dpmfs_add_test(namespace_test
  SOURCES metadata/namespace_test.cc
  LIBS dpmfs_meta_namespace)
dpmfs_add_test(meta_server_test
  SOURCES metadata/meta_server_test.cc
  LIBS dpmfs_meta_server dpmfs_meta_client)
target_compile_definitions(meta_server_test PRIVATE DPMFS_META_BIN="$<TARGET_FILE:dpmfs-meta>")
add_dependencies(meta_server_test dpmfs-meta)
# The free quarantine (metadata/free_quarantine.*): unit tests on a driven clock and
# MetaService in process (allocations waiting for quarantined space, the restart hold).
dpmfs_add_test(free_quarantine_test
  SOURCES metadata/free_quarantine_test.cc
  LIBS dpmfs_meta_server)
# Fencing from the metadata server's side (docs/replication.md, "Fencing"): MetaService in
# process with a recording fake of the data servers.
dpmfs_add_test(cluster_fence_test
  SOURCES metadata/cluster_fence_test.cc
  LIBS dpmfs_meta_server)
# A data server whose pool was formatted again is rebuilt in full (docs/replication.md,
# "Full rebuild"): MetaService in process with a fake of the data servers whose pool
# instance the test changes.
dpmfs_add_test(pool_rebuild_test
  SOURCES metadata/pool_rebuild_test.cc
  LIBS dpmfs_meta_server)
# The metadata server's access to a real data server in process: fences on its admin
# connections, and a restarted data server fenced again by the next probe.
dpmfs_add_test(data_server_access_test
  SOURCES metadata/data_server_access_test.cc
  LIBS dpmfs_meta_server)
# The metadata server's zeroer against a real data server in process.
dpmfs_add_test(block_scrubber_test
  SOURCES metadata/block_scrubber_test.cc
  LIBS dpmfs_meta_server)
# The operation table (metadata/meta_ops.h): frozen wire numbers, a name, handler and
# client stub for every row, unknown opcodes refused.
dpmfs_add_test(meta_ops_test
  SOURCES metadata/meta_ops_test.cc
  LIBS dpmfs_meta_server dpmfs_meta_client)
# The permission rules (metadata/permissions.*) and the caller policy (root_squash,
# allowed uids per host: metadata/caller_policy.*), case by case.
dpmfs_add_test(permissions_test
  SOURCES metadata/permissions_test.cc
  LIBS dpmfs_meta_server)
# The server enforces the modes for every caller: a real dpmfs-meta driven by MetaClients
# that state their caller (an unprivileged uid gets EACCES/EPERM for each forbidden
# operation), --root-squash, --allow-uids, set-ID clearing through replay.
dpmfs_add_test(meta_permissions_test
  SOURCES metadata/meta_permissions_test.cc
  LIBS dpmfs_meta_server dpmfs_meta_client)
target_compile_definitions(meta_permissions_test PRIVATE DPMFS_META_BIN="$<TARGET_FILE:dpmfs-meta>")
add_dependencies(meta_permissions_test dpmfs-meta)
# The cluster map (metadata/cluster_map.h) alone; its journal replay is in namespace_test.
dpmfs_add_test(cluster_map_test
  SOURCES metadata/cluster_map_test.cc
  LIBS dpmfs_meta_namespace)
# POSIX ACLs (metadata/posix_acl.*): the xattr format and the rules, case by case and
# against the kernel's own decisions on a tmpfs (skipped where tmpfs has no ACLs).
dpmfs_add_test(posix_acl_test
  SOURCES metadata/posix_acl_test.cc
  LIBS dpmfs_meta_namespace)

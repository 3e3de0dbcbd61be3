# The FUSE client (fs/): option parsing, layout cache, the striped I/O engine against
# real dpmfs-data processes, and (once dpmfs-meta and dpmfs-mount build) a real mount.
dpmfs_add_test(fs_unit_test
  SOURCES fs/mount_options_test.cc fs/layout_cache_test.cc fs/inode_table_test.cc
          fs/stat_ahead_test.cc fs/release_batcher_test.cc fs/process_groups_test.cc
  LIBS dpmfs_fs_io)

dpmfs_add_test(fs_file_io_test
  SOURCES fs/file_io_test.cc
  LIBS dpmfs_fs_io dpmfs_test_allocation_counter)
target_compile_definitions(fs_file_io_test PRIVATE DPMFS_DATA_BIN="$<TARGET_FILE:dpmfs-data>")
add_dependencies(fs_file_io_test dpmfs-data)

# A real mount (root, /dev/fuse) over a real cluster: dpmfs-meta + 2 x dpmfs-data.
dpmfs_add_test(fs_mount_test
  SOURCES fs/mount_test.cc
  LIBS dpmfs_common)
target_compile_definitions(fs_mount_test PRIVATE
  DPMFS_DATA_BIN="$<TARGET_FILE:dpmfs-data>"
  DPMFS_META_BIN="$<TARGET_FILE:dpmfs-meta>"
  DPMFS_MKFS_BIN="$<TARGET_FILE:mkfs.dpmfs>"
  DPMFS_MOUNT_BIN="$<TARGET_FILE:dpmfs-mount>")
add_dependencies(fs_mount_test dpmfs-data dpmfs-meta mkfs.dpmfs dpmfs-mount)

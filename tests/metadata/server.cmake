# Namespace unit tests (in-process) and the metadata server's semantics suite (a real
# dpmfs-meta process driven over RPC).
if(TARGET dpmfs_meta_namespace AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/metadata/namespace_test.cc)
  dpmfs_add_test(namespace_test
    SOURCES metadata/namespace_test.cc
    LIBS dpmfs_meta_namespace)
endif()
if(TARGET dpmfs-meta AND TARGET dpmfs_meta_client AND
   EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/metadata/meta_server_test.cc)
  dpmfs_add_test(meta_server_test
    SOURCES metadata/meta_server_test.cc
    LIBS dpmfs_meta_server dpmfs_meta_client)
  target_compile_definitions(meta_server_test PRIVATE DPMFS_META_BIN="$<TARGET_FILE:dpmfs-meta>")
  add_dependencies(meta_server_test dpmfs-meta)
endif()
# The free quarantine (metadata/free_quarantine.*): unit tests on a driven clock and
# MetaService in process (allocations waiting for quarantined space, the restart hold).
if(TARGET dpmfs_meta_server AND EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/metadata/free_quarantine_test.cc)
  dpmfs_add_test(free_quarantine_test
    SOURCES metadata/free_quarantine_test.cc
    LIBS dpmfs_meta_server)
endif()

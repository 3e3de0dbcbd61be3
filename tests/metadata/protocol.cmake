# The metadata RPC codec (metadata/meta_protocol.*) and its client (metadata/meta_client.*).
# Included from tests/CMakeLists.txt.
dpmfs_add_test(meta_protocol_test
  SOURCES metadata/meta_protocol_test.cc
  LIBS dpmfs_meta_protocol dpmfs_test_allocation_counter)
dpmfs_add_test(meta_client_test
  SOURCES metadata/meta_client_test.cc
  LIBS dpmfs_meta_client)

# The placement of a block's copies (metadata/placement.h), shared by client and server.
dpmfs_add_test(placement_test
  SOURCES metadata/placement_test.cc
  LIBS dpmfs_meta_protocol)

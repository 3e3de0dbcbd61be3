# The metadata RPC codec (metadata/meta_protocol.*) and its client (metadata/meta_client.*).
# Included from tests/CMakeLists.txt.
dpmfs_add_test(meta_protocol_test
  SOURCES metadata/meta_protocol_test.cc
  LIBS dpmfs_meta_protocol)
dpmfs_add_test(meta_client_test
  SOURCES metadata/meta_client_test.cc
  LIBS dpmfs_meta_client)

# libFuzzer target for the decoders: clang only (tools/fuzz.sh builds and runs it in its
# own build directory). The codec is compiled into the target itself so that it carries
# the coverage instrumentation; the rest of dpmfs_common is linked uninstrumented.
option(DPMFS_FUZZ "Build the libFuzzer targets (needs clang)" OFF)
if(DPMFS_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "DPMFS_FUZZ needs clang (libFuzzer): configure with "
                        "-DCMAKE_CXX_COMPILER=clang++")
  endif()
  add_executable(meta_decode_fuzz metadata/fuzz/meta_decode_fuzz.cc
                                  ${PROJECT_SOURCE_DIR}/metadata/meta_protocol.cc)
  target_compile_options(meta_decode_fuzz PRIVATE -fsanitize=fuzzer,address,undefined
                         -fno-sanitize-recover=undefined)
  target_link_options(meta_decode_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(meta_decode_fuzz PRIVATE dpmfs_common)
endif()

# The placement of a block's copies (metadata/placement.h), shared by client and server.
dpmfs_add_test(placement_test
  SOURCES metadata/placement_test.cc
  LIBS dpmfs_meta_protocol)

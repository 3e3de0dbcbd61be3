# libFuzzer targets of every decoder that reads network or pool bytes (tests/fuzz/README.md).
# Built only with -DDPMFS_FUZZ=ON by clang (tools/fuzz.sh configures such a build with
# ASan + UBSan); the libraries they link are then instrumented too (top CMakeLists.txt).
# Included from tests/CMakeLists.txt.
if(DPMFS_FUZZ)
  set(DPMFS_FUZZ_TARGETS "" CACHE INTERNAL "")
  function(dpmfs_add_fuzzer name)
    cmake_parse_arguments(F "" "" "SOURCES;LIBS" ${ARGN})
    add_executable(${name} ${F_SOURCES})
    target_link_libraries(${name} PRIVATE ${F_LIBS})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    set(DPMFS_FUZZ_TARGETS ${DPMFS_FUZZ_TARGETS} ${name} CACHE INTERNAL "")
  endfunction()

  # One target per decoder family; tools/fuzz.sh runs every name in DPMFS_FUZZ_TARGETS.
  dpmfs_add_fuzzer(rpc_protocol_fuzz SOURCES fuzz/rpc_protocol_fuzz.cc LIBS dpmfs_rpc)
  dpmfs_add_fuzzer(data_protocol_fuzz SOURCES fuzz/data_protocol_fuzz.cc LIBS dpmfs_datapath)
  dpmfs_add_fuzzer(soft_wire_fuzz SOURCES fuzz/soft_wire_fuzz.cc LIBS dpmfs_transport)
  dpmfs_add_fuzzer(handshake_decode_fuzz SOURCES fuzz/handshake_decode_fuzz.cc
                   LIBS dpmfs_transport)
  dpmfs_add_fuzzer(pool_header_fuzz SOURCES fuzz/pool_header_fuzz.cc LIBS dpmfs_common)
  dpmfs_add_fuzzer(cluster_file_fuzz SOURCES fuzz/cluster_file_fuzz.cc LIBS dpmfs_common)
  dpmfs_add_fuzzer(stats_report_fuzz SOURCES fuzz/stats_report_fuzz.cc LIBS dpmfs_common)
  dpmfs_add_fuzzer(meta_decode_fuzz SOURCES fuzz/meta_decode_fuzz.cc LIBS dpmfs_meta_protocol)
  dpmfs_add_fuzzer(journal_record_fuzz SOURCES fuzz/journal_record_fuzz.cc
                   LIBS dpmfs_meta_namespace)
  dpmfs_add_fuzzer(checkpoint_fuzz SOURCES fuzz/checkpoint_fuzz.cc LIBS dpmfs_meta_namespace)
  dpmfs_add_fuzzer(meta_store_fuzz SOURCES fuzz/meta_store_fuzz.cc
                   LIBS dpmfs_meta_store dpmfs_meta_namespace)

  # The seed generator (make_seeds.cc): a plain program, run by hand when a format changes.
  add_executable(fuzz_make_seeds fuzz/make_seeds.cc)
  target_link_libraries(fuzz_make_seeds PRIVATE dpmfs_rpc dpmfs_datapath dpmfs_transport
                        dpmfs_meta_store dpmfs_meta_namespace)
  target_link_options(fuzz_make_seeds PRIVATE -fsanitize=fuzzer-no-link)
  # The list tools/fuzz.sh runs.
  list(JOIN DPMFS_FUZZ_TARGETS "\n" _fuzz_list)
  file(WRITE ${CMAKE_BINARY_DIR}/fuzz_targets.txt "${_fuzz_list}\n")
endif()

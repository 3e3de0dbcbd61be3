# The namespace, the metadata RPC service and the dpmfs-meta daemon (included by
# metadata/CMakeLists.txt). Built once the libraries it stands on exist.
if(TARGET dpmfs_meta_protocol AND TARGET dpmfs_meta_extents)
  add_library(dpmfs_meta_namespace STATIC
    ${_m}/namespace.cc
    ${_m}/namespace_files.cc
    ${_m}/checkpoint_codec.cc
    ${_m}/mutation.cc
  )
  target_link_libraries(dpmfs_meta_namespace PUBLIC dpmfs_meta_extents dpmfs_meta_protocol
                        dpmfs_common)
  if(TARGET dpmfs_meta_store AND EXISTS ${_m}/meta_service.cc AND EXISTS ${_m}/meta_server_main.cc)
    add_library(dpmfs_meta_server STATIC ${_m}/meta_service.cc ${_m}/block_scrubber.cc)
    target_link_libraries(dpmfs_meta_server PUBLIC dpmfs_meta_namespace dpmfs_meta_store
                          dpmfs_rpc dpmfs_transport dpmfs_datapath)
    add_executable(dpmfs-meta ${_m}/meta_server_main.cc)
    target_link_libraries(dpmfs-meta PRIVATE dpmfs_meta_server)
  endif()
endif()

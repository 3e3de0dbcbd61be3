# Extent maps and block allocators (metadata/extent_map.h): unit, randomized-model and
# speed tests. The randomized ones use fixed seeds; the whole suite takes a few seconds.
dpmfs_add_test(extent_map_test
  SOURCES metadata/extent_map_test.cc
  LIBS dpmfs_meta_extents)
dpmfs_add_test(block_allocator_test
  SOURCES metadata/block_allocator_test.cc
  LIBS dpmfs_meta_extents)

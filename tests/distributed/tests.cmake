# Distributed runs (issue 8): several vitprobe processes on 127.0.0.1 joined by c10d/Gloo.
# Included from tests/CMakeLists.txt, so script paths are relative to tests/.
vitprobe_py_test(dist.probe dist distributed/check_dist_probe.py)
vitprobe_py_test(dist.attn-stats dist distributed/check_dist_stats.py)
vitprobe_py_test(dist.failure dist distributed/check_dist_failure.py)
# Part 5 of dist.failure delays one rank's first Gloo group through this LD_PRELOAD shim (a test-only library).
add_library(gloo_delay_shim MODULE ${CMAKE_CURRENT_SOURCE_DIR}/distributed/gloo_delay_shim.cpp)
target_link_libraries(gloo_delay_shim PRIVATE ${CMAKE_DL_LIBS})
set_property(TEST dist.failure APPEND PROPERTY ENVIRONMENT "VITPROBE_GLOO_SHIM=$<TARGET_FILE:gloo_delay_shim>")

# Probing benchmark (issue 4): one online epoch with 1 head vs 4 heads x 13 learning rates.
# `cmake --build BUILD --target bench_probe` runs it and writes BUILD/bench/probe_bench.json.
add_custom_target(bench_probe
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/bench
  COMMAND ${VITPROBE_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/probe_bench.py $<TARGET_FILE:vitprobe>
          --out ${CMAKE_BINARY_DIR}/bench/probe_bench.json
  DEPENDS vitprobe
  USES_TERMINAL
  COMMENT "probe benchmark: 1 head vs 52 heads, one online epoch")

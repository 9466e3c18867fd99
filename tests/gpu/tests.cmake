# GPU tests (issue 15): every command with --device cuda against --device cpu on the same input (tests/gpu/*.py,
# gpu_common.py says how they compare). Label gpu: the CPU run excludes it (scripts/test: ctest -LE gpu, and says
# how many it left out); scripts/gpu-check runs it on the GPU machine (ctest -L '^gpu$'). Without a CUDA device
# each test fails with a message saying so; it never passes without running. The 2-rank NCCL test needs 2 GPUs:
# label multi_gpu, run by scripts/gpu-check only where 2 are visible. Included from tests/CMakeLists.txt.
set(VITPROBE_GPU_DATA ${CMAKE_SOURCE_DIR}/.gpu-check/data CACHE PATH
    "Inputs of the gpu tests copied by scripts/gpu-prepare (the GPU machine has no ../shared)")
function(vitprobe_gpu_test name label script)
  add_test(NAME ${name} COMMAND ${VITPROBE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/gpu/${script})
  set_tests_properties(${name} PROPERTIES LABELS ${label} TIMEOUT 600
    ENVIRONMENT "VITPROBE_BIN=$<TARGET_FILE:vitprobe>;VITPROBE_SHARED=${VITPROBE_SHARED};VITPROBE_GPU_DATA=${VITPROBE_GPU_DATA};VITPROBE_WORK=${CMAKE_CURRENT_BINARY_DIR}/work/${name};OMP_NUM_THREADS=4;VITPROBE_PROGRESS=off")
endfunction()
foreach(command forward extract probe evaluate attn_stats maps embed pretrain bench)
  vitprobe_gpu_test(gpu.${command} gpu check_${command}.py)
endforeach()
vitprobe_gpu_test(gpu.nccl_2ranks multi_gpu check_nccl.py)

# Probing tests (issue 4): numerics against PyTorch references, CLI end-to-end on Fashion-MNIST.
# Included from tests/CMakeLists.txt; script paths are relative to tests/. The unit tests live in
# tests/unit/test_probe_*.cpp and are part of vitprobe_unit_tests (label unit).

# Heads (forward, gradients, BatchNorm statistics, pooling weights) and LARS/SGD/AdamW + schedule, 10 steps.
add_test(NAME golden.probe.reference
         COMMAND ${VITPROBE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/golden/probe_reference.py
                 $<TARGET_FILE:vitprobe_unit_tests> ${CMAKE_CURRENT_BINARY_DIR}/work/golden.probe.reference)
set_tests_properties(golden.probe.reference PROPERTIES LABELS golden TIMEOUT 300 ENVIRONMENT "OMP_NUM_THREADS=2")

# End to end on 2000 Fashion-MNIST images with the real ViT-Tiny at 64 px, cached features; bad inputs.
vitprobe_py_test(cli.probe.e2e cli cli/check_probe.py e2e)
# Fair selection on the bundled MAE: rates and epochs chosen on held-out training items, the grid-edge flag.
vitprobe_py_test(cli.probe.selection cli cli/check_probe.py selection)
vitprobe_py_test(cli.probe.bad_input cli cli/check_probe.py bad-input)

# The probe unit tests (also discovered one by one with label unit) as one entry that `ctest -R probe` selects.
add_test(NAME unit.probe COMMAND vitprobe_unit_tests "--gtest_filter=Probe*:-ProbeReference.*")
set_tests_properties(unit.probe PROPERTIES LABELS unit TIMEOUT 300 ENVIRONMENT "OMP_NUM_THREADS=2")

# The dino oracle aggregation (issue 16): two random ViTs as encoder and oracle, the official form in PyTorch.
add_test(NAME golden.probe.oracle
         COMMAND ${VITPROBE_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/golden/oracle_reference.py
                 $<TARGET_FILE:vitprobe_unit_tests> ${CMAKE_CURRENT_BINARY_DIR}/work/golden.probe.oracle)
set_tests_properties(golden.probe.oracle PROPERTIES LABELS golden TIMEOUT 300 ENVIRONMENT "OMP_NUM_THREADS=2")
# probe --heads cls,dino --oracle-model on the bundled MAE and DINO models; evaluate, maps, the cache key, refusals.
vitprobe_py_test(cli.probe.oracle cli cli/check_probe_oracle.py)

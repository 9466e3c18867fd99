# Pretraining tests (issue 6): their own executables, so `ctest -R pretrain` selects them by name
# ("pretrain." prefix) and each tier keeps its label. Included from tests/CMakeLists.txt.

# The shared unit-test binary globs unit/*.cpp; the pretraining files are built here instead.
get_target_property(_unit_sources vitprobe_unit_tests SOURCES)
list(FILTER _unit_sources EXCLUDE REGEX "test_pretrain_[^/]*\\.cpp$")
set_property(TARGET vitprobe_unit_tests PROPERTY SOURCES ${_unit_sources})

set(_pretrain_definitions
    VITPROBE_PYTHON="${VITPROBE_PYTHON}"
    VITPROBE_TESTS_DIR="${CMAKE_CURRENT_SOURCE_DIR}"
    VITPROBE_PRETRAIN_WORK_DIR="${CMAKE_CURRENT_BINARY_DIR}/work/pretrain")

# name -> source file and label: unit (fast), golden (against python3-torch), training (real data, ~1-2 min).
foreach(_tier units golden training)
  set(_target vitprobe_pretrain_${_tier}_tests)
  add_executable(${_target} ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_pretrain_${_tier}.cpp)
  target_link_libraries(${_target} PRIVATE vitprobe_engine GTest::gtest GTest::gtest_main)
  target_compile_definitions(${_target} PRIVATE ${_pretrain_definitions})
endforeach()
gtest_discover_tests(vitprobe_pretrain_units_tests TEST_PREFIX "pretrain.unit." PROPERTIES LABELS unit
                     DISCOVERY_TIMEOUT 60)
gtest_discover_tests(vitprobe_pretrain_golden_tests TEST_PREFIX "pretrain.golden." PROPERTIES LABELS golden
                     DISCOVERY_TIMEOUT 60)
gtest_discover_tests(vitprobe_pretrain_training_tests TEST_PREFIX "pretrain.training." PROPERTIES LABELS training
                     TIMEOUT 600 DISCOVERY_TIMEOUT 60)

# End to end: encoders written by `vitprobe pretrain` (and the bundled ones in models/) load in PyTorch and give
# the same forward as vitprobe; the CLI's resume, determinism and bad inputs.
vitprobe_py_test(pretrain.golden.encoder_parity golden golden/pretrain_encoder_parity.py)
vitprobe_py_test(pretrain.cli cli cli/check_pretrain.py)

# Fuzz tests (label fuzz): fuzz.build builds the libFuzzer targets with clang into build-fuzz/ (scripts/fuzz
# --build-only: its own CMake project, ccache'd) and generates their seed corpora; then fuzz.<target> runs each
# target for 10 s and fails on any crash, sanitizer report, leak, timeout or input over 1024 MB (the input is
# kept under build-fuzz/crashes/). Longer runs: scripts/fuzz SECONDS (see docs/reliability.md).
include(${CMAKE_SOURCE_DIR}/fuzz/targets.cmake)
set(VITPROBE_FUZZ_SECONDS 10 CACHE STRING "Seconds each fuzz target runs in ctest")
add_test(NAME fuzz.build COMMAND ${CMAKE_SOURCE_DIR}/scripts/fuzz --build-only)
set_tests_properties(fuzz.build PROPERTIES LABELS fuzz FIXTURES_SETUP vitprobe_fuzz TIMEOUT 1800
                     ENVIRONMENT "VITPROBE_JOBS=2")
foreach(target ${VITPROBE_FUZZ_TARGETS})
  add_test(NAME fuzz.${target} COMMAND ${CMAKE_SOURCE_DIR}/scripts/fuzz --no-build ${VITPROBE_FUZZ_SECONDS} ${target})
  set_tests_properties(fuzz.${target} PROPERTIES LABELS fuzz FIXTURES_REQUIRED vitprobe_fuzz TIMEOUT 300)
endforeach()

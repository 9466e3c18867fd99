# CLI end-to-end tests (tier 3): bad inputs, help texts, inspect on the real model.
# Included from tests/CMakeLists.txt, so script paths are relative to tests/.

foreach(case truncated random-bytes zip-without-data-pkl unknown-global safetensors-lying-header
             wrong-architecture-missing wrong-architecture-shape image-not-decoding npy-wrong-shape
             npy-wrong-dtype missing-model inspect-random-bytes)
  vitprobe_py_test(cli.bad_input.${case} cli cli/check_bad_inputs.py ${case})
endforeach()
# Issue 18: numeric options (NaN, inf, negative, out of range, too large for the machine) refused at parsing in
# one short line naming the option and the value; small-metadata errors named instead of library text.
foreach(case lrs-inf momentum-nan warmup-epochs-nan min-lr-nan blr-nan weight-decay-negative mean-nan std-inf
             alpha-nan pretrain-min-lr-nan knn-k-zero knn-k-negative knn-temperature-zero seeds-duplicate
             threads-huge workers-huge batch-huge img-size-huge resize-huge crop-huge batch-zero)
  vitprobe_py_test(cli.bad_option.${case} cli cli/check_bad_inputs.py ${case})
endforeach()
foreach(case metadata-bad-crop empty-npy-batch resume-without-trainer out-of-memory)
  vitprobe_py_test(cli.bad_input.${case} cli cli/check_bad_inputs.py ${case})
endforeach()

foreach(check help unknown-subcommand inspect-real)
  vitprobe_py_test(cli.${check} cli cli/check_cli.py ${check})
endforeach()
vitprobe_py_test(cli.demo-quick cli cli/check_demo.py)
# Issue 17: the quick demo's index.html in headless Chromium (every image renders, the page is not blank).
# It reads the report cli.demo-quick wrote (a fixture, so ctest runs that first) instead of running the demo again.
set_tests_properties(cli.demo-quick PROPERTIES FIXTURES_SETUP demo_report)
vitprobe_py_test(cli.demo-report-browser cli cli/check_report_browser.py
                 ${CMAKE_CURRENT_BINARY_DIR}/work/cli.demo-quick/demo)
set_tests_properties(cli.demo-report-browser PROPERTIES FIXTURES_REQUIRED demo_report)

# Hostile inputs (issue 18): resource bombs, lying archives and images, non-files, broken checkpoints.
foreach(case reference-bomb stride-zero deflate-bomb zip-duplicate zip-crc safetensors-trailing jpeg-bomb
             jpeg-premature-end png-header-bomb ppm-header-bomb resize-strip dev-zero-input idx-gzip-bomb
             missing-block nan-weights nan-weights-allowed loader-allocation)
  vitprobe_py_test(cli.hostile.${case} cli cli/check_hostile_inputs.py ${case})
endforeach()

# docs/commands/<command>.md: one page per subcommand, linked from README, with the command's --help verbatim.
vitprobe_py_test(cli.docs cli cli/check_docs.py)

# Outputs, locks and stored states (issue 18): all-or-nothing --out, stale temporaries, --out checks and lock,
# verified resume states and feature caches, train/val class names, a folder given as an image.
foreach(case write-fails no-leftovers stale-temporaries out-is-file out-inside-input out-locked resume-epochs
             resume-checksum resume-nan resume-trainer-incomplete cache-checksum cache-nan val-class-names
             folder-as-image)
  vitprobe_py_test(cli.outputs.${case} cli cli/check_outputs.py ${case})
endforeach()

# Issue 15: bench/compare_pytorch.py (the CPU anchor, and what scripts/gpu-check runs on the GPU machine) end to end
# on ViT-Ti/16 at batch 1, one round, with --maps and --reference.
vitprobe_py_test(bench.compare-pytorch bench cli/check_compare_pytorch.py)
# ... and scripts/gpu/throughput.py (gpu-check's attn-stats and 52-head probing figures) on the CPU, ViT-Ti at 32 px.
vitprobe_py_test(bench.gpu-throughput bench cli/check_gpu_throughput.py)

# The fuzz targets, fuzz/<name>_fuzzer.cpp: built by fuzz/CMakeLists.txt, run one ctest each (tests/fuzz.cmake);
# scripts/fuzz reads this list too.
set(VITPROBE_FUZZ_TARGETS pickle torch_archive safetensors npy idx cifar_stl image text)

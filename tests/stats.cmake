# Attention analysis (issue 5): attn-stats, maps and embed. Included from tests/CMakeLists.txt, so script
# paths are relative to tests/. The unit tests (tests/unit/test_stats_*.cpp, GoogleTest suite "stats") are
# part of vitprobe_unit_tests.

# Every statistic of stats.json against PyTorch/numpy on tiny [cls], register and no-[cls] models.
vitprobe_py_test(golden.attn_stats.parity golden golden/attn_stats_parity.py layouts)
# The magnitude ratio before LayerScale (the official measure) and after it, on SimMIM / BEiT checkpoints whose
# LayerScale gammas are far from 1, against the official model's layout (reference_simmim.py).
vitprobe_py_test(golden.attn_stats.magnitude_before_layer_scale golden golden/attn_stats_parity.py
                 magnitude-before-layer-scale)

# The commands end to end on the real ViT-Tiny/16 and the 17 photos, other layouts, and bad inputs.
foreach(check real bad-inputs)
  vitprobe_py_test(cli.attn_stats.${check} cli cli/check_attn_stats.py ${check})
endforeach()
foreach(check real layouts)
  vitprobe_py_test(cli.maps.${check} cli cli/check_maps.py ${check})
endforeach()
foreach(check real barnes-hut)
  vitprobe_py_test(cli.embed.${check} cli cli/check_embed.py ${check})
endforeach()
# maps --heads-dir and embed --features abmilp on heads a short probe run trains.
vitprobe_py_test(cli.pooling_maps cli cli/check_pooling_maps.py)

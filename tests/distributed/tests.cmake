# Distributed runs (issue 8): several vitprobe processes on 127.0.0.1 joined by c10d/Gloo.
# Included from tests/CMakeLists.txt, so script paths are relative to tests/.
vitprobe_py_test(dist.probe dist distributed/check_dist_probe.py)
vitprobe_py_test(dist.attn-stats dist distributed/check_dist_stats.py)
vitprobe_py_test(dist.failure dist distributed/check_dist_failure.py)

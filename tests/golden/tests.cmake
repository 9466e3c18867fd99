# Golden tests (tier 2): vitprobe against independent PyTorch references (tests/golden/reference_vit.py).
# Included from tests/CMakeLists.txt, so script paths are relative to tests/.

# The references themselves, checked against torchvision; needs no vitprobe binary.
vitprobe_py_test(golden.reference_self golden golden/check_reference_self.py)

# One test per checkpoint layout of make_references.py: forward fp32 and bf16, then inspect.
# simmim and beit-finetuned are the golden "SimMIM forward" tests: checkpoints in the official BEiT / SimMIM layout
# (relative position bias shared / per block, q and v biases, gamma_1 / gamma_2) against reference_simmim.py.
foreach(case torchvision mae mae-safetensors ijepa dinov2-registers resample dino mocov3 simmim beit-finetuned)
  vitprobe_py_test(golden.forward.${case} golden golden/check_forward.py ${case})
  # Again capped at AVX2 (VITPROBE_MAX_CPU_ISA caps vitprobe's kernels and oneDNN): bf16 then runs as fp32
  # products on bf16-rounded values on every machine, and the test checks the stderr line that says so.
  vitprobe_py_test(golden.forward.avx2.${case} golden golden/check_forward.py ${case})
  set_property(TEST golden.forward.avx2.${case} APPEND PROPERTY ENVIRONMENT "VITPROBE_MAX_CPU_ISA=AVX2")
endforeach()

# The real ViT-Tiny/16 on the 17 ImageNet photos: vitprobe's own preprocessing, then a shared input tensor.
vitprobe_py_test(golden.real_model.images golden golden/check_real_model.py images)
vitprobe_py_test(golden.real_model.tensor golden golden/check_real_model.py tensor)

# The pretraining references of bench/ (README's reference-vs-vitprobe table) run, take vitprobe's steps and start
# at comparable losses (their initial weights differ).
vitprobe_py_test(golden.pretrain_references golden golden/check_pretrain_references.py)

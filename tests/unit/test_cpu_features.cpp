// CPU features, the instruction-set cap, and the kernels chosen under it. CTest runs these three times: at the
// machine's own level, capped at AVX2 (ONEDNN_MAX_CPU_ISA) and capped at SSE41 (VITPROBE_MAX_CPU_ISA).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "common/cpu_features.h"
#include "common/errors.h"
#include "kernels/onednn_matmul.h"
#include "kernels/softmax.h"
#include "model/compute_dtype.h"

namespace vitprobe {
namespace {

const char* kAmdAvx2 =
    "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse4_1 sse4_2 avx fma avx2 bmi2\n"
    "processor\t: 1\nflags\t\t: fpu sse4_1 avx avx2 fma avx512f avx512bw avx512vl avx512dq\n";
const char* kXeonAvx512 = "flags : sse4_1 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni\n"
                          "bugs : avx512_bf16\n";
const char* kXeonBf16 = "flags : sse4_1 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_bf16\n";
const char* kSapphireRapids =
    "flags : sse4_1 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_bf16 amx_bf16 amx_tile amx_int8\n";

TEST(CpuFeatures, ParsesLevelsFromCpuinfo) {
  const auto amd = parse_cpuinfo(kAmdAvx2);
  EXPECT_EQ(amd.model_name, "AMD EPYC");
  EXPECT_EQ(amd.level(), CpuIsa::Avx2) << "only the first processor's flags count";
  EXPECT_FALSE(amd.avx512f);
  EXPECT_EQ(parse_cpuinfo(kXeonAvx512).level(), CpuIsa::Avx512Core) << "a 'bugs' line is not a flag line";
  EXPECT_EQ(parse_cpuinfo(kXeonBf16).level(), CpuIsa::Avx512CoreBf16);
  EXPECT_EQ(parse_cpuinfo(kSapphireRapids).level(), CpuIsa::Avx512CoreAmx);
  EXPECT_EQ(parse_cpuinfo("flags : fpu sse4_1 avx512f\n").level(), CpuIsa::Sse41)
      << "avx512f without bw/vl/dq is not AVX512_CORE, and no avx means SSE41";
  EXPECT_EQ(parse_cpuinfo("").level(), CpuIsa::Sse41);
  EXPECT_EQ(parse_cpuinfo(kSapphireRapids).names(),
            (std::vector<std::string>{"sse4_1", "avx", "avx2", "avx512f", "avx512_core", "avx512_bf16", "amx_bf16"}));
}

TEST(CpuFeatures, ParsesCapsInOneDnnSpelling) {
  EXPECT_EQ(parse_cpu_isa("avx2"), CpuIsa::Avx2);
  EXPECT_EQ(parse_cpu_isa("AVX512_CORE_BF16"), CpuIsa::Avx512CoreBf16);
  EXPECT_EQ(parse_cpu_isa("Avx512_Core_Amx"), CpuIsa::Avx512CoreAmx);
  EXPECT_EQ(parse_cpu_isa("AVX512_CORE_VNNI"), CpuIsa::Avx512Core);
  EXPECT_EQ(parse_cpu_isa("ALL"), CpuIsa::All);
  EXPECT_THROW(parse_cpu_isa("avx1024"), BadInput);
  EXPECT_THROW(parse_cpu_isa(""), BadInput);
  for (auto isa : {CpuIsa::Sse41, CpuIsa::Avx, CpuIsa::Avx2, CpuIsa::Avx512Core, CpuIsa::Avx512CoreBf16,
                   CpuIsa::Avx512CoreAmx, CpuIsa::All}) {
    EXPECT_EQ(parse_cpu_isa(cpu_isa_name(isa)), isa);
  }
}

// Sets an environment variable for one scope and puts the old value back.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value, 1); else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_, old_->c_str(), 1); else ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(CpuFeatures, CapComesFromVitprobeThenOneDnnVariable) {
  {
    ScopedEnv vitprobe("VITPROBE_MAX_CPU_ISA", "SSE41"), onednn("ONEDNN_MAX_CPU_ISA", "AVX2");
    EXPECT_EQ(cpu_isa_cap(), CpuIsa::Sse41);
    EXPECT_EQ(effective_cpu_isa(), CpuIsa::Sse41);
    EXPECT_FALSE(cpu_supports_bf16());
    EXPECT_EQ(default_compute_dtype("cpu"), "fp32");
  }
  {
    ScopedEnv vitprobe("VITPROBE_MAX_CPU_ISA", nullptr), onednn("ONEDNN_MAX_CPU_ISA", "avx2");
    EXPECT_EQ(cpu_isa_cap(), CpuIsa::Avx2);
    EXPECT_LE(effective_cpu_isa(), CpuIsa::Avx2);
  }
  {
    ScopedEnv vitprobe("VITPROBE_MAX_CPU_ISA", "AVX9"), onednn("ONEDNN_MAX_CPU_ISA", nullptr);
    try {
      cpu_isa_cap();
      ADD_FAILURE() << "an unknown cap must be refused";
    } catch (const BadInput& e) {
      EXPECT_NE(std::string(e.what()).find("VITPROBE_MAX_CPU_ISA"), std::string::npos) << e.what();
    }
  }
  {
    // A name only oneDNN knows is oneDNN's business: vitprobe does not refuse to start over it.
    ScopedEnv vitprobe("VITPROBE_MAX_CPU_ISA", nullptr), onednn("ONEDNN_MAX_CPU_ISA", "AVX512_MIC");
    EXPECT_EQ(cpu_isa_cap(), CpuIsa::All);
  }
  {
    ScopedEnv vitprobe("VITPROBE_MAX_CPU_ISA", nullptr), onednn("ONEDNN_MAX_CPU_ISA", nullptr);
    EXPECT_EQ(cpu_isa_cap(), CpuIsa::All);
    EXPECT_EQ(effective_cpu_isa(), cpu_features().level());
    EXPECT_EQ(default_compute_dtype("cuda"), "bf16");
  }
}

// Whatever level this process runs at (CTest runs it native, capped at AVX2 and at SSE41), the kernels chosen
// must be the ones that level allows.
TEST(CpuFeatures, KernelsFollowTheCap) {
  const bool avx512_core = effective_cpu_isa() >= CpuIsa::Avx512Core;
  EXPECT_EQ(softmax_vectorized_available(), avx512_core && __builtin_cpu_supports("avx512f"));
  if (!onednn_available()) GTEST_FAIL() << "this build has no oneDNN fast path (libdnnl-dev missing?)";
  const auto path = bf16_matmul_path();
  if (!avx512_core) {
    EXPECT_EQ(path, "fp32-rounded") << "oneDNN has no bf16 matmul below AVX512_CORE";
  } else {
    EXPECT_EQ(path, cpu_supports_bf16() ? "onednn-native" : "onednn-emulated");
  }
  const auto description = onednn_description();
  if (!avx512_core) EXPECT_EQ(description.find("avx512"), std::string::npos) << description;
}

// bf16 products on every path equal fp32 products of the bf16-rounded operands, rounded once to bf16: the
// kernels accumulate in fp32 whichever path runs, so only the last rounding may differ (1 bf16 ulp = 2^-7).
TEST(CpuFeatures, Bf16ProductsEqualRoundedFp32Products) {
  if (!onednn_available()) GTEST_FAIL() << "this build has no oneDNN fast path";
  at::manual_seed(7);
  const auto weight = at::randn({96, 80}), bias = at::randn({96}), x = at::randn({37, 80});
  const auto residual = at::randn({37, 96}), scale = at::rand({96}) + 0.5;
  const PackedLinear linear(weight, bias, at::kBFloat16, Activation::Gelu);
  const auto out = linear(x.to(at::kBFloat16), residual.to(at::kBFloat16), scale.to(at::kBFloat16));
  ASSERT_EQ(out.scalar_type(), at::kBFloat16);
  auto rounded = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kFloat); };
  const auto expected = rounded(residual) + rounded(scale) * at::gelu(at::linear(rounded(x), rounded(weight), bias));
  const auto error = (out.to(at::kFloat) - expected).abs() / expected.abs().clamp_min(1e-3);
  EXPECT_LE(error.max().item<float>(), 1.0f / 64) << "path " << bf16_matmul_path();

  // Batched products (attention): bf16 operands, fp32 and bf16 results.
  const auto a = at::randn({2, 3, 17, 16}).to(at::kBFloat16), b = at::randn({2, 3, 16, 17}).to(at::kBFloat16);
  const auto scores = at::empty({2, 3, 17, 17});
  batched_matmul(a, b, scores, 0.25f);
  const auto exact = at::matmul(a.to(at::kFloat), b.to(at::kFloat)) * 0.25;
  EXPECT_LE((scores - exact).abs().max().item<float>(), 1e-4f);
  const auto mixed = at::empty({2, 3, 17, 17}, at::kBFloat16);
  batched_matmul(a, b.transpose(-2, -1).contiguous().transpose(-2, -1), mixed, 1.0f);
  EXPECT_LE(((mixed.to(at::kFloat) - exact * 4).abs() / (exact * 4).abs().clamp_min(1e-2)).max().item<float>(), 1.0f / 64);
}

}  // namespace
}  // namespace vitprobe

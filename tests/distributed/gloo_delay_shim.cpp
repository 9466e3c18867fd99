// Test shim for dist.failure (LD_PRELOAD): the rank named by VITPROBE_SHIM_RANK sleeps VITPROBE_SHIM_SLEEP_S
// seconds before its first c10d::ProcessGroupGloo, so its peers' first Gloo round times out as a mesh that
// never connects would, and the ranks must connect again together. The constructor is found by its mangled
// name (libtorch 2.x's ProcessGroupGloo(const intrusive_ptr<Store>&, int, int, intrusive_ptr<Options>)); when
// the name does not match this libtorch, nothing sleeps, and the test fails because no rank connected again.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#define VITPROBE_GLOO_CTOR \
  "_ZN4c10d16ProcessGroupGlooC1ERKN3c1013intrusive_ptrINS_5StoreENS1_6detail34intrusive_target_default_null_" \
  "typeIS3_EEEEiiNS2_INS0_7OptionsENS5_ISA_EEEE"

namespace {
using Constructor = void (*)(void*, void*, int, int, void*);
int calls = 0;
}  // namespace

// The Itanium ABI passes `this`, the Store reference, the two ints and the by-value Options (a non-trivial class:
// the address of a temporary) in registers, in this order: forwarding them unchanged is the call itself.
extern "C" void vitprobe_gloo_ctor_shim(void* self, void* store, int rank, int size, void* options)
    __asm__(VITPROBE_GLOO_CTOR);

extern "C" void vitprobe_gloo_ctor_shim(void* self, void* store, int rank, int size, void* options) {
  static const auto real = reinterpret_cast<Constructor>(dlsym(RTLD_NEXT, VITPROBE_GLOO_CTOR));
  const char* who = std::getenv("VITPROBE_SHIM_RANK");
  const char* sleep_s = std::getenv("VITPROBE_SHIM_SLEEP_S");
  if (calls++ == 0 && who && sleep_s && std::atoi(who) == rank) {
    std::fprintf(stderr, "gloo_delay_shim: rank %d sleeps %s s before its first Gloo group\n", rank, sleep_s);
    ::sleep(static_cast<unsigned>(std::atoi(sleep_s)));
  }
  real(self, store, rank, size, options);
}

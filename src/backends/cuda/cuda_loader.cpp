// make_cuda_backend and cuda_unavailable_reason for the program: they load the CUDA backend
// module (cuda_module.h says why it is one) on first use. In a build without CUDA they say so.
#include <dlfcn.h>

#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_module.h"
#include "core/error.h"

namespace tern {
namespace {

#ifdef TERN_CUDA_MODULE_NAME
// The module next to the executable (the build tree's bin/), else in ../lib beside it (an
// installed layout); TERN_CUDA_MODULE names another file.
std::string module_path() {
  if (const char* p = std::getenv("TERN_CUDA_MODULE"); p && *p) return p;
  Dl_info info{};
  std::string dir = ".";
  if (dladdr(reinterpret_cast<void*>(&module_path), &info) && info.dli_fname) {
    const std::string self = info.dli_fname;
    const size_t slash = self.rfind('/');
    if (slash != std::string::npos) dir = self.substr(0, slash);
  }
  const std::string here = dir + "/" + TERN_CUDA_MODULE_NAME;
  const std::string lib = dir + "/../lib/" + TERN_CUDA_MODULE_NAME;
  return access(here.c_str(), F_OK) == 0 || access(lib.c_str(), F_OK) != 0 ? here : lib;
}

struct Loaded {
  const CudaModuleApi* api = nullptr;
  std::string error;  // why it could not be loaded
};

const Loaded& loaded() {
  static Loaded l;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string path = module_path();
    // RTLD_LOCAL: the module's symbols (its own copies of tern's lower layers among them) stay
    // out of the program's namespace.
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      l.error = "cannot load the CUDA backend module " + path + ": " + (e ? e : "unknown error");
      return;
    }
    using Entry = const CudaModuleApi* (*)();
    auto entry = reinterpret_cast<Entry>(dlsym(h, kCudaModuleEntry));
    if (!entry) {
      l.error = path + " is not a tern CUDA backend module (no " + kCudaModuleEntry + ")";
      return;
    }
    const CudaModuleApi* api = entry();
    const CudaModuleApi want = cuda_module_layout();
    if (api->abi != want.abi || api->config_size != want.config_size ||
        api->tensor_view_size != want.tensor_view_size || api->attention_args_size != want.attention_args_size) {
      l.error = path + " comes from another build of tern (interface " + std::to_string(api->abi) + ", expected " +
                std::to_string(want.abi) + "): rebuild both";
      return;
    }
    l.api = api;  // the handle stays open for the life of the process
  });
  return l;
}
#endif

}  // namespace

std::string cuda_unavailable_reason() {
#ifdef TERN_CUDA_MODULE_NAME
  const Loaded& l = loaded();
  return l.api ? l.api->unavailable_reason() : l.error;
#else
  return "tern was built without CUDA (configure with -DTERN_CUDA=ON)";
#endif
}

std::unique_ptr<Backend> make_cuda_backend(const CudaBackendConfig& config) {
#ifdef TERN_CUDA_MODULE_NAME
  const Loaded& l = loaded();
  TERN_CHECK(l.api, "cuda backend: {}", l.error);
  return l.api->make_backend(config, log_level());
#else
  fail("cuda backend: {}", cuda_unavailable_reason());
#endif
}

}  // namespace tern

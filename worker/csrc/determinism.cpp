// Deterministic algorithms and what the loaded libtorch says about itself, for the trial process:
// tch binds neither `at::Context::setDeterministicAlgorithms` nor `setDeterministicCuDNN`, nor
// `at::show_config`.
//
// As in autocast.cpp, the declarations are copied from ATen/Context.h and ATen/Version.h
// (libtorch 2.11) rather than included: Context.h pulls in all of ATen. `Context` is declared
// with only the (non-virtual, out-of-line, exported) members called here; no object of it is
// made or copied here, so its layout does not matter, only the names the linker resolves.
#include <cstring>
#include <string>

namespace at {
class Context {
 public:
  void setDeterministicCuDNN(bool b);
  void setBenchmarkCuDNN(bool b);
  void setDeterministicAlgorithms(bool b, bool warn_only);
  bool deterministicAlgorithms() const;
};
Context& globalContext();
std::string show_config();
std::string get_cpu_capability();
}  // namespace at

namespace {
// Copies `text` into `out` (at most `capacity` bytes with the NUL); returns the text's length, so
// that a caller whose buffer was too small can ask again with more.
int copy_out(const std::string& text, char* out, int capacity) {
  if (capacity > 0) {
    const size_t n = text.size() < static_cast<size_t>(capacity - 1) ? text.size() : capacity - 1;
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
  }
  return static_cast<int>(text.size());
}
}  // namespace

extern "C" {

// Deterministic algorithms for the whole process: cuDNN's deterministic convolutions, no cuDNN
// benchmark (its choice of algorithm depends on timing), and every op without a deterministic
// implementation raising an error instead of running (warn_only = false).
void sal_set_deterministic() {
  auto& context = at::globalContext();
  context.setDeterministicCuDNN(true);
  context.setBenchmarkCuDNN(false);
  context.setDeterministicAlgorithms(true, false);
}

// Whether `sal_set_deterministic` is in force (read back from libtorch, for the manifest).
int sal_deterministic_algorithms() { return at::globalContext().deterministicAlgorithms() ? 1 : 0; }

// `at::show_config()`: build settings (TORCH_VERSION=...), CPU capability, CUDA and cuDNN.
int sal_show_config(char* out, int capacity) { return copy_out(at::show_config(), out, capacity); }

// The instruction set libtorch's CPU kernels dispatch to (`AVX2`, `AVX512`, ...).
int sal_cpu_capability(char* out, int capacity) { return copy_out(at::get_cpu_capability(), out, capacity); }

}  // extern "C"

// bf16 autocast for the trainer: tch binds `at::autocast::set_enabled`, which turns CUDA autocast
// on with its default dtype (float16); the paper's GPUs and ours want bfloat16, whose dtype setter
// tch does not bind.
//
// The declarations are copied from ATen/autocast_mode.h (libtorch 2.11) rather than included:
// that header pulls in all of ATen, minutes of compilation on a 2-core machine, for four functions.
#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace at::autocast {
bool is_autocast_enabled(c10::DeviceType device_type);
void set_autocast_enabled(c10::DeviceType device_type, bool enabled);
c10::ScalarType get_autocast_dtype(c10::DeviceType device_type);
void set_autocast_dtype(c10::DeviceType device_type, c10::ScalarType dtype);
void clear_cache();
int increment_nesting();
int decrement_nesting();
}  // namespace at::autocast

extern "C" {

// Enters CUDA autocast in bfloat16 on this thread; returns the previous state for the exit:
// bit 0 whether it was enabled, bits 8.. its dtype.
int sal_autocast_bf16_enter() {
  const auto cuda = c10::DeviceType::CUDA;
  const int previous = (at::autocast::is_autocast_enabled(cuda) ? 1 : 0) |
                       (static_cast<int>(at::autocast::get_autocast_dtype(cuda)) << 8);
  at::autocast::set_autocast_dtype(cuda, c10::ScalarType::BFloat16);
  at::autocast::set_autocast_enabled(cuda, true);
  at::autocast::increment_nesting();
  return previous;
}

// Leaves what `sal_autocast_bf16_enter` entered, restoring `previous`.
void sal_autocast_exit(int previous) {
  const auto cuda = c10::DeviceType::CUDA;
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  at::autocast::set_autocast_enabled(cuda, (previous & 1) != 0);
  at::autocast::set_autocast_dtype(cuda, static_cast<c10::ScalarType>(previous >> 8));
}

}  // extern "C"

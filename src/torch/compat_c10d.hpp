// The c10d half of src/torch/compat.hpp: what differs in the distributed API between LibTorch
// 1.13 and 2.x. Included only by the distributed component and its tests (c10d's headers are
// slow to compile and need libgloo-dev's headers).
//
// - 1.13: `ProcessGroupGloo` is a `ProcessGroup`.
// - 2.x: `ProcessGroupGloo` is a `c10d::Backend`; a `ProcessGroup` holds one backend per device
//   type, so a CPU group is a ProcessGroup with the Gloo backend set for the CPU.
#pragma once

#include <torch/version.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

namespace layerfreeze::compat {

inline c10::intrusive_ptr<c10d::ProcessGroup> gloo_group(
    const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
    c10::intrusive_ptr<c10d::ProcessGroupGloo::Options> options) {
#if TORCH_VERSION_MAJOR >= 2
  auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, std::move(options));
  auto group = c10::make_intrusive<c10d::ProcessGroup>(store, rank, size);
  group->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
  group->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, backend);
  return group;
#else
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, std::move(options));
#endif
}

}  // namespace layerfreeze::compat

// How the distributed component reports failures: every error a collective, a rendezvous or a
// bad setting raises becomes a DiagnosticError with a stable code, like the rest of layerfreeze.
#pragma once

#include <c10/util/Exception.h>

#include <string>
#include <vector>

#include "layerfreeze/diagnostics.hpp"
#include "torch/errors.hpp"

namespace layerfreeze::distributed {

using layerfreeze::fail;  // the torch adapter's: a DiagnosticError with a stable code

/// Runs `f`; a LibTorch or Gloo exception becomes a `distributed-error` naming `what`, with
/// `hint` as a note (the default hint fits a collective).
template <class F>
auto guarded(const std::string& what, F&& f, std::string hint = "") -> decltype(f()) {
  try {
    return f();
  } catch (const DiagnosticError&) {
    throw;
  } catch (const std::exception& e) {
    const auto* c10 = dynamic_cast<const c10::Error*>(&e);
    std::string text = c10 ? c10->what_without_backtrace() : e.what();
    if (hint.empty())
      hint =
          "a rank exited, timed out or cannot be reached; every rank must make the same calls in "
          "the same order";
    fail("distributed-error", what + " failed: " + text, {hint});
  }
}

}  // namespace layerfreeze::distributed

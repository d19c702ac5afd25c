// The torch adapter's one way to fail: a DiagnosticError with a stable code, a message and what
// to do (docs/API.md, "The executor") — LibTorch's own exceptions are caught and wrapped with
// what layerfreeze was doing, so no c10::Error leaves a public call.
#pragma once

#include <c10/util/Exception.h>

#include <string>
#include <utility>
#include <vector>

#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

[[noreturn]] inline void fail(const std::string& code, const std::string& message,
                              std::vector<std::string> notes = {}) {
  Diagnostics d;
  d.error(code, message, {}, std::move(notes));
  throw DiagnosticError(std::move(d));
}

/// The same, with one note: what to do.
[[noreturn]] inline void fail_with_fix(const std::string& code, const std::string& message,
                                       const std::string& fix) {
  fail(code, message, {fix});
}

[[noreturn]] inline void throw_torch_error(const c10::Error& e, const std::string& what) {
  fail("torch-error", what + ": " + e.what_without_backtrace());
}

/// Runs `f`; a c10::Error becomes a "torch-error" DiagnosticError naming `what`.
template <class F>
auto torch_guarded(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const c10::Error& e) {
    throw_torch_error(e, what);
  }
}

}  // namespace layerfreeze

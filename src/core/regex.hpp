// The one place RE2 is configured. RE2 is the reference semantics of every pattern in a rules
// file, the discovery patterns and the families: full matches (the callers use FullMatch or an
// anchored set), case sensitivity as asked, and nothing logged to stderr — a bad pattern is a
// diagnostic of ours, with its location.
#pragma once

#include <re2/re2.h>

namespace layerfreeze {

inline RE2::Options re2_options(bool case_sensitive = true) {
  RE2::Options o;
  o.set_log_errors(false);
  o.set_case_sensitive(case_sensitive);
  return o;
}

}  // namespace layerfreeze

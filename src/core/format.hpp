// Number formatting shared by the printers, the sources and the analyses: thousands separators,
// short forms (1.2B, 354.3M), bytes (GB = 10^9), percentages.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace layerfreeze {

std::string with_commas(int64_t n);                // 124,439,808
std::string short_count(int64_t n);                // 1.2B, 354.3M, 7.1K, 768
std::string bytes_text(int64_t bytes);             // 6.7 GB, 475.0 MB, 12.0 KB, 512 B
std::string percent(int64_t part, int64_t whole);  // 49.9%
std::string join(const std::vector<std::string>& items,
                 const std::string& separator = ", ");  // "a, b, c"

}  // namespace layerfreeze

// The fast reader of a safetensors index (simdjson) against the full one (nlohmann-json): on
// every text, the fast one either refuses or reads exactly what the full one reads.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "sources/weight_map.hpp"

namespace layerfreeze {
namespace {

// What a reader found, in a form both readers can be compared in (order aside).
std::map<std::string, std::string> by_name(const WeightMap& m) {
  std::map<std::string, std::string> out;
  for (const auto& [name, shard] : m.entries) out[name] = m.shards.at(shard);
  return out;
}

struct Case {
  const char* why;
  std::string text;
  bool fast_reads;  // whether the fast reader is expected to accept it
};

TEST(WeightMap, FastReaderAgreesWithTheFullReader) {
  const std::vector<Case> cases = {
      {"plain", R"({"metadata": {"total_size": 12}, "weight_map": {"a.weight": "s1", "b": "s2"}})",
       true},
      {"no metadata", R"({"weight_map": {"a": "s1"}})", true},
      {"repeated name: the last file wins", R"({"weight_map": {"a": "s1", "b": "s1", "a": "s2"}})",
       true},
      {"repeated weight_map: the last wins",
       R"({"weight_map": {"a": "s1"}, "weight_map": {"b": "s2"}})", true},
      {"escapes in names", R"({"weight_map": {"a\u00e9\n\"q\"": "s\/1", "\ud83d\ude00": "s"}})",
       true},
      {"negative size", R"({"metadata": {"total_size": -1}, "weight_map": {"a": "s"}})", true},
      {"fractional size", R"({"metadata": {"total_size": 1.5}, "weight_map": {"a": "s"}})", true},
      {"largest size", R"({"metadata": {"total_size": 18446744073709551615}, "weight_map": {}})",
       true},
      {"size repeated", R"({"metadata": {"total_size": 3, "total_size": "x"}, "weight_map": {}})",
       true},
      {"metadata repeated", R"({"metadata": {"total_size": 3}, "metadata": 7, "weight_map": {}})",
       true},
      {"size too large for any integer",
       R"({"metadata": {"total_size": 18446744073709551616}, "weight_map": {"a": "s"}})", false},
      {"lone surrogate", R"({"weight_map": {"\ud800": "s"}})", false},
      {"invalid UTF-8", std::string("{\"weight_map\": {\"\xff\": \"s\"}}"), false},
      {"raw control character", std::string("{\"weight_map\": {\"a\x01\": \"s\"}}"), false},
      {"not a file name", R"({"weight_map": {"a": 3}})", false},
      {"no weight map", R"({"metadata": {}})", false},
      {"weight map not an object", R"({"weight_map": []})", false},
      {"not an object", R"([1, 2])", false},
      {"trailing text", R"({"weight_map": {}} x)", false},
      {"merge conflict marker", "{\"weight_map\": {}}\n<<<<<<< HEAD\n", false},
      {"bad literal elsewhere", R"({"weight_map": {"a": "s"}, "x": tru})", false},
      {"truncated", R"({"weight_map": {"a": "s")", false},
      {"empty", "", false},
  };
  for (const auto& c : cases) {
    auto fast = read_weight_map(c.text);
    Diagnostics d;
    auto full = read_weight_map_checked(c.text, "index.json", d);
    EXPECT_EQ(fast.has_value(), c.fast_reads) << c.why;
    if (!fast) continue;
    ASSERT_TRUE(full.has_value()) << c.why << ": the fast reader accepted what the full refuses";
    EXPECT_EQ(by_name(*fast), by_name(*full)) << c.why;
    EXPECT_EQ(fast->total_size, full->total_size) << c.why;
  }
}

// Random byte edits of a valid index: whatever the fast reader accepts, the full one reads the
// same way.
TEST(WeightMap, FastReaderNeverAcceptsMoreOnMutatedText) {
  const std::string base =
      R"({"metadata": {"total_size": 4096}, "weight_map": {"model.layers.0.w": "a-00001.safetensors",)"
      R"( "model.layers.1.w": "a-00002.safetensors", "lm_head.weight": "a-00001.safetensors"}})";
  const std::string alphabet = "{}[]\",:\\u0123456789.eE+-tfnx \n\x80\xc3\xff";
  std::mt19937 rng(11);
  int accepted = 0;
  for (int n = 0; n < 4000; ++n) {
    std::string text = base;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % text.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0: text[at] = c; break;
        case 1: text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c); break;
        default: text.erase(at, 1);
      }
    }
    auto fast = read_weight_map(text);
    if (!fast) continue;
    ++accepted;
    Diagnostics d;
    auto full = read_weight_map_checked(text, "index.json", d);
    ASSERT_TRUE(full.has_value()) << "fast reader accepted what the full refuses: " << text;
    ASSERT_EQ(by_name(*fast), by_name(*full)) << text;
    ASSERT_EQ(fast->total_size, full->total_size) << text;
  }
  EXPECT_GT(accepted, 100);  // the edits leave many texts valid: the comparison ran
}

}  // namespace
}  // namespace layerfreeze

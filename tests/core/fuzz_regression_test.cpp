// Every input a fuzzer ever crashed on (tests/data/fuzz-regressions/), replayed through the
// same path as its fuzz target: it must now give a plan or diagnostics, and format them.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/layer_discovery.hpp"
#include "sources/checkpoint.hpp"
#include "sources/json_file.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(FuzzRegressions, EveryCrashingInputIsHandled) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(LAYERFREEZE_TEST_DATA) +
                                                               "/fuzz-regressions")) {
    std::string name = entry.path().filename().string();
    std::string text = read(entry.path());
    ++n;
    if (name.rfind("rules-", 0) == 0) {
      Diagnostics d;
      SourceTexts src;
      EXPECT_NO_THROW({
        auto s = Strategy::from_yaml(text, "fuzz.yaml", d, "", &src);
        if (s) {
          PlanOptions o;
          o.steps_per_epoch = 10;
          auto plan = compile(*s, test::builtin("gpt2"), o, d);
          if (plan) (void)plan->change_points(Time{4, 40});
        }
        (void)format_diagnostics(d, &src);
      }) << name;
    } else if (name.rfind("manifest-", 0) == 0) {
      Diagnostics d;
      EXPECT_NO_THROW({
        auto inv = parse_manifest(text, "fuzz.json", d);
        if (inv) discover_layers(*inv, DiscoveryPatterns::shipped(), d);
      }) << name;
    } else if (name.rfind("config-", 0) == 0) {
      Diagnostics d;
      EXPECT_NO_THROW({
        auto j = parse_json_text(text, "config.json", "config", d);
        std::optional<Inventory> inv;
        if (j)
          if (auto c = model_config_from_json(*j, "config.json", d))
            if (auto facts = apply_config(std::nullopt, *c, d)) inv = Inventory(std::move(*facts));
        if (inv) discover_layers(*inv, DiscoveryPatterns::shipped(), d);
        (void)format_diagnostics(d);
      }) << name;
    } else if (name.rfind("safetensors-", 0) == 0) {
      Diagnostics d;
      EXPECT_NO_THROW({
        auto inv = load_safetensors(entry.path().string(), d);
        if (inv) discover_layers(*inv, DiscoveryPatterns::shipped(), d);
      }) << name;
    }
  }
  EXPECT_GE(n, 1u);
}

}  // namespace
}  // namespace layerfreeze

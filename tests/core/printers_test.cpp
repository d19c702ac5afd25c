// Printers: the seed's layer status table to the letter, number formats, and the JSON contract
// of docs/CLI.md read back with a real JSON parser.
#include <nlohmann/json.hpp>

#include "core/format.hpp"
#include "core/json_text.hpp"
#include "print/json_writer.hpp"
#include "print/plan_printer.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

TEST(Format, Numbers) {
  EXPECT_EQ(with_commas(124439808), "124,439,808");
  EXPECT_EQ(with_commas(0), "0");
  EXPECT_EQ(with_commas(-1234), "-1,234");
  EXPECT_EQ(short_count(1200000000), "1.2B");
  EXPECT_EQ(short_count(354300000), "354.3M");
  EXPECT_EQ(short_count(768), "768");
  EXPECT_EQ(bytes_text(6738415616LL * 2), "13.5 GB");
  EXPECT_EQ(bytes_text(475000000), "475.0 MB");
  EXPECT_EQ(percent(1, 3), "33.3%");
}

TEST(LayerStatus, SeedFormat) {
  auto c = test::compile_preset("lp_lora", "builtin:llama2-7b");
  ASSERT_TRUE(c.plan);
  EXPECT_EQ(layer_status_table(*c.plan->inventory, c.plan->frozen_at({0, 0}), false),
            "========================================\n"
            "LAYER STATUS\n"
            "========================================\n"
            "Layer 0-15:  FROZEN  (3.2B params)\n"
            "Layer 16-31: ACTIVE  (3.2B params)\n"
            "----------------------------------------\n"
            "Embeddings:  FROZEN  (131.1M params)\n"
            "Head:        ACTIVE  (131.1M params)\n"
            "========================================\n");
  std::string all = layer_status_table(*c.plan->inventory, c.plan->frozen_at({0, 0}), true);
  EXPECT_NE(all.find("Layer 3:    FROZEN  (202.4M params)\n"), std::string::npos) << all;
}

TEST(LayerStatus, PartialLayersAndTensorCountsWithoutShapes) {
  Inventory inv =
      test::names_inventory({"embed.weight", "model.layers.0.a.weight", "model.layers.0.b.weight",
                             "model.layers.1.a.weight", "lm_head.weight"});
  inv = test::with_facts(inv, [](FactsBuilder& b) {
    for (auto& p : b.annotations()) {
      p.shape_known = false;
      p.numel = 0;
    }
  });
  auto c = test::compile_text("rules:\n  - freeze: {regex: '.*\\.a\\.weight'}\n", inv);
  ASSERT_TRUE(c.plan);
  EXPECT_EQ(layer_status_table(*c.plan->inventory, c.plan->frozen_at({0, 0}), false),
            "========================================\n"
            "LAYER STATUS\n"
            "========================================\n"
            "Layer 0:    PARTIAL (2 tensors)\n"
            "Layer 1:    FROZEN  (1 tensor)\n"
            "----------------------------------------\n"
            "Embeddings: ACTIVE  (1 tensor)\n"
            "Head:       ACTIVE  (1 tensor)\n"
            "========================================\n");
}

TEST(PlanJson, Contract) {
  auto c = test::compile_preset("gradual_unfreeze", "builtin:gpt2", {"total_epochs=10"});
  ASSERT_TRUE(c.plan);
  auto j = nlohmann::json::parse(plan_json(summarize(*c.plan, OptimizerKind::AdamW, {10, -1})));
  EXPECT_EQ(j["format"], "layerfreeze.plan/1");
  EXPECT_EQ(j["model"]["num_layers"], 12);
  EXPECT_EQ(j["model"]["numel"], 124439808);
  EXPECT_EQ(j["model"]["parameters"], 148);
  ASSERT_EQ(j["params"].size(), 148u);
  EXPECT_EQ(j["params"][0]["name"], "transformer.wte.weight");
  EXPECT_EQ(j["params"][0]["aliases"][0], "lm_head.weight");
  EXPECT_EQ(j["params"][0]["role"], "embeddings");
  EXPECT_TRUE(j["params"][0]["layer"].is_null());
  EXPECT_EQ(j["params"][2]["layer"], 0);
  ASSERT_EQ(j["stages"].size(), 10u);
  EXPECT_EQ(j["stages"][0]["at"]["epoch"], 0);
  EXPECT_EQ(j["stages"][0]["at"]["step"], 0);
  EXPECT_EQ(j["stages"][4]["at"]["epoch"], 4);
  int64_t frozen = j["stages"][4]["frozen_numel"], trainable = j["stages"][4]["trainable_numel"];
  EXPECT_EQ(frozen + trainable, 124439808);
  // Frozen names are canonical and their numel adds up.
  int64_t sum = 0;
  for (const auto& n : j["stages"][4]["frozen"])
    sum += c.plan->inventory->params()[*c.plan->inventory->find(n.get<std::string>())].numel;
  EXPECT_EQ(sum, frozen);
  EXPECT_EQ(j["warnings"].size(), 2u);
  EXPECT_EQ(j["fingerprint"], c.plan->fingerprint());
}

TEST(JsonWriter, EscapesAndInvalidUtf8) {
  EXPECT_EQ(json_quote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
  EXPECT_EQ(json_quote("caf\xC3\xA9"), "\"caf\xC3\xA9\"");
  EXPECT_EQ(json_quote("bad\xFF"), "\"bad\xEF\xBF\xBD\"");
  JsonWriter w;
  w.begin_object()
      .field("x", 0.5)
      .field("n", int64_t{3})
      .key("e")
      .begin_array()
      .end_array()
      .end_object();
  EXPECT_EQ(w.take(), "{\n  \"x\": 0.5,\n  \"n\": 3,\n  \"e\": []\n}\n");
}

// Every JSON layerfreeze writes is valid UTF-8, whichever of its two writers wrote it: the
// streaming JsonWriter and json_text (nlohmann-json) quote a string alike, valid or not.
TEST(JsonWriter, BothWritersQuoteAlike) {
  struct Case {
    std::string text;
    bool well_formed;  // UTF-8 by RFC 3629
  };
  const std::vector<Case> table = {
      {"plain", true},
      {"tab\tnl\ncr\rbs\bff\f", true},
      {std::string("nul\0x", 5), true},
      {"\x7f del", true},
      {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", true},  // 2, 3 and 4 bytes
      {"lone \xFF", false},
      {"cut \xE2\x82", false},
      {"cut \xE2\x82x \xF0\x9F\x98", false},
      {"overlong \xC0\x80", false},
      {"overlong \xE0\x80\xAF", false},
      {"surrogate \xED\xA0\x80", false},
      {"beyond \xF4\x90\x80\x80", false},
      {"continuations \x80\x80", false},
      {"\xF5\xC1", false},
  };
  for (const auto& c : table) {
    const std::string ours = json_quote(c.text);
    EXPECT_EQ(ours, json_text(nlohmann::json(c.text))) << ours;
    bool ok = true;
    for (size_t i = 0; ok && i < c.text.size(); i += utf8_scan(c.text, i).bytes)
      ok = utf8_scan(c.text, i).well_formed;
    EXPECT_EQ(ok, c.well_formed) << ours;
    // Strict parsing: valid JSON, valid UTF-8; a well-formed string comes back as it was.
    auto back = nlohmann::json::parse(ours);
    if (c.well_formed) {
      EXPECT_EQ(back.get<std::string>(), c.text);
    }
  }
}

}  // namespace
}  // namespace layerfreeze

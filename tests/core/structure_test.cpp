// Facts and structure apart (include/layerfreeze/model_facts.hpp, inventory.hpp): reading a model
// gives facts that never change; discovery produces a Structure from them — placements, parts
// and a data-flow order as a permutation — and the compiler joins the two. These tests hold the
// contract: discovery leaves the facts as read, the model's fingerprint does not depend on the
// patterns that shaped its structure, a structure found before never leaks into the next one,
// and a structure that does not describe the facts is refused.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/layer_discovery.hpp"
#include "layerfreeze/model_source.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace structure_test {

// A vision-language model's names (Qwen2-VL's layout) in natural name order, as a safetensors
// header lists them: the language model sorts before `visual`, so data flow is a reorder.
Inventory header_vlm() {
  std::vector<std::string> names = {"lm_head.weight", "model.embed_tokens.weight",
                                    "model.norm.weight", "visual.patch_embed.proj.weight",
                                    "visual.merger.mlp.0.weight"};
  for (int l = 0; l < 3; ++l)
    names.push_back("model.layers." + std::to_string(l) + ".mlp.up_proj.weight");
  for (int l = 0; l < 2; ++l)
    names.push_back("visual.blocks." + std::to_string(l) + ".mlp.fc1.weight");
  return test::with_facts(test::names_inventory(names, "vlm-header"),
                          [](FactsBuilder& b) { b.sort_natural(); });
}

std::vector<std::string> names_of(const std::vector<Tensor>& tensors) {
  std::vector<std::string> out;
  for (const auto& t : tensors) out.push_back(t.name);
  return out;
}

std::vector<std::string> names_of(const std::vector<Param>& params) {
  std::vector<std::string> out;
  for (const auto& p : params) out.push_back(p.name);
  return out;
}

// What a structure says, as text: comparable across runs.
std::string summary(const Inventory& inv) {
  std::string s;
  for (const auto& p : inv.params())
    s += p.name + " " + role_name(p.role) + " " + std::to_string(p.layer) + " " +
         std::to_string(p.part) + " " + std::to_string(p.anchor_layer) + "\n";
  for (const auto& st : inv.stacks) s += "stack " + st.key + " " + std::to_string(st.tower) + "\n";
  for (const auto& t : inv.towers) s += "tower " + t.root + "\n";
  for (const auto& c : inv.connectors) s += "connector " + c.root + "\n";
  for (const auto& n : inv.notes) s += "note " + n + "\n";
  return s;
}

TEST(Structure, DiscoveryLeavesTheFactsAsRead) {
  Inventory inv = header_vlm();
  const auto facts = inv.shared_facts();
  const std::vector<std::string> read = names_of(facts->tensors());
  const std::string fingerprint = inv.fingerprint();
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  ASSERT_EQ(inv.towers.size(), 1u) << format_diagnostics(d);
  // The same facts, shared, in the order they were read; the data-flow order is a permutation.
  EXPECT_EQ(inv.shared_facts(), facts);
  EXPECT_EQ(names_of(inv.facts().tensors()), read);
  EXPECT_EQ(inv.fingerprint(), fingerprint);
  EXPECT_EQ(inv.params().front().name, "visual.patch_embed.proj.weight");
  EXPECT_EQ(read.front(), "lm_head.weight");
  ASSERT_EQ(inv.order().size(), read.size());
  for (size_t k = 0; k < inv.order().size(); ++k)
    EXPECT_EQ(inv.params()[k].name, read[inv.order()[k]]) << k;
  // find() answers positions in data-flow order.
  EXPECT_EQ(*inv.find("visual.patch_embed.proj.weight"), 0u);
}

TEST(Structure, TheFingerprintDoesNotDependOnTheStrategysPatterns) {
  // A strategy whose own patterns know only the language model's layers (`replace: true`) finds
  // another structure — no tower, the order read; the model is the same model, so its
  // fingerprint is too.
  Inventory inv = header_vlm();
  auto plain = test::compile_text("layerfreeze: 1\nrules: [{freeze: all}]\n", inv);
  auto other = test::compile_text(
      "layerfreeze: 1\ndiscovery:\n  layers: ['model\\.layers\\.#']\n  replace: true\n"
      "rules: [{freeze: all}]\n",
      inv);
  ASSERT_TRUE(plain.plan && other.plan) << plain.errors() << other.errors();
  EXPECT_NE(summary(*plain.plan->inventory), summary(*other.plan->inventory));
  EXPECT_EQ(plain.plan->inventory->fingerprint(), other.plan->inventory->fingerprint());
  EXPECT_EQ(plain.plan->inventory->fingerprint(), inv.fingerprint());
}

TEST(Structure, AStructureFoundBeforeNeverLeaksIntoTheNext) {
  Inventory fresh = header_vlm();
  Diagnostics d;
  discover_layers(fresh, DiscoveryPatterns::shipped(), d);
  // Discovered first with patterns that know no towers, then again with the shipped ones: the
  // same answer as discovering once, from the facts.
  Inventory twice = header_vlm();
  DiscoveryPatterns no_towers;
  Pattern layers;
  layers.text = "model\\.layers\\.#";
  no_towers.layers.push_back(layers);
  Diagnostics d1;
  discover_layers(twice, DiscoveryPatterns::shipped().merged(no_towers, true), d1);
  EXPECT_NE(summary(twice), summary(fresh));
  discover_layers(twice, DiscoveryPatterns::shipped(), d1);
  EXPECT_EQ(summary(twice), summary(fresh));
  EXPECT_EQ(twice.order(), fresh.order());
}

TEST(Structure, ACompiledPlanIgnoresTheStructureItWasGiven) {
  // The compiler discovers from the facts: an inventory whose structure was edited (or found
  // with other patterns) compiles to the same plan as its bare facts.
  Inventory bare = header_vlm();
  Inventory edited = bare;
  Diagnostics d;
  discover_layers(edited, DiscoveryPatterns::shipped(), d);
  edited.towers.clear();
  edited.trunk_layers = 0;
  const char* rules = "layerfreeze: 1\nextends: preset:freeze_except_last_n\nwith: {n: 1}\n";
  auto a = test::compile_text(rules, bare), b = test::compile_text(rules, edited);
  ASSERT_TRUE(a.plan && b.plan) << a.errors() << b.errors();
  EXPECT_EQ(a.plan->fingerprint(), b.plan->fingerprint());
  EXPECT_EQ(test::frozen_names(*a.plan), test::frozen_names(*b.plan));
}

TEST(Structure, DiscoverStructureIsPureAndJoinsBack) {
  Inventory header = header_vlm();
  Diagnostics d;
  Structure s1 = discover_structure(header.shared_facts(), DiscoveryPatterns::shipped(), d);
  Structure s2 = discover_structure(header.shared_facts(), DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(s1.order, s2.order);
  ASSERT_EQ(s1.placements.size(), header.params().size());
  Inventory joined(header.shared_facts(), std::move(s1));
  Inventory discovered = header;
  discover_layers(discovered, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(summary(joined), summary(discovered));
  // And back: an inventory's structure joins its facts to the same inventory.
  Inventory again(discovered.shared_facts(), discovered.structure());
  EXPECT_EQ(summary(again), summary(discovered));
  EXPECT_EQ(names_of(again.params()), names_of(discovered.params()));
}

TEST(Structure, AStructureThatDoesNotDescribeTheFactsIsRefused) {
  Inventory inv = header_vlm();
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  const Structure good = inv.structure();
  // Another model's structure (fewer tensors).
  Inventory small = test::names_inventory({"a.weight", "b.weight"});
  EXPECT_THROW(Inventory(small.shared_facts(), good), DiagnosticError);
  // An order that names one tensor twice.
  Structure twice = good;
  twice.order[1] = twice.order[0];
  EXPECT_THROW(Inventory(inv.shared_facts(), twice), DiagnosticError);
  // A layer member past the end.
  Structure far = good;
  ASSERT_FALSE(far.layers.empty());
  far.layers[0].params.push_back(static_cast<uint32_t>(good.order.size()));
  EXPECT_THROW(Inventory(inv.shared_facts(), far), DiagnosticError);
  // A stack spanning layers that do not exist.
  Structure wide = good;
  ASSERT_FALSE(wide.stacks.empty());
  wide.stacks[0].num_layers = 1000;
  EXPECT_THROW(Inventory(inv.shared_facts(), wide), DiagnosticError);
  EXPECT_NO_THROW(Inventory(inv.shared_facts(), good));
}

TEST(Structure, ARegistrationOrderSourceKeepsItsOrder) {
  // A live module or a registration-order source: data flow is the order read, the identity.
  Inventory inv = test::builtin("gpt2");
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  for (size_t k = 0; k < inv.order().size(); ++k) ASSERT_EQ(inv.order()[k], k);
  EXPECT_EQ(names_of(inv.params()), names_of(inv.facts().tensors()));
}

}  // namespace structure_test
}  // namespace layerfreeze

// The rules DSL: what parses to what (compact rule texts), and a table of invalid files, each
// pinned to its exact diagnostics with file:line:col.
#include "test_util.hpp"

namespace layerfreeze {
namespace {

std::string dump(const StrategyDef& s) {
  std::string out;
  for (const auto& r : s.rules) out += r.text + "\n";
  for (const auto& st : s.stages) {
    out += st.kind == Stage::Kind::kAt      ? "at "
           : st.kind == Stage::Kind::kEvery ? "every "
                                            : "progressive ";
    out += std::string(unit_name(st.at.unit)) + " " + st.at.value.text();
    if (st.kind == Stage::Kind::kProgressive)
      out += " " + std::string(action_name(st.action)) + " " + st.selector.text;
    out += "\n";
    for (const auto& r : st.rules) out += "  " + r.text + "\n";
  }
  return out;
}

struct GoodCase {
  const char* yaml;
  const char* dump;
};

TEST(RulesParser, ParsesEveryConstruct) {
  const std::vector<GoodCase> cases = {
      {"rules:\n  - freeze: all\n", "freeze all\n"},
      {"rules:\n  - freeze: embeddings\n  - unfreeze: head\n",
       "freeze embeddings\nunfreeze head\n"},
      {"rules:\n  - freeze: {layers: \"0:16\"}\n", "freeze layers[0:16]\n"},
      {"rules:\n  - freeze: {layers: [0, 2, \"-4:\"]}\n", "freeze layers[[0, 2, -4:]]\n"},
      {"rules:\n  - freeze: {layers: {first: 3}}\n", "freeze layers(first=3)\n"},
      {"rules:\n  - freeze: {layers: {last_ratio: 0.25}}\n", "freeze layers(last_ratio=0.25)\n"},
      {"rules:\n  - freeze: {layers: {first: 2}, stack: decoder}\n",
       "freeze layers(first=2)@decoder\n"},
      {"rules:\n  - freeze: {regex: '.*attn.*', case_sensitive: false}\n",
       "freeze regex(.*attn.*)\n"},
      {"rules:\n  - freeze: {module_type: [LayerNorm, '.*RMSNorm']}\n",
       "freeze module_type([LayerNorm, .*RMSNorm])\n"},
      {"rules:\n  - unfreeze: {leaf: bias}\n", "unfreeze leaf(bias)\n"},
      {"rules:\n  - freeze: [embeddings, {layers: 0}]\n", "freeze any_of(embeddings, layers[0])\n"},
      {"rules:\n  - freeze: {all_of: [layers, {regex: '.*mlp.*'}]}\n",
       "freeze all_of(layers, regex(.*mlp.*))\n"},
      {"rules:\n  - freeze: {role: all, except: head}\n", ""},
      {"rules:\n  - freeze: {layers: all, except: {leaf: bias}}\n",
       "freeze layers[all] except leaf(bias)\n"},
      {"rules:\n  - freeze: {stack: encoder}\n", "freeze stack(encoder)\n"},
      {"stages:\n  - at: {epoch: 2}\n    rules: [{unfreeze: all}]\n",
       "at epoch 2\n  unfreeze all\n"},
      {"stages:\n  - every: {steps: 20}\n    start: {step: 100}\n    rules:\n      - unfreeze: "
       "{random_layers: {count: 2, seed: 7}}\n",
       "every step 100\n  unfreeze random_layers({count: 2, seed: 7})\n"},
      {"stages:\n  - progressive: {over: {epochs: 9}}\n", "progressive epoch 0 unfreeze layers\n"},
      {"stages:\n  - progressive: {freeze: all, order: bottom_up, every: {steps: 5}, start: {step: "
       "10}}\n",
       "progressive step 10 freeze all\n"},
      {"params:\n  n: {type: int, default: 3}\nrules:\n  - freeze: {layers: {first: \"${n}\"}}\n",
       "freeze layers(first=${n})\n"},
  };
  for (const auto& c : cases) {
    auto p = test::parse(c.yaml);
    if (std::string(c.dump).empty()) {
      EXPECT_FALSE(p->strategy) << c.yaml;  // `role: all` is not a role
      continue;
    }
    ASSERT_TRUE(p->strategy) << c.yaml << "\n" << p->errors();
    EXPECT_EQ(dump(*p->strategy), c.dump) << c.yaml;
  }
}

TEST(RulesParser, ParamsOptionsAndDiscovery) {
  auto p = test::parse(
      "layerfreeze: 1\nname: mine\ndescription: d\n"
      "params:\n  ratio: {type: float, default: 0.5, min: 0, max: 1, doc: share}\n  names: "
      "['.*a.*']\n  at: {type: int, default: null}\n"
      "options:\n  batchnorm: eval_when_frozen\n  optimizer_state: keep\n  unfreeze_lr_scale: "
      "0.1\n  steps_per_epoch: 100\n"
      "discovery:\n  layers: ['trunk\\.cells\\.#']\n  head: ['out\\..*']\n  replace: true\n"
      "rules:\n  - freeze: {regex: \"${names}\"}\n");
  ASSERT_TRUE(p->strategy) << p->errors();
  const StrategyDef& s = *p->strategy;
  EXPECT_EQ(s.name, "mine");
  ASSERT_EQ(s.params.size(), 3u);
  EXPECT_EQ(s.params[0].type, ParamDecl::Type::kFloat);
  EXPECT_EQ(*s.params[0].max, 1.0);
  EXPECT_EQ(s.params[1].type, ParamDecl::Type::kStrings);
  EXPECT_TRUE(s.params[2].nullable);
  EXPECT_EQ(s.options.batchnorm, Options::BatchNorm::kEvalWhenFrozen);
  EXPECT_EQ(s.options.optimizer_state, Options::OptimizerState::kKeep);
  EXPECT_TRUE(s.discovery_replace);
  ASSERT_EQ(s.discovery.layers.size(), 1u);
  EXPECT_EQ(s.discovery.layers[0].loc.line, 14);
}

TEST(RulesParser, EveryPresetParses) {
  for (const auto& n : preset_names()) {
    Diagnostics d;
    SourceTexts src;
    RulesLoader loader(d, src);
    auto s = loader.load("preset:" + n);
    EXPECT_TRUE(s) << n << "\n" << format_diagnostics(d);
    if (s) {
      EXPECT_EQ(s->name, n);
    }
  }
  EXPECT_GE(preset_names().size(), 12u);
}

struct BadCase {
  const char* yaml;
  const char* errors;  // exact, one diagnostic per line
};

std::string messages(const Diagnostics& d) {
  std::string out;
  for (const auto& x : d.items()) {
    if (x.severity != Severity::kError) continue;
    out += x.loc.file + ":" + std::to_string(x.loc.line) + ":" + std::to_string(x.loc.column) +
           ": " + x.message + " [" + x.code + "]\n";
  }
  return out;
}

// At least 30 invalid rules files, each with its exact diagnostics.
TEST(RulesParser, InvalidFiles) {
  const std::vector<BadCase> cases = {
      {"rules:\n  - unfreze: all\n",
       "t.yaml:2:5: unknown key 'unfreze' in a rule — did you mean 'unfreeze'? [unknown-key]\n"},
      {"rules:\n  - when: true\n",
       "t.yaml:2:5: a rule needs 'freeze' or 'unfreeze' [missing-key]\n"},
      {"stages:\n  - at: {epoch: 1}\n    lr: 0.1\n    lr_scale: 0.5\n    rules: [{unfreeze: "
       "all}]\n",
       "t.yaml:2:5: a stage sets 'lr' or 'lr_scale', not both [stage-conflict]\n"},
      {"stages:\n  - at: {epoch: 1}\n    lr: -0.1\n    rules: [{unfreeze: all}]\n",
       "t.yaml:3:9: 'lr' must be positive [out-of-range]\n"},
      {"stages:\n  - at: {epoch: 1}\n    lr_scale: fast\n    rules: [{unfreeze: all}]\n",
       "t.yaml:3:15: 'lr_scale' must be float, not the string 'fast' [wrong-type]\n"},
      {"rule:\n  - freeze: all\n",
       "t.yaml:1:1: unknown key 'rule' in the rules file — did you mean 'rules'? [unknown-key]\n"},
      {"rules:\n  - freeze: embedings\n",
       "t.yaml:2:13: unknown selector 'embedings' — did you mean 'embeddings'? "
       "[unknown-selector]\n"},
      {"rules:\n  - freeze: all\n    unfreeze: head\n",
       "t.yaml:3:5: a rule either freezes or unfreezes, not both [rule-conflict]\n"},
      {"rules:\n  - freeze: {regex: '(unclosed'}\n",
       "t.yaml:2:21: invalid regex '(unclosed': missing ): (unclosed [bad-regex]\n"},
      {"rules:\n  - freeze: {layers: \"0:x\"}\n",
       "t.yaml:2:22: bad layer slice '0:x': expected an index (3, -1) or a slice (\"0:16\", "
       "\"-4:\", \"::2\") [bad-slice]\n"},
      {"rules:\n  - freeze: {layers: \"::0\"}\n",
       "t.yaml:2:22: layer slice '::0' needs a positive step [bad-slice]\n"},
      {"rules:\n  - freeze: {layers: {first: -1}}\n",
       "t.yaml:2:30: 'first' must not be negative (got -1) [out-of-range]\n"},
      {"rules:\n  - freeze: {layers: {first_ratio: 1.5}}\n",
       "t.yaml:2:36: 'first_ratio' must be in [0, 1] (got 1.5) [out-of-range]\n"},
      {"rules:\n  - freeze: {layers: {first: two}}\n",
       "t.yaml:2:30: 'first' must be int, not the string 'two' [wrong-type]\n"},
      {"rules:\n  - freeze: {layers: {first: 2, last: 2}}\n",
       "t.yaml:2:33: 'layers' takes one of first, last, first_ratio, last_ratio "
       "[selector-conflict]\n"},
      {"rules:\n  - freeze: {regex: '.*', leaf: bias}\n",
       "t.yaml:2:27: a selector has one kind; 'regex' and 'leaf' are both given (use all_of or "
       "any_of to combine) [selector-conflict]\n"},
      {"rules:\n  - freeze: {leaf: bias, case_sensitive: false}\n",
       "t.yaml:2:42: 'case_sensitive' applies to 'regex' only [misplaced-key]\n"},
      {"rules:\n  - freeze: {except: head}\n",
       "t.yaml:2:13: the selector of 'freeze' says nothing to select [selector-empty]\n"},
      {"rules:\n  - freeze: {any_of: []}\n",
       "t.yaml:2:22: 'any_of' takes a non-empty list of selectors [wrong-type]\n"},
      {"rules:\n  - freeze: {random_layers: {seed: 1}}\n",
       "t.yaml:2:29: 'random_layers' needs 'count' [missing-key]\n"},
      {"rules: all\n",
       "t.yaml:1:8: 'rules' must be a list of rules, not the string 'all' [wrong-type]\n"},
      {"rules:\n  - freeze: {layers: {first: \"${m}\"}}\n",
       "t.yaml:2:30: in '${m}': unknown parameter 'm' [bad-expression]\n"},
      {"params:\n  n: 3\nrules:\n  - freeze: {layers: {first: \"${n + }\"}}\n",
       "t.yaml:4:30: in '${n + }': expression ends too early [bad-expression]\n"},
      {"params:\n  n: {type: integer}\n", "t.yaml:2:13: bad type 'integer' [bad-value]\n"},
      {"params:\n  n: {type: int, default: x}\n",
       "t.yaml:2:27: default of 'n': expected an int, got 'x' [param-type]\n"},
      {"params:\n  n: {default: 3}\n",
       "t.yaml:2:6: parameter 'n' needs a 'type' (int, float, bool, string, strings) "
       "[missing-key]\n"},
      {"params:\n  2n: 3\n", "t.yaml:2:3: parameter name '2n' is not an identifier [bad-name]\n"},
      {"stages:\n  - rules: [{freeze: all}]\n",
       "t.yaml:2:5: a stage needs one of 'at', 'every' or 'progressive' [missing-key]\n"},
      {"stages:\n  - at: {epoch: 1}\n", "t.yaml:2:5: a stage needs 'rules' [missing-key]\n"},
      {"stages:\n  - at: {epoch: 1, step: 3}\n    rules: [{freeze: all}]\n",
       "t.yaml:2:9: 'at' takes exactly one of 'epoch' or 'step' [bad-trigger]\n"},
      {"stages:\n  - at: {epoch: -1}\n    rules: [{freeze: all}]\n",
       "t.yaml:2:17: 'at' must not be negative [out-of-range]\n"},
      {"stages:\n  - at: {epoch: 5}\n    rules: [{freeze: all}]\n  - at: {epoch: 3}\n    rules: "
       "[{unfreeze: all}]\n",
       "t.yaml:4:17: stage at epoch 3 comes after a stage at epoch 5; list stages in time order "
       "[stage-order]\n"},
      {"stages:\n  - every: {steps: 0}\n    rules: [{freeze: all}]\n",
       "t.yaml:2:20: 'every' must be at least 1 [out-of-range]\n"},
      {"stages:\n  - every: {steps: 5}\n    start: {epoch: 1}\n    rules: [{freeze: all}]\n",
       "t.yaml:3:12: 'start' and 'every' must count the same unit [unit-mismatch]\n"},
      {"stages:\n  - progressive: {unfreeze: layers}\n",
       "t.yaml:2:18: a progressive stage takes exactly one of 'every' (one more group each period) "
       "or 'over' (all groups spread over a span) [bad-progressive]\n"},
      {"stages:\n  - progressive: {every: {epochs: 1}, order: topdown}\n",
       "t.yaml:2:46: bad order 'topdown' — did you mean 'top_down'? [bad-value]\n"},
      {"stages:\n  - progressive: {every: {epochs: 1}}\n    rules: [{freeze: all}]\n",
       "t.yaml:3:12: a progressive stage opens its own groups; it takes no 'rules' "
       "[misplaced-key]\n"},
      {"options:\n  batchnorm: frozen\n",
       "t.yaml:2:14: bad batchnorm policy 'frozen' [bad-value]\n"},
      {"options:\n  lr_decay: 0\n", "t.yaml:2:13: 'lr_decay' must be positive [out-of-range]\n"},
      {"discovery:\n  layers: ['trunk\\.cells']\n",
       "t.yaml:2:12: a layers pattern matches a container key with '#' where the index is (e.g. "
       "'backbone\\.stages\\.#') [bad-value]\n"},
      {"layerfreeze: 2\n",
       "t.yaml:1:14: unsupported rules version 2; this layerfreeze reads version 1 "
       "[bad-version]\n"},
      {"rules:\n  - freeze: all\n  - freeze: all\nrules: []\n",
       "t.yaml:4:1: duplicate key 'rules' in the rules file [duplicate-key]\n"},
      {"rules:\n  - freeze: all\n   - bad indent\n",
       "t.yaml:3:4: end of sequence not found [yaml-syntax]\n"},
      {"- freeze: all\n",
       "t.yaml:1:1: a rules file is a map with 'rules' and/or 'stages', not a list [wrong-type]\n"},
      {"extends: preset:lp_lor\n",
       "<unknown>:0:0: no preset 'lp_lor' — did you mean 'lp_lora'? [unknown-preset]\n"
       "t.yaml:1:10: cannot extend 'preset:lp_lor' [extends-failed]\n"},
      {"extends: preset:lp_lora\nwith: {freeze_ratoi: 0.2}\n",
       "t.yaml:2:8: 'freeze_ratoi' is not a parameter of the extended strategy — did you mean "
       "'freeze_ratio'? [unknown-param]\n"},
      {"extends: preset:lp_lora\nwith: {freeze_ratio: 2}\n",
       "t.yaml:2:22: 'freeze_ratio': must be at most 1.0, got 2.0 [param-type]\n"},
      {"with: {n: 1}\n",
       "t.yaml:1:1: 'with' sets parameters of the strategy named by 'extends' [misplaced-key]\n"},
      // Hostile shapes: self-referencing aliases, nesting that would overflow yaml-cpp's stack,
      // times that would overflow arithmetic.
      {"rules:\n  - freeze: &a {any_of: [*a]}\n",
       "t.yaml:2:13: selectors nest more than 32 levels (or refer to themselves through a YAML "
       "alias) [too-deep]\n"},
      {"rules:\n  - freeze: "
       "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[all]]]]]]]]]]]]]]]]]]]]]]"
       "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
       "t.yaml:0:0: the file nests more than 64 levels deep [too-deep]\n"},
      {"stages:\n  - at: {step: 9223372036854775807}\n    rules: [{freeze: all}]\n",
       "t.yaml:2:16: 'at' is larger than 1099511627776 [out-of-range]\n"},
      {"params:\n  p: &x [*x]\n",
       "t.yaml:2:6: the default of 'p' nests lists too deeply (or refers to itself through an "
       "alias) [too-deep]\n"},
  };
  EXPECT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    auto p = test::parse(c.yaml);
    EXPECT_FALSE(p->strategy) << c.yaml;
    std::string got = messages(p->diags);
    // "<unknown>" marks diagnostics that carry no file (a missing preset).
    std::string want = c.errors;
    size_t pos;
    while ((pos = want.find("<unknown>:0:0: ")) != std::string::npos)
      want.replace(pos, 15, ":0:0: ");
    EXPECT_EQ(got, want) << c.yaml;
  }
}

TEST(RulesParser, ThreeMistakesThreeErrors) {
  auto p =
      test::parse("rules:\n  - freze: all\n  - freeze: {layers: \"1:z\"}\n  - unfreeze: heads\n");
  EXPECT_FALSE(p->strategy);
  std::string text = format_diagnostics(p->diags, &p->sources);
  EXPECT_EQ(
      text,
      "t.yaml:2:5: error: unknown key 'freze' in a rule — did you mean 'freeze'? [unknown-key]\n"
      "    - freze: all\n"
      "      ^\n"
      "  note: allowed here: freeze, unfreeze, when\n"
      "t.yaml:3:22: error: bad layer slice '1:z': expected an index (3, -1) or a slice (\"0:16\", "
      "\"-4:\", \"::2\") [bad-slice]\n"
      "    - freeze: {layers: \"1:z\"}\n"
      "                       ^\n"
      "t.yaml:4:15: error: unknown selector 'heads' — did you mean 'head'? [unknown-selector]\n"
      "    - unfreeze: heads\n"
      "                ^\n"
      "  note: a selector is all, embeddings, head, layers, other, tower, connector, mtp, experts, "
      "routers, shared_experts, a list (any of), or a map with one of: role, layers, stack, "
      "regex, module_type, leaf, any_of, all_of, random_layers, block_cycle, experts, tokens, "
      "rows\n");
}

TEST(RulesParser, SectionOfALargerYaml) {
  const char* yaml =
      "model: {lr: 0.1}\ntraining:\n  epochs: 3\n  freeze:\n    rules:\n      - freeze: "
      "embeddings\n";
  Diagnostics d;
  SourceTexts src;
  RulesLoader loader(d, src);
  auto s = loader.load_text(yaml, "exp.yaml", "training.freeze");
  ASSERT_TRUE(s) << format_diagnostics(d);
  ASSERT_EQ(s->rules.size(), 1u);
  EXPECT_EQ(s->rules[0].loc.line, 6);
  auto bad = loader.load_text(yaml, "exp.yaml", "training.freez");
  EXPECT_FALSE(bad);
  EXPECT_EQ(d.items().back().message,
            "no key 'freez' under 'training' in exp.yaml — did you mean 'freeze'?");
}

TEST(Expr, Evaluates) {
  struct Case {
    const char* text;
    const char* value;
  };
  Scope scope{{"n", Value::integer(12)},
              {"r", Value::real(0.5)},
              {"flag", Value::boolean(true)},
              {"none", Value::null()}};
  const std::vector<Case> cases = {
      {"${n - 1}", "11"},
      {"${n * r}", "6.0"},
      {"${n // 5}", "2"},
      {"${-7 // 2}", "-4"},
      {"${-7 % 2}", "1"},
      {"${n / 8}", "1.5"},
      {"${not flag}", "false"},
      {"${none != null}", "false"},
      {"${flag and n > 3}", "true"},
      {"${min(n, 4) + max(1, 2)}", "6"},
      {"${floor(r * 3)}", "1"},
      {"${ceil(n / 5)}", "3"},
      {"layer-${n}", "'layer-12'"},
      {"${(n + 2) * 2}", "28"},
  };
  for (const auto& c : cases) {
    Diagnostics d;
    Expr e = Expr::parse(c.text, {"x", 1, 1}, {"n", "r", "flag", "none"}, d);
    ASSERT_FALSE(d.has_errors()) << c.text << format_diagnostics(d);
    auto v = e.eval(scope, d);
    ASSERT_TRUE(v) << c.text << format_diagnostics(d);
    EXPECT_EQ(v->to_string(), c.value) << c.text;
  }
  Diagnostics d;
  auto v = Expr::parse("${n / 0}", {}, {"n"}, d).eval(scope, d);
  EXPECT_FALSE(v);
  EXPECT_EQ(d.items()[0].message, "in '${n / 0}': division by zero");
}

TEST(Diagnostics, DidYouMean) {
  EXPECT_EQ(closest_match("unfreze", {"freeze", "unfreeze", "when"}), "unfreeze");
  EXPECT_EQ(closest_match("xyz", {"freeze", "unfreeze"}), "");
  EXPECT_EQ(did_you_mean("lauers", {"layers", "head"}), " — did you mean 'layers'?");
}

}  // namespace
}  // namespace layerfreeze

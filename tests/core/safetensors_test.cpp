// Header-only model sources: safetensors files the test writes itself, hostile headers, sharded
// indexes with and without shards, JSON manifests, and the real checkpoint indexes in
// tests/data/real-checkpoints.
#include <filesystem>
#include <fstream>
#include <random>

#include "core/layer_discovery.hpp"
#include "print/inventory_printer.hpp"
#include "test_util.hpp"

namespace layerfreeze {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("lf-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& n) const { return (path_ / n).string(); }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

void write_raw(const std::string& path, const std::string& header, uint64_t claimed_len,
               size_t data_bytes) {
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((claimed_len >> (8 * i)) & 0xff));
  out << header << std::string(data_bytes, '\0');
}

std::string load_error(const std::string& path) {
  Diagnostics d;
  auto inv = load_model(path, d);
  EXPECT_FALSE(inv.has_value());
  return d.items().empty() ? "" : d.items()[0].message;
}

TEST(Safetensors, HeaderOnlyInNaturalOrder) {
  TempDir t;
  std::string err;
  ASSERT_TRUE(write_safetensors(t.file("m.safetensors"),
                                {{"model.layers.10.mlp.weight", "BF16", {4, 8}},
                                 {"model.layers.2.mlp.weight", "BF16", {4, 8}},
                                 {"model.embed_tokens.weight", "F32", {100, 8}},
                                 {"lm_head.weight", "F16", {100, 8}}},
                                &err))
      << err;
  Diagnostics d;
  auto inv = load_model(t.file("m.safetensors"), d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  ASSERT_EQ(inv->params().size(), 4u);
  EXPECT_EQ(inv->params()[0].name, "lm_head.weight");
  EXPECT_EQ(inv->params()[1].name, "model.embed_tokens.weight");
  EXPECT_EQ(inv->params()[2].name, "model.layers.2.mlp.weight");
  EXPECT_EQ(inv->params()[3].name, "model.layers.10.mlp.weight");
  EXPECT_EQ(inv->params()[3].dtype, "bfloat16");
  EXPECT_EQ(inv->params()[1].numel, 800);
  EXPECT_FALSE(inv->facts().registration_order);
  discover_layers(*inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv->num_layers(), 2);
  EXPECT_EQ(inv->layers[1].name, "model.layers.10");
  EXPECT_EQ(inv->params()[0].role, Role::kHead);  // names decide, not the sorted position
}

struct BadHeader {
  const char* what;
  std::string header;
  int64_t claimed;  // -1: the header's own length
  size_t data;
  const char* message;
};

TEST(Safetensors, HostileHeadersAreErrors) {
  const std::vector<BadHeader> cases = {
      {"length past the end", "{}", 1000, 0,
       "header claims 1000 bytes, but the file has 2 after the length (limit 104857600)"},
      {"terabyte header", "{}", int64_t{1} << 40, 0,
       "header claims 1099511627776 bytes, but the file has 2 after the length (limit 104857600)"},
      {"not json", "{nope", -1, 0, "the header is not a JSON object"},
      {"offsets out of file", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", -1, 4,
       "tensor 'w': data_offsets [0, 8] lie outside the 4 data bytes of the file"},
      {"size mismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", -1, 8,
       "tensor 'w': data_offsets span 8 bytes, but float32 [3] needs 12"},
      {"unknown dtype", R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", -1, 16,
       "tensor 'w': unknown dtype \"F128\""},
      {"negative shape", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", -1, 4,
       "tensor 'w': shape [-1] is not a list of sizes of a plausible tensor"},
      {"missing fields", R"({"w":{"dtype":"F32"}})", -1, 0,
       "tensor 'w': needs dtype, shape and data_offsets"},
      {"overlap",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       -1, 12, "two tensors overlap at data bytes 4"},
      {"reversed offsets", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", -1, 8,
       "tensor 'w': data_offsets [8, 0] lie outside the 8 data bytes of the file"},
  };
  TempDir t;
  for (const auto& c : cases) {
    std::string path = t.file("bad.safetensors");
    write_raw(path, c.header, c.claimed < 0 ? c.header.size() : static_cast<uint64_t>(c.claimed),
              c.data);
    EXPECT_EQ(load_error(path), c.message) << c.what;
  }
  write_raw(t.file("short.safetensors"), "", 0, 0);
  std::ofstream(t.file("tiny.safetensors")) << "abc";
  EXPECT_EQ(load_error(t.file("tiny.safetensors")),
            "file too short for a safetensors header (3 bytes)");
}

// natural_less skips the common prefix of two names; it must order exactly as comparing digit
// runs as numbers from the first character does (the reference below), on names built to share
// prefixes, digits at the boundary and leading zeros.
bool reference_natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      size_t ie = i, je = j;
      while (ie < a.size() && digit(a[ie])) ++ie;
      while (je < b.size() && digit(b[je])) ++je;
      size_t is = i, js = j;
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      int c = a.compare(is, ie - is, b, js, je - js);
      if (c != 0) return c < 0;
      if (ie - i != je - j) return ie - i < je - j;
      i = ie;
      j = je;
    } else {
      if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

TEST(Inventory, NaturalOrderMatchesTheReferenceOnRandomNames) {
  std::mt19937 rng(7);
  const std::string alphabet = "ab.0019";
  std::vector<std::string> names;
  for (int n = 0; n < 600; ++n) {
    std::string s = n % 3 ? "model.layers." : "";
    int len = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
    names.push_back(s);
  }
  // Runs of nine digits and more take the long form of the key.
  names.push_back("x.123456789");
  names.push_back("x.0000000001234567890");
  names.push_back("x.99999999");
  names.push_back("x.100000000.a");
  std::vector<std::string> keys;
  for (const auto& n : names) keys.push_back(natural_key(n));
  for (size_t a = 0; a < names.size(); ++a)
    for (size_t b = 0; b < names.size(); ++b) {
      const bool ref = reference_natural_less(names[a], names[b]);
      ASSERT_EQ(natural_less(names[a], names[b]), ref) << names[a] << " vs " << names[b];
      ASSERT_EQ(keys[a] < keys[b], ref) << "keys of " << names[a] << " vs " << names[b];
    }
}

TEST(Safetensors, ShardedIndexWithAndWithoutShards) {
  TempDir t;
  std::string err;
  ASSERT_TRUE(write_safetensors(
      t.file("s1.safetensors"),
      {{"model.layers.0.w", "F32", {4}}, {"model.embed.weight", "F32", {10, 4}}}, &err));
  ASSERT_TRUE(write_safetensors(
      t.file("s2.safetensors"),
      {{"model.layers.1.w", "F32", {4}}, {"lm_head.weight", "F32", {10, 4}}}, &err));
  std::ofstream(t.file("model.safetensors.index.json"))
      << R"({"metadata":{"total_size":0},"weight_map":{"model.layers.0.w":"s1.safetensors","model.embed.weight":"s1.safetensors",)"
      << R"("model.layers.1.w":"s2.safetensors","lm_head.weight":"s2.safetensors"}})";
  Diagnostics d;
  auto inv = load_model(t.file("model.safetensors.index.json"), d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  EXPECT_TRUE(inv->shapes_known());
  EXPECT_EQ(inv->total_numel(), 88);
  fs::remove(t.file("s2.safetensors"));
  auto partial = load_model(t.file("model.safetensors.index.json"), d);
  ASSERT_TRUE(partial);
  EXPECT_FALSE(partial->shapes_known());
  ASSERT_EQ(partial->facts().source_notes.size(), 1u);
  EXPECT_EQ(partial->facts().source_notes[0],
            "1 of 2 shards are not beside the index: shapes unknown, counts are of tensors, not "
            "parameters");
  std::ofstream(t.file("evil.index.json")) << R"({"weight_map":{"w":"../../etc/passwd"}})";
  EXPECT_EQ(load_error(t.file("evil.index.json")),
            "shard name '../../etc/passwd' leaves the index's folder");
}

TEST(RealCheckpoints, Mixtral8x22bIndex) {
  Diagnostics d;
  auto inv = load_model(std::string(LAYERFREEZE_TEST_DATA) +
                            "/real-checkpoints/mixtral-8x22b/model.safetensors.index.json",
                        d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  EXPECT_EQ(inv->params().size(), 1739u);
  discover_layers(*inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv->num_layers(), 56);
  EXPECT_EQ(inv->params()[*inv->find("model.layers.55.block_sparse_moe.experts.7.w2.weight")].layer,
            55);
  EXPECT_EQ(inv->params()[*inv->find("lm_head.weight")].role, Role::kHead);
  EXPECT_EQ(inv->params()[*inv->find("model.embed_tokens.weight")].role, Role::kEmbeddings);
  EXPECT_EQ(inv->params()[*inv->find("model.norm.weight")].role, Role::kHead);
}

TEST(RealCheckpoints, Falcon180bIndex) {
  Diagnostics d;
  auto inv = load_model(std::string(LAYERFREEZE_TEST_DATA) +
                            "/real-checkpoints/falcon-180b/model.safetensors.index.json",
                        d);
  ASSERT_TRUE(inv) << format_diagnostics(d);
  // 644 names, 643 tensors: FalconConfig ties the head by PretrainedConfig's default, and the
  // config.json beside the index has no tie_word_embeddings key.
  EXPECT_EQ(inv->params().size(), 643u);
  EXPECT_EQ(inv->num_names(), 644u);
  EXPECT_EQ(inv->params()[*inv->find("lm_head.weight")].name, "transformer.word_embeddings.weight");
  discover_layers(*inv, DiscoveryPatterns::shipped(), d);
  EXPECT_EQ(inv->num_layers(), 80);
  EXPECT_EQ(inv->params()[*inv->find("transformer.word_embeddings.weight")].role,
            Role::kEmbeddings);
  EXPECT_EQ(inv->params()[*inv->find("transformer.ln_f.weight")].role, Role::kHead);
}

TEST(Manifest, RoundTripThroughInspectJson) {
  Inventory inv = test::builtin("gpt2");
  Diagnostics d;
  discover_layers(inv, DiscoveryPatterns::shipped(), d);
  auto back = parse_manifest(inventory_json(inv), "gpt2.json", d);
  ASSERT_TRUE(back) << format_diagnostics(d);
  EXPECT_EQ(back->params().size(), inv.params().size());
  EXPECT_EQ(back->total_numel(), 124439808);
  EXPECT_EQ(back->fingerprint(), inv.fingerprint());
  EXPECT_EQ(back->params()[*back->find("lm_head.weight")].name, "transformer.wte.weight");
  EXPECT_EQ(back->params()[0].module_type, "Embedding");
}

TEST(Manifest, Errors) {
  Diagnostics d;
  EXPECT_FALSE(parse_manifest("{\"params\": [}", "m.json", d));
  EXPECT_EQ(format_diagnostics(d).substr(0, 12), "m.json:1:13:");
  Diagnostics d2;
  EXPECT_FALSE(parse_manifest(R"({"params":[{"name":"a"},{"name":"a"}]})", "m.json", d2));
  EXPECT_EQ(d2.items()[0].message, "params[1]: 'a' is listed twice");
  Diagnostics d3;
  EXPECT_FALSE(parse_manifest(R"({"layers":[]})", "m.json", d3));
  EXPECT_EQ(d3.items()[0].message, "a manifest is a JSON object with a 'params' list");
}

// A hand-written manifest is checked as strictly as a rules file: an unknown dtype (the
// safetensors spelling "F32" included) or field is an error that says what was meant, instead of
// memory figures of 0 B or a shape silently unknown.
TEST(Manifest, UnknownDtypesAndFieldsAreRefused) {
  struct Case {
    const char* text;
    const char* code;
    const char* message;
  };
  const Case cases[] = {
      {R"({"params":[{"name":"w","shape":[2],"dtype":"F32"}]})", "manifest-dtype",
       "params[0] ('w'): unknown dtype 'F32' (the safetensors code of 'float32')"},
      {R"({"params":[{"name":"w","shape":[2],"dtype":"flaot32"}]})", "manifest-dtype",
       "params[0] ('w'): unknown dtype 'flaot32' \u2014 did you mean 'float32'?"},
      {R"({"params":[{"name":"w","shape":[2],"dtype":4}]})", "manifest-format",
       "params[0] ('w'): dtype must be a string or null"},
      {R"({"params":[{"name":"w","shap":[2],"dtype":"float32"}]})", "manifest-unknown-field",
       "params[0] ('w'): unknown field 'shap' \u2014 did you mean 'shape'?"},
      {R"({"params":[{"name":"w","dtpye":"float32"}]})", "manifest-unknown-field",
       "params[0] ('w'): unknown field 'dtpye' \u2014 did you mean 'dtype'?"},
      {R"({"model":{"typ":"GPT2"},"params":[]})", "manifest-unknown-field",
       "model: unknown field 'typ' \u2014 did you mean 'type'?"},
      {R"({"parms":[],"params":[]})", "manifest-unknown-field",
       "the manifest: unknown field 'parms' \u2014 did you mean 'params'?"},
  };
  for (const Case& c : cases) {
    Diagnostics d;
    EXPECT_FALSE(parse_manifest(c.text, "m.json", d)) << c.text;
    ASSERT_FALSE(d.items().empty()) << c.text;
    EXPECT_EQ(d.items()[0].code, c.code) << c.text;
    EXPECT_EQ(d.items()[0].message, c.message) << c.text;
  }
  // Every dtype the writers use reads back; null and absent are "unknown".
  Diagnostics ok;
  EXPECT_TRUE(parse_manifest(
      R"({"params":[{"name":"a","shape":[1],"dtype":"bfloat16"},{"name":"b","shape":[1],"dtype":null},)"
      R"({"name":"c","shape":[1],"dtype":"float8_e4m3fn","role":"layer","layer":0,"expert":2}]})",
      "m.json", ok))
      << format_diagnostics(ok);
}

TEST(ModelSource, UnknownBuiltinSuggests) {
  Diagnostics d;
  EXPECT_FALSE(load_model("builtin:lama2-7b", d));
  EXPECT_EQ(d.items()[0].message, "no built-in model 'lama2-7b' — did you mean 'llama2-7b'?");
}

}  // namespace
}  // namespace layerfreeze

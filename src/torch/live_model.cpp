#include "torch/live_model.hpp"
#include "core/facts_builder.hpp"

#include <torch/csrc/jit/api/module.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/dropout.h>

#include <map>
#include <unordered_map>

namespace layerfreeze {

void TensorSink::set(uint32_t i, bool frozen) {
  at::Tensor& t = (*tensors_)[i];
  Undo u{i, t.requires_grad(), frozen, {}};
  if (frozen) {
    t.requires_grad_(false);
    u.grad = std::move(t.mutable_grad());  // dropped, kept only to undo
  } else {
    t.requires_grad_(true);  // the gradient is left as it is
  }
  undo_.push_back(std::move(u));
  (frozen ? frozen_now_ : unfrozen_now_).push_back(i);
}

void TensorSink::changed(const Time& at, const Bitset& frozen) {
  (void)at;
  (void)frozen;
  undo_.clear();
  frozen_now_.clear();
  unfrozen_now_.clear();
}

void TensorSink::abort() {
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) {
    at::Tensor& t = (*tensors_)[it->index];
    t.requires_grad_(it->requires_grad);
    if (it->took_grad) t.mutable_grad() = std::move(it->grad);
  }
  undo_.clear();
  frozen_now_.clear();
  unfrozen_now_.clear();
}

std::string short_type_name(const std::string& qualified) {
  std::string s = qualified;
  // Last component after "::" or ".".
  size_t cut = s.rfind("::");
  if (cut != std::string::npos) s = s.substr(cut + 2);
  cut = s.rfind('.');
  if (cut != std::string::npos) s = s.substr(cut + 1);
  if (s.size() > 4 && s.compare(s.size() - 4, 4, "Impl") == 0) s.resize(s.size() - 4);
  return s;
}

namespace {

const char* dtype_name(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    case at::kComplexFloat: return "complex64";
    case at::kComplexDouble: return "complex128";
    default: return "";
  }
}

// Adds (name, tensor) pairs in registration order, merging tied tensors into one entry.
class Collector {
 public:
  explicit Collector(LiveModel& m) : m_(m) {}

  void add(const std::string& name, const at::Tensor& t, const std::string& module_type) {
    if (m_.facts.contains(name)) return;
    const void* id = t.unsafeGetTensorImpl();
    auto it = by_impl_.find(id);
    if (it != by_impl_.end()) {
      FactsBuilder(m_.facts).add_alias(m_.facts.tensors()[it->second].name, name);
      return;
    }
    Tensor p;
    p.name = name;
    p.shape = t.sizes().vec();
    p.numel = t.numel();
    p.dtype = dtype_name(t);
    p.module_type = module_type;
    uint32_t idx = FactsBuilder(m_.facts).add(std::move(p));
    by_impl_.emplace(id, idx);
    m_.tensors.push_back(t);
  }
  std::optional<uint32_t> index_of(const at::Tensor& t) const {
    auto it = by_impl_.find(t.unsafeGetTensorImpl());
    if (it == by_impl_.end()) return std::nullopt;
    return it->second;
  }

 private:
  LiveModel& m_;
  std::unordered_map<const void*, uint32_t> by_impl_;
};

// A LibTorch dropout module's probability; -1 for any other module.
double dropout_p(torch::nn::Module& mod) {
  if (auto* d = mod.as<torch::nn::DropoutImpl>()) return d->options.p();
  if (auto* d = mod.as<torch::nn::Dropout2dImpl>()) return d->options.p();
  if (auto* d = mod.as<torch::nn::Dropout3dImpl>()) return d->options.p();
  if (auto* d = mod.as<torch::nn::AlphaDropoutImpl>()) return d->options.p();
  if (auto* d = mod.as<torch::nn::FeatureAlphaDropoutImpl>()) return d->options.p();
  return -1;
}

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

LiveModel live_model(torch::nn::Module& model) {
  LiveModel m;
  m.facts.model_type = short_type_name(model.name());
  Collector c(m);
  // named_parameters() is registration order, parent first; module types come from the module
  // that registers each parameter.
  std::map<std::string, std::string> type_of;
  for (const auto& item : model.named_modules("", /*include_self=*/true)) {
    const auto& mod = item.value();
    std::string type = short_type_name(mod->name());
    bool owns = false;
    for (const auto& p : mod->named_parameters(/*recurse=*/false)) {
      type_of[join(item.key(), p.key())] = type;
      owns = true;
    }
    if (owns) m.owner_modules.push_back(item.key());
  }
  for (const auto& p : model.named_parameters(/*recurse=*/true))
    c.add(p.key(), p.value(), type_of[p.key()]);
  for (const auto& item : model.named_modules("", true)) {
    const auto& mod = item.value();
    std::string type = short_type_name(mod->name());
    if (type.find("BatchNorm") == std::string::npos) continue;
    LiveModel::ModeModule mm;
    mm.name = item.key();
    for (const auto& p : mod->named_parameters(false))
      if (auto i = c.index_of(p.value())) mm.params.push_back(*i);
    std::shared_ptr<torch::nn::Module> keep = mod;
    mm.set_training = [keep](bool on) { keep->train(on); };
    mm.is_training = [keep] { return keep->is_training(); };
    m.batchnorms.push_back(std::move(mm));
  }
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    std::shared_ptr<torch::nn::Module> keep = item.value();
    LiveModel::Submodule sm;
    sm.name = item.key();
    sm.type = short_type_name(keep->name());
    sm.p = dropout_p(*keep);
    sm.set_training = [keep](bool on) { keep->train(on); };
    sm.is_training = [keep] { return keep->is_training(); };
    m.modules.push_back(std::move(sm));
  }
  return m;
}

LiveModel live_model(torch::jit::Module& model) {
  LiveModel m;
  auto type_of_module = [](const torch::jit::Module& mod) {
    auto name = mod.type()->name();
    std::string q = name ? name->qualifiedName() : "";
    // "__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear": the class is the last part.
    return short_type_name(q);
  };
  m.facts.model_type = type_of_module(model);
  Collector c(m);
  std::map<std::string, std::string> type_of;
  for (const auto& item : model.named_modules()) {
    std::string type = type_of_module(item.value);
    bool owns = false;
    for (const auto& p : item.value.named_parameters(/*recurse=*/false)) {
      type_of[join(item.name, p.name)] = type;
      owns = true;
    }
    if (owns) m.owner_modules.push_back(item.name);
  }
  for (const auto& p : model.named_parameters(/*recurse=*/true))
    c.add(p.name, p.value, type_of[p.name]);
  for (const auto& item : model.named_modules()) {
    if (type_of_module(item.value).find("BatchNorm") == std::string::npos) continue;
    LiveModel::ModeModule mm;
    mm.name = item.name;
    for (const auto& p : item.value.named_parameters(false))
      if (auto i = c.index_of(p.value)) mm.params.push_back(*i);
    torch::jit::Module keep = item.value;
    mm.set_training = [keep](bool on) mutable { keep.train(on); };
    mm.is_training = [keep] { return keep.is_training(); };
    m.batchnorms.push_back(std::move(mm));
  }
  for (const auto& item : model.named_modules()) {
    if (item.name.empty()) continue;  // the root
    LiveModel::Submodule sm;
    sm.name = item.name;
    sm.type = type_of_module(item.value);
    if (sm.type.find("Dropout") != std::string::npos && item.value.hasattr("p")) {
      auto p = item.value.attr("p");
      if (p.isDouble()) sm.p = p.toDouble();
    }
    torch::jit::Module keep = item.value;
    sm.set_training = [keep](bool on) mutable { keep.train(on); };
    sm.is_training = [keep] { return keep.is_training(); };
    m.modules.push_back(std::move(sm));
  }
  return m;
}

}  // namespace layerfreeze

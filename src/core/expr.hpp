// Expr: a value in a rules file that may depend on the strategy's parameters. A plain YAML
// scalar is a literal; `${...}` is an expression over the parameters (arithmetic, comparisons,
// and/or/not, min/max/floor/ceil); a string with `${...}` inside is a template.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/value.hpp"
#include "layerfreeze/diagnostics.hpp"

namespace layerfreeze {

using Scope = std::map<std::string, Value>;

struct ExprNode;

class Expr {
 public:
  Expr() = default;
  static Expr literal(Value v, SourceLoc loc);
  /// Parses `text` (a whole `${...}` or a template). Syntax errors and unknown names go to
  /// `diags`; `known` lists the parameter names in scope.
  static Expr parse(const std::string& text, SourceLoc loc, const std::vector<std::string>& known,
                    Diagnostics& diags);

  bool empty() const { return !literal_ && parts_.empty(); }
  bool is_literal() const { return literal_.has_value(); }
  const Value* literal_value() const { return literal_ ? &*literal_ : nullptr; }
  const SourceLoc& loc() const { return loc_; }
  const std::string& text() const { return text_; }
  /// Evaluates with parameter values; a failure (unset parameter, division by zero) is an error
  /// at this expression's location, and returns nullopt.
  std::optional<Value> eval(const Scope& scope, Diagnostics& diags) const;
  /// The parameter names the expression reads (for callers that cache values that do not depend
  /// on a name that changes).
  std::vector<std::string> names() const;

 private:
  std::optional<Value> literal_;
  // A template: literal text and expressions, alternating; a single expression part with no
  // text around it yields a typed value.
  struct Part {
    std::string text;
    std::shared_ptr<const ExprNode> expr;
  };
  std::vector<Part> parts_;
  bool whole_ = false;
  std::string text_;
  SourceLoc loc_;
};

}  // namespace layerfreeze

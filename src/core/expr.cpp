#include "core/expr.hpp"

#include "core/safe_text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <sstream>

namespace layerfreeze {

std::string Value::to_string() const {
  switch (kind) {
    case Kind::kNull: return "null";
    case Kind::kBool: return b ? "true" : "false";
    case Kind::kInt: return std::to_string(i);
    case Kind::kFloat: {
      std::string t = fmt::format("{}", f);  // shortest form that reads back the same
      if (t.find_first_of(".eEn") == std::string::npos) t += ".0";
      return t;
    }
    case Kind::kString: return "'" + s + "'";
    case Kind::kList: {
      std::string t = "[";
      for (size_t k = 0; k < list.size(); ++k) t += (k ? ", " : "") + list[k].to_string();
      return t + "]";
    }
  }
  return "null";
}

bool Value::operator==(const Value& o) const {
  if (is_number() && o.is_number()) return number() == o.number();
  if (kind != o.kind) return false;
  switch (kind) {
    case Kind::kNull: return true;
    case Kind::kBool: return b == o.b;
    case Kind::kString: return s == o.s;
    case Kind::kList: return list == o.list;
    default: return false;
  }
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::kNull: return "null";
    case Value::Kind::kBool: return "bool";
    case Value::Kind::kInt: return "int";
    case Value::Kind::kFloat: return "float";
    case Value::Kind::kString: return "string";
    case Value::Kind::kList: return "list";
  }
  return "null";
}

struct ExprNode {
  enum class Op {
    kLit,
    kName,
    kNeg,
    kNot,
    kAdd,
    kSub,
    kMul,
    kDiv,
    kIntDiv,
    kMod,
    kEq,
    kNe,
    kLt,
    kLe,
    kGt,
    kGe,
    kIn,
    kAnd,
    kOr,
    kCall
  };
  Op op = Op::kLit;
  Value value;
  std::string name;  // kName, kCall
  std::vector<std::shared_ptr<const ExprNode>> args;
  int height = 1;  // of the tree below it: evaluation and destruction recurse this deep
};

namespace {

using NodeP = std::shared_ptr<const ExprNode>;

// Recursive descent over: or > and > not > comparison > + - > * / // % > unary - > primary.
class ExprParser {
 public:
  ExprParser(const std::string& s, const std::vector<std::string>& known) : s_(s), known_(known) {}

  NodeP parse(std::string& error) {
    NodeP n = parse_or();
    skip();
    if (!error_.empty()) {
      error = error_;
      return nullptr;
    }
    if (pos_ < s_.size()) {
      error = "unexpected '" + s_.substr(pos_, 1) + "' in expression";
      return nullptr;
    }
    return n;
  }

 private:
  void skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool eat(const std::string& tok) {
    skip();
    if (s_.compare(pos_, tok.size(), tok) != 0) return false;
    // Keywords must not be the start of a longer identifier.
    if (std::isalpha(static_cast<unsigned char>(tok[0])) && pos_ + tok.size() < s_.size() &&
        (std::isalnum(static_cast<unsigned char>(s_[pos_ + tok.size()])) ||
         s_[pos_ + tok.size()] == '_'))
      return false;
    pos_ += tok.size();
    return true;
  }
  // Every node is made here or checked like here: a tree higher than kMaxHeight (a chain of
  // 30,000 `+` or `not`) is refused, so evaluating and freeing it never recurses deeper.
  static constexpr int kMaxHeight = 200;
  NodeP make(ExprNode::Op op, std::vector<NodeP> args) {
    auto n = std::make_shared<ExprNode>();
    n->op = op;
    for (const auto& a : args)
      if (a) n->height = std::max(n->height, a->height + 1);
    n->args = std::move(args);
    if (n->height > kMaxHeight) {
      fail("expression too long or nested too deeply (more than " + std::to_string(kMaxHeight) +
           " operators in a chain)");
      n->args.clear();
      n->height = 1;
    }
    return n;
  }
  void fail(const std::string& msg) {
    if (error_.empty()) error_ = msg;
  }
  NodeP parse_or() {
    NodeP l = parse_and();
    while (error_.empty() && eat("or")) l = make(ExprNode::Op::kOr, {l, parse_and()});
    return l;
  }
  NodeP parse_and() {
    NodeP l = parse_not();
    while (error_.empty() && eat("and")) l = make(ExprNode::Op::kAnd, {l, parse_not()});
    return l;
  }
  // A prefix operator (`not`, unary `-`) recurses while parsing: bounded like parentheses.
  NodeP prefix(ExprNode::Op op, NodeP (ExprParser::*operand)()) {
    if (++depth_ > kMaxUnary) {
      fail("expression nested too deeply");
      return make(ExprNode::Op::kLit, {});
    }
    NodeP n = make(op, {(this->*operand)()});
    --depth_;
    return n;
  }
  NodeP parse_not() {
    return eat("not") ? prefix(ExprNode::Op::kNot, &ExprParser::parse_not) : parse_cmp();
  }
  NodeP parse_cmp() {
    NodeP l = parse_add();
    static const std::pair<const char*, ExprNode::Op> ops[] = {
        {"==", ExprNode::Op::kEq}, {"!=", ExprNode::Op::kNe}, {"<=", ExprNode::Op::kLe},
        {">=", ExprNode::Op::kGe}, {"<", ExprNode::Op::kLt},  {">", ExprNode::Op::kGt}};
    for (const auto& [tok, op] : ops)
      if (eat(tok)) return make(op, {l, parse_add()});
    if (eat("in")) return make(ExprNode::Op::kIn, {l, parse_add()});
    return l;
  }
  NodeP parse_add() {
    NodeP l = parse_mul();
    while (error_.empty()) {
      if (eat("+"))
        l = make(ExprNode::Op::kAdd, {l, parse_mul()});
      else if (eat("-"))
        l = make(ExprNode::Op::kSub, {l, parse_mul()});
      else
        break;
    }
    return l;
  }
  NodeP parse_mul() {
    NodeP l = parse_unary();
    while (error_.empty()) {
      if (eat("*"))
        l = make(ExprNode::Op::kMul, {l, parse_unary()});
      else if (eat("//"))
        l = make(ExprNode::Op::kIntDiv, {l, parse_unary()});
      else if (eat("/"))
        l = make(ExprNode::Op::kDiv, {l, parse_unary()});
      else if (eat("%"))
        l = make(ExprNode::Op::kMod, {l, parse_unary()});
      else
        break;
    }
    return l;
  }
  NodeP parse_unary() {
    return eat("-") ? prefix(ExprNode::Op::kNeg, &ExprParser::parse_unary) : parse_primary();
  }
  static constexpr int kMaxUnary = 64;
  NodeP parse_primary() {
    skip();
    if (++depth_ > 64) {
      fail("expression nested too deeply");
      return make(ExprNode::Op::kLit, {});
    }
    if (eat("(")) {
      NodeP n = parse_or();
      if (!eat(")")) fail("missing ')' in expression");
      --depth_;
      return n;
    }
    auto n = std::make_shared<ExprNode>();
    if (pos_ < s_.size() &&
        (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '.')) {
      size_t start = pos_;
      bool is_float = false;
      while (pos_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[pos_])) ||
                                  s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E' ||
                                  ((s_[pos_] == '-' || s_[pos_] == '+') &&
                                   (s_[pos_ - 1] == 'e' || s_[pos_ - 1] == 'E')))) {
        if (!std::isdigit(static_cast<unsigned char>(s_[pos_]))) is_float = true;
        ++pos_;
      }
      std::string num = s_.substr(start, pos_ - start);
      try {
        size_t used = 0;
        if (is_float)
          n->value = Value::real(std::stod(num, &used));
        else
          n->value = Value::integer(std::stoll(num, &used));
        if (used != num.size()) fail("bad number '" + num + "'");
      } catch (...) {
        fail("bad number '" + num + "'");
      }
      --depth_;
      return n;
    }
    if (pos_ < s_.size() && (s_[pos_] == '\'' || s_[pos_] == '"')) {
      char q = s_[pos_++];
      size_t end = s_.find(q, pos_);
      if (end == std::string::npos) {
        fail("unterminated string in expression");
        --depth_;
        return n;
      }
      n->value = Value::string(s_.substr(pos_, end - pos_));
      pos_ = end + 1;
      --depth_;
      return n;
    }
    if (pos_ < s_.size() &&
        (std::isalpha(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) {
      size_t start = pos_;
      // Dotted names reach nested keys (a model config's `vision_config.depth`).
      while (pos_ < s_.size() &&
             (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_' ||
              (s_[pos_] == '.' && pos_ + 1 < s_.size() &&
               (std::isalpha(static_cast<unsigned char>(s_[pos_ + 1])) || s_[pos_ + 1] == '_'))))
        ++pos_;
      std::string id = s_.substr(start, pos_ - start);
      if (id == "true" || id == "false")
        n->value = Value::boolean(id == "true");
      else if (id == "null")
        n->value = Value::null();
      else if (eat("(")) {
        auto call = std::make_shared<ExprNode>();
        call->op = ExprNode::Op::kCall;
        call->name = id;
        if (id != "min" && id != "max" && id != "floor" && id != "ceil" && id != "round")
          fail("unknown function '" + id + "'" +
               did_you_mean(id, {"min", "max", "floor", "ceil", "round"}));
        if (!eat(")")) {
          do call->args.push_back(parse_or());
          while (error_.empty() && eat(","));
          if (!eat(")")) fail("missing ')' after the arguments of " + id);
        }
        for (const auto& a : call->args)
          if (a) call->height = std::max(call->height, a->height + 1);
        --depth_;
        return call;
      } else {
        bool ok = false;
        for (const auto& k : known_) ok = ok || k == id;
        if (!ok) fail("unknown parameter '" + id + "'" + did_you_mean(id, known_));
        n->op = ExprNode::Op::kName;
        n->name = id;
      }
      --depth_;
      return n;
    }
    fail(pos_ < s_.size() ? "unexpected '" + s_.substr(pos_, 1) + "' in expression"
                          : "expression ends too early");
    --depth_;
    return n;
  }

  const std::string& s_;
  const std::vector<std::string>& known_;
  size_t pos_ = 0;
  int depth_ = 0;
  std::string error_;
};

struct Evaluator {
  const Scope& scope;
  std::string error;

  std::optional<Value> fail(const std::string& m) {
    if (error.empty()) error = m;
    return std::nullopt;
  }
  static bool truthy(const Value& v) {
    switch (v.kind) {
      case Value::Kind::kNull: return false;
      case Value::Kind::kBool: return v.b;
      case Value::Kind::kInt: return v.i != 0;
      case Value::Kind::kFloat: return v.f != 0.0;
      case Value::Kind::kString: return !v.s.empty();
      case Value::Kind::kList: return !v.list.empty();
    }
    return false;
  }
  std::optional<Value> arith(ExprNode::Op op, const Value& a, const Value& b) {
    if (!a.is_number() || !b.is_number())
      return fail(std::string("arithmetic needs numbers, got ") + kind_name(a.kind) + " and " +
                  kind_name(b.kind));
    bool ints = a.kind == Value::Kind::kInt && b.kind == Value::Kind::kInt;
    const int64_t lim = int64_t{1} << 53;
    switch (op) {
      case ExprNode::Op::kAdd:
      case ExprNode::Op::kSub:
      case ExprNode::Op::kMul: {
        double r = op == ExprNode::Op::kAdd   ? a.number() + b.number()
                   : op == ExprNode::Op::kSub ? a.number() - b.number()
                                              : a.number() * b.number();
        if (ints) {
          if (std::fabs(r) >= static_cast<double>(lim))
            return fail("integer overflow in expression");
          return Value::integer(op == ExprNode::Op::kAdd   ? a.i + b.i
                                : op == ExprNode::Op::kSub ? a.i - b.i
                                                           : a.i * b.i);
        }
        return Value::real(r);
      }
      case ExprNode::Op::kDiv:
        if (b.number() == 0) return fail("division by zero");
        return Value::real(a.number() / b.number());
      case ExprNode::Op::kIntDiv:
      case ExprNode::Op::kMod: {
        if (b.number() == 0) return fail("division by zero");
        if (ints) {
          int64_t q = a.i / b.i, m = a.i % b.i;
          if (m != 0 && ((m < 0) != (b.i < 0))) {
            --q;
            m += b.i;
          }  // Python's floor semantics
          return Value::integer(op == ExprNode::Op::kIntDiv ? q : m);
        }
        double q = std::floor(a.number() / b.number());
        return op == ExprNode::Op::kIntDiv ? Value::real(q)
                                           : Value::real(a.number() - q * b.number());
      }
      default: return fail("bad operator");
    }
  }
  std::optional<Value> eval(const ExprNode& n) {
    using Op = ExprNode::Op;
    switch (n.op) {
      case Op::kLit: return n.value;
      case Op::kName: {
        auto it = scope.find(n.name);
        if (it == scope.end())
          return fail("parameter '" + n.name + "' has no value (set it with --set " + n.name +
                      "=...)");
        return it->second;
      }
      case Op::kNeg: {
        auto v = eval(*n.args[0]);
        if (!v) return v;
        if (v->kind == Value::Kind::kInt) return Value::integer(-v->i);
        if (v->kind == Value::Kind::kFloat) return Value::real(-v->f);
        return fail(std::string("cannot negate a ") + kind_name(v->kind));
      }
      case Op::kNot: {
        auto v = eval(*n.args[0]);
        if (!v) return v;
        return Value::boolean(!truthy(*v));
      }
      case Op::kAnd:
      case Op::kOr: {
        auto a = eval(*n.args[0]);
        if (!a) return a;
        if ((n.op == Op::kAnd) != truthy(*a)) return Value::boolean(truthy(*a));
        auto b = eval(*n.args[1]);
        if (!b) return b;
        return Value::boolean(truthy(*b));
      }
      case Op::kEq:
      case Op::kNe:
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe:
      case Op::kIn: {
        auto a = eval(*n.args[0]);
        auto b = a ? eval(*n.args[1]) : std::nullopt;
        if (!a || !b) return std::nullopt;
        if (n.op == Op::kEq) return Value::boolean(*a == *b);
        if (n.op == Op::kIn) {
          if (b->kind != Value::Kind::kList)
            return fail(std::string("'in' needs a list on its right, got ") + kind_name(b->kind));
          for (const auto& x : b->list)
            if (x == *a) return Value::boolean(true);
          return Value::boolean(false);
        }
        if (n.op == Op::kNe) return Value::boolean(!(*a == *b));
        if (!a->is_number() || !b->is_number()) return fail("ordering comparisons need numbers");
        double x = a->number(), y = b->number();
        return Value::boolean(n.op == Op::kLt   ? x < y
                              : n.op == Op::kLe ? x <= y
                              : n.op == Op::kGt ? x > y
                                                : x >= y);
      }
      case Op::kCall: {
        std::vector<Value> args;
        for (const auto& a : n.args) {
          auto v = eval(*a);
          if (!v) return v;
          if (v->kind == Value::Kind::kList && n.name != "floor" && n.name != "ceil" &&
              n.name != "round") {  // max(image_size): a config's [height, width]
            for (const auto& x : v->list) {
              if (!x.is_number()) return fail(n.name + "() takes numbers");
              args.push_back(x);
            }
            continue;
          }
          if (!v->is_number()) return fail(n.name + "() takes numbers");
          args.push_back(*v);
        }
        if ((n.name == "floor" || n.name == "ceil" || n.name == "round") && args.size() != 1)
          return fail(n.name + "() takes one argument");
        if (args.empty()) return fail(n.name + "() needs arguments");
        if (n.name == "floor" || n.name == "ceil" || n.name == "round") {
          double x = args[0].number();
          double r = n.name == "floor"  ? std::floor(x)
                     : n.name == "ceil" ? std::ceil(x)
                                        : std::round(x);
          if (std::fabs(r) >= 9.0e15) return fail("integer overflow in expression");
          return Value::integer(static_cast<int64_t>(r));
        }
        Value best = args[0];
        for (const auto& v : args)
          if (n.name == "min" ? v.number() < best.number() : v.number() > best.number()) best = v;
        return best;
      }
      default: {
        auto a = eval(*n.args[0]);
        auto b = a ? eval(*n.args[1]) : std::nullopt;
        if (!a || !b) return std::nullopt;
        return arith(n.op, *a, *b);
      }
    }
  }
};

}  // namespace

Expr Expr::literal(Value v, SourceLoc loc) {
  Expr e;
  e.literal_ = std::move(v);
  e.loc_ = std::move(loc);
  e.text_ = e.literal_->to_string();
  return e;
}

Expr Expr::parse(const std::string& text, SourceLoc loc, const std::vector<std::string>& known,
                 Diagnostics& diags) {
  Expr e;
  e.loc_ = loc;
  e.text_ = text;
  size_t pos = 0;
  std::string lit;
  while (pos < text.size()) {
    size_t open = text.find("${", pos);
    if (open == std::string::npos) {
      lit += text.substr(pos);
      break;
    }
    lit += text.substr(pos, open - pos);
    size_t close = text.find('}', open + 2);
    if (close == std::string::npos) {
      diags.error("bad-expression", "unterminated '${' in '" + text + "'", loc);
      return e;
    }
    std::string inner = text.substr(open + 2, close - open - 2);
    std::string err;
    NodeP node = ExprParser(inner, known).parse(err);
    if (!err.empty()) {
      SourceLoc at = loc;
      at.column += static_cast<int>(open);
      diags.error("bad-expression", "in " + quoted_value("${" + inner + "}", 80) + ": " + err, at);
      return e;
    }
    e.parts_.push_back({lit, node});
    lit.clear();
    pos = close + 1;
  }
  if (!lit.empty() || e.parts_.empty()) e.parts_.push_back({lit, nullptr});
  e.whole_ = e.parts_.size() == 1 && e.parts_[0].text.empty() && e.parts_[0].expr;
  return e;
}

std::vector<std::string> Expr::names() const {
  std::vector<std::string> out;
  std::vector<const ExprNode*> todo;
  for (const auto& p : parts_)
    if (p.expr) todo.push_back(p.expr.get());
  while (!todo.empty()) {
    const ExprNode* n = todo.back();
    todo.pop_back();
    if (n->op == ExprNode::Op::kName) out.push_back(n->name);
    for (const auto& a : n->args) todo.push_back(a.get());
  }
  return out;
}

std::optional<Value> Expr::eval(const Scope& scope, Diagnostics& diags) const {
  if (literal_) return literal_;
  Evaluator ev{scope, {}};
  if (whole_) {
    auto v = ev.eval(*parts_[0].expr);
    if (!v) diags.error("bad-expression", "in " + quoted_value(text_, 80) + ": " + ev.error, loc_);
    return v;
  }
  std::string out;
  for (const auto& p : parts_) {
    out += p.text;
    if (!p.expr) continue;
    auto v = ev.eval(*p.expr);
    if (!v) {
      diags.error("bad-expression", "in " + quoted_value(text_, 80) + ": " + ev.error, loc_);
      return std::nullopt;
    }
    out += v->kind == Value::Kind::kString ? v->s : v->to_string();
  }
  return Value::string(out);
}

}  // namespace layerfreeze

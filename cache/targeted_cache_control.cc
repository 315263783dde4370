#include "cache/targeted_cache_control.h"

#include <algorithm>
#include <cstdint>

#include "conf/http_token.h"

namespace streamedge::cache {
namespace {

using conf::isTchar;

// RFC 9111 §1.2.2: delta-seconds past 2^31 are taken as 2^31 (as CacheControl::parse does).
constexpr int64_t kMaxDeltaSeconds = int64_t{1} << 31;

bool isLcAlpha(char c) { return c >= 'a' && c <= 'z'; }
bool isAlpha(char c) { return isLcAlpha(c) || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

// One parsed bare item (RFC 8941 §3.3), or an inner list. Only what the directive mapping needs
// is kept: the kind, an Integer's value, a Boolean's value.
struct Value {
  enum class Kind { kInteger, kDecimal, kString, kToken, kBinary, kBoolean, kInnerList };
  Kind kind = Kind::kBoolean;
  int64_t integer = 0;
  bool boolean = true;
};

// A strict RFC 8941 §4.2 parser over one field value. Every parse* returns false on the first
// error; the caller then ignores the whole field (RFC 9213 §2.2).
class SfParser {
 public:
  explicit SfParser(std::string_view in) : in_(in) {}

  // §4.2.2 Parsing a Dictionary; `member(key, value)` is called for each member in order (a
  // repeated key is reported again: the last call wins, as the dictionary overwrites).
  template <typename F>
  bool dictionary(F&& member) {
    skipSp();  // §4.2 step 2: leading SP
    while (!atEnd()) {
      std::string_view key;
      if (!parseKey(key)) return false;
      Value value;
      if (peek() == '=') {
        ++pos_;
        if (!parseItemOrInnerList(value)) return false;
      } else {
        value.kind = Value::Kind::kBoolean;
        value.boolean = true;
        if (!parseParameters()) return false;
      }
      member(key, value);
      skipOws();
      if (atEnd()) return true;
      if (peek() != ',') return false;
      ++pos_;
      skipOws();
      if (atEnd()) return false;  // trailing comma
    }
    return true;
  }

 private:
  bool atEnd() const { return pos_ >= in_.size(); }
  char peek() const { return atEnd() ? '\0' : in_[pos_]; }
  void skipSp() {
    while (!atEnd() && in_[pos_] == ' ') ++pos_;
  }
  void skipOws() {
    while (!atEnd() && (in_[pos_] == ' ' || in_[pos_] == '\t')) ++pos_;
  }

  // §4.2.3.3 key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
  bool parseKey(std::string_view& key) {
    const size_t start = pos_;
    if (!(isLcAlpha(peek()) || peek() == '*')) return false;
    ++pos_;
    while (!atEnd()) {
      const char c = in_[pos_];
      if (!(isLcAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*')) break;
      ++pos_;
    }
    key = in_.substr(start, pos_ - start);
    return true;
  }

  // §4.2.1.1
  bool parseItemOrInnerList(Value& v) {
    if (peek() == '(') return parseInnerList(v);
    return parseBareItem(v) && parseParameters();
  }

  // §4.2.1.2 inner-list = "(" *SP [ sf-item *( 1*SP sf-item ) *SP ] ")" parameters
  bool parseInnerList(Value& v) {
    ++pos_;  // '('
    v.kind = Value::Kind::kInnerList;
    while (!atEnd()) {
      skipSp();
      if (peek() == ')') {
        ++pos_;
        return parseParameters();
      }
      Value item;
      if (!parseBareItem(item) || !parseParameters()) return false;
      if (peek() != ' ' && peek() != ')') return false;
    }
    return false;  // no closing parenthesis
  }

  // §4.2.3.2 parameters = *( ";" *SP parameter ); parameter = param-key [ "=" param-value ]
  bool parseParameters() {
    while (peek() == ';') {
      ++pos_;
      skipSp();
      std::string_view key;
      if (!parseKey(key)) return false;
      if (peek() == '=') {
        ++pos_;
        Value ignored;
        if (!parseBareItem(ignored)) return false;
      }
    }
    return true;
  }

  // §4.2.3.1
  bool parseBareItem(Value& v) {
    const char c = peek();
    if (c == '-' || isDigit(c)) return parseNumber(v);
    if (c == '"') return parseString(v);
    if (isAlpha(c) || c == '*') return parseToken(v);
    if (c == ':') return parseBinary(v);
    if (c == '?') return parseBoolean(v);
    return false;
  }

  // §4.2.4 Integer (at most 15 digits) or Decimal (at most 12 integer and 3 fraction digits).
  bool parseNumber(Value& v) {
    bool negative = false;
    if (peek() == '-') {
      negative = true;
      ++pos_;
    }
    if (!isDigit(peek())) return false;
    int64_t integer = 0;
    size_t digits = 0;        // before the dot
    size_t frac_digits = 0;
    bool decimal = false;
    while (!atEnd()) {
      const char c = in_[pos_];
      if (isDigit(c)) {
        if (decimal) {
          if (++frac_digits > 3) return false;
        } else {
          if (++digits > 15) return false;
          integer = integer * 10 + (c - '0');
        }
      } else if (c == '.' && !decimal) {
        if (digits > 12) return false;
        decimal = true;
      } else {
        break;
      }
      ++pos_;
    }
    if (decimal) {
      if (frac_digits == 0) return false;  // "1." is not a Decimal
      v.kind = Value::Kind::kDecimal;
      return true;
    }
    v.kind = Value::Kind::kInteger;
    v.integer = negative ? -integer : integer;
    return true;
  }

  // §4.2.5: printable ASCII; only \" and \\ are escapes.
  bool parseString(Value& v) {
    ++pos_;  // opening quote
    while (!atEnd()) {
      const char c = in_[pos_++];
      if (c == '\\') {
        if (atEnd()) return false;
        const char e = in_[pos_++];
        if (e != '"' && e != '\\') return false;
      } else if (c == '"') {
        v.kind = Value::Kind::kString;
        return true;
      } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
        return false;
      }
    }
    return false;  // unterminated
  }

  // §4.2.6 sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" )
  bool parseToken(Value& v) {
    ++pos_;
    while (!atEnd() && (isTchar(in_[pos_]) || in_[pos_] == ':' || in_[pos_] == '/')) ++pos_;
    v.kind = Value::Kind::kToken;
    return true;
  }

  // §4.2.7 sf-binary = ":" *(base64) ":"
  bool parseBinary(Value& v) {
    ++pos_;
    while (!atEnd()) {
      const char c = in_[pos_++];
      if (c == ':') {
        v.kind = Value::Kind::kBinary;
        return true;
      }
      if (!(isAlpha(c) || isDigit(c) || c == '+' || c == '/' || c == '=')) return false;
    }
    return false;
  }

  // §4.2.8 sf-boolean = "?" ( "0" / "1" )
  bool parseBoolean(Value& v) {
    ++pos_;
    if (peek() != '0' && peek() != '1') return false;
    v.kind = Value::Kind::kBoolean;
    v.boolean = peek() == '1';
    ++pos_;
    return true;
  }

  std::string_view in_;
  size_t pos_ = 0;
};

// RFC 9213 §2.2: a directive's value has the type its Cache-Control form implies; values of
// another type are not consumed.
void applyTargetedDirective(CacheControl& cc, std::string_view key, const Value& v) {
  const bool is_true = v.kind != Value::Kind::kBoolean || v.boolean;
  // Restrictive directives fail safe, as in CacheControl::parse: only an explicit ?0 unsets.
  if (key == "no-store") { cc.no_store = is_true; return; }
  if (key == "private") { cc.is_private = is_true; return; }
  if (key == "no-cache") { cc.no_cache = is_true; return; }
  if (key == "must-revalidate") { cc.must_revalidate = is_true; return; }
  if (key == "proxy-revalidate") { cc.proxy_revalidate = is_true; return; }
  const bool bare_true = v.kind == Value::Kind::kBoolean && v.boolean;
  if (key == "public") { cc.is_public = bare_true; return; }
  if (key == "immutable") { cc.immutable = bare_true; return; }
  std::optional<Seconds>* slot = nullptr;
  if (key == "max-age") slot = &cc.max_age;
  else if (key == "s-maxage") slot = &cc.s_maxage;
  else if (key == "stale-while-revalidate") slot = &cc.stale_while_revalidate;
  else if (key == "stale-if-error") slot = &cc.stale_if_error;
  if (slot == nullptr) return;  // unknown or request-only directive: ignored
  if (v.kind == Value::Kind::kInteger && v.integer >= 0) {
    *slot = Seconds(std::min(v.integer, kMaxDeltaSeconds));
  } else {
    slot->reset();  // the last occurrence decides, and it is not a delta-seconds
  }
}

// All field lines named `name`, joined with ", " (RFC 9110 §5.3; RFC 8941 §4.2 parses the
// combined value). Returns false when there is none.
bool joinedField(const ResponseHead& head, std::string_view name, std::string& out) {
  out.clear();
  bool found = false;
  for (const auto& [n, v] : head.headers) {
    if (!equalsIgnoreCase(n, name)) continue;
    if (found) out += ", ";
    out += v;
    found = true;
  }
  return found;
}

bool isBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t'; });
}

}  // namespace

void internEdgeFields(std::vector<std::pair<std::string, std::string>>& fields,
                      const TargetedFields& targets) {
  for (auto& field : fields) {
    if (!targets.own_target.empty() && equalsIgnoreCase(field.first, targets.own_target)) {
      field.first = kStoredOwnTargetField;
    } else if (targets.surrogate_control && equalsIgnoreCase(field.first, "Surrogate-Control")) {
      field.first = kStoredSurrogateControlField;
    }
  }
}

const char* cacheControlSourceName(CacheControlSource source) {
  switch (source) {
    case CacheControlSource::kOwnTarget: return "own-target";
    case CacheControlSource::kCdnCacheControl: return "cdn-cache-control";
    case CacheControlSource::kSurrogateControl: return "surrogate-control";
    case CacheControlSource::kCacheControl: return "cache-control";
  }
  return "cache-control";
}

std::optional<CacheControl> parseTargetedCacheControl(std::string_view value) {
  if (isBlank(value)) return std::nullopt;  // RFC 9213 §2.2: an empty field is ignored
  CacheControl cc;
  SfParser parser(value);
  const bool ok = parser.dictionary(
      [&cc](std::string_view key, const Value& v) { applyTargetedDirective(cc, key, v); });
  if (!ok) return std::nullopt;
  cc.from_targeted_field = true;
  return cc;
}

SelectedCacheControl selectCacheControl(const ResponseHead& head) {
  SelectedCacheControl selected;
  std::string value;
  // RFC 9213 §2.1: the first field on the target list with a valid, non-empty value wins.
  if (joinedField(head, kStoredOwnTargetField, value)) {
    if (std::optional<CacheControl> cc = parseTargetedCacheControl(value)) {
      selected.cc = *cc;
      selected.source = CacheControlSource::kOwnTarget;
      return selected;
    }
  }
  if (joinedField(head, "CDN-Cache-Control", value)) {
    if (std::optional<CacheControl> cc = parseTargetedCacheControl(value)) {
      selected.cc = *cc;
      selected.source = CacheControlSource::kCdnCacheControl;
      return selected;
    }
  }
  // Surrogate-Control (W3C Edge Architecture 1.0) predates Structured Fields: origins write it
  // with the Cache-Control list syntax, so it is read with that parser. Directives targeted at
  // one device ("max-age=60;edge1") are malformed elements there: ignored, except the
  // restrictive ones, which hold (fail safe).
  if (joinedField(head, kStoredSurrogateControlField, value) && !isBlank(value)) {
    selected.cc = CacheControl::parse(value);
    selected.cc.from_targeted_field = true;
    selected.source = CacheControlSource::kSurrogateControl;
    return selected;
  }
  joinedField(head, "Cache-Control", value);
  selected.cc = CacheControl::parse(value);
  selected.source = CacheControlSource::kCacheControl;
  return selected;
}

}  // namespace streamedge::cache

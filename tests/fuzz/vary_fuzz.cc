// libFuzzer target: Vary and the request-field normalisation behind variant keys (cache/vary.h).
// The input is "<Vary value>\n<field name>\n<field value>[\n<more lines of that field>...]".
// Checked: parsing is total and its names are sorted, lower-case, unique and bounded; a
// normalised value normalises to itself (fills send it, and the stored answer's variant is
// computed from what was sent); the variant key depends on normalised values only.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/vary.h"

namespace {

using namespace streamedge::cache;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::vector<std::string_view> splitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos <= text.size() && lines.size() < 16) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string_view> lines = splitLines(text);

  const VarySpec vary = parseVary(lines[0]);
  check(vary.names.size() <= kMaxVaryFields);
  check(std::is_sorted(vary.names.begin(), vary.names.end()));
  check(std::adjacent_find(vary.names.begin(), vary.names.end()) == vary.names.end());
  check((vary.kind == VarySpec::Kind::kFields) == !vary.names.empty());
  for (const std::string& name : vary.names) {
    check(!name.empty() && name != "*");
    for (char c : name) check(!(c >= 'A' && c <= 'Z'));
  }

  if (lines.size() < 3) return 0;
  std::vector<std::pair<std::string, std::string>> fields;
  for (size_t i = 2; i < lines.size(); ++i) fields.emplace_back(std::string(lines[1]), std::string(lines[i]));
  // The same field under each name the edge treats specially, and under its own name.
  for (std::string_view name : {std::string_view("Accept-Encoding"), std::string_view("Accept-Language"),
                                std::string_view("Origin"), lines[1]}) {
    std::vector<std::pair<std::string, std::string>> named;
    for (const auto& f : fields) named.emplace_back(std::string(name), f.second);
    const FieldLineList list(named);
    std::string once;
    const bool present = normalizeField(name, list.fieldLines(), once);
    if (!present) continue;
    const std::vector<std::pair<std::string, std::string>> again_fields = {{std::string(name), once}};
    const FieldLineList again_list(again_fields);
    std::string twice;
    check(normalizeField(name, again_list.fieldLines(), twice));
    check(twice == once);
    // Keys see only normalised values: the raw lines and their normalisation select one variant.
    const VaryNames names = {[&] {
      std::string lower(name);
      for (char& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      return lower;
    }()};
    const CacheKey primary = makeKey("v", "/x", "");
    check(variantKey(primary, names, list) == variantKey(primary, names, again_list));
    check(!(variantKey(primary, names, list) == primary));
  }

  // setVaryFields leaves at most one line per field it sets, and is idempotent.
  std::vector<std::pair<std::string, std::string>> forward = fields;
  const FieldLineList viewer(fields);
  setVaryFields(forward, viewer.fieldLines(), vary.kind == VarySpec::Kind::kFields ? &vary.names : nullptr);
  std::vector<std::pair<std::string, std::string>> forward2 = forward;
  const FieldLineList viewer2(forward);
  setVaryFields(forward2, viewer2.fieldLines(), vary.kind == VarySpec::Kind::kFields ? &vary.names : nullptr);
  check(forward2 == forward);
  return 0;
}

#include "cache/purge_labels.h"

#include <algorithm>

namespace streamedge::cache {

namespace {

bool isSeparator(char c) { return c == ' ' || c == '\t' || c == ','; }

std::string_view fieldValue(const ResponseHead& head, std::string_view name) {
  // The stored names are exact (we wrote them), so no case folding is needed.
  for (const auto& [n, v] : head.headers) {
    if (n == name) return v;
  }
  return {};
}

}  // namespace

void internSurrogateKeys(std::vector<std::pair<std::string, std::string>>& fields) {
  std::vector<std::string_view> keys;
  bool present = false;
  for (const auto& [name, value] : fields) {
    if (!equalsIgnoreCase(name, "Surrogate-Key") && !equalsIgnoreCase(name, "Cache-Tag")) continue;
    present = true;
    std::string_view rest = value;
    while (!rest.empty()) {
      while (!rest.empty() && isSeparator(rest.front())) rest.remove_prefix(1);
      size_t n = 0;
      while (n < rest.size() && !isSeparator(rest[n])) ++n;
      const std::string_view key = rest.substr(0, n);
      rest.remove_prefix(n);
      if (key.empty() || key.size() > kMaxSurrogateKeyBytes || keys.size() >= kMaxSurrogateKeys) {
        continue;
      }
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
    }
  }
  if (!present) return;
  std::string joined;
  for (std::string_view k : keys) {
    if (!joined.empty()) joined += ' ';
    joined += k;
  }
  // `keys` views the fields being erased: `joined` is built first.
  std::erase_if(fields, [](const auto& f) {
    return equalsIgnoreCase(f.first, "Surrogate-Key") || equalsIgnoreCase(f.first, "Cache-Tag") ||
           f.first == kStoredSurrogateKeysField;
  });
  if (!joined.empty()) fields.emplace_back(std::string(kStoredSurrogateKeysField), std::move(joined));
}

void addPurgeLabels(std::vector<std::pair<std::string, std::string>>& fields,
                    std::string_view vhost, std::string_view path) {
  std::erase_if(fields, [](const auto& f) {
    return f.first == kStoredVhostField || f.first == kStoredPathField;
  });
  fields.emplace_back(std::string(kStoredVhostField), std::string(vhost));
  fields.emplace_back(std::string(kStoredPathField), std::string(path));
}

PurgeLabels purgeLabelsOf(const ResponseHead& head) {
  PurgeLabels l;
  l.vhost = fieldValue(head, kStoredVhostField);
  l.path = fieldValue(head, kStoredPathField);
  l.tags = fieldValue(head, kStoredSurrogateKeysField);
  return l;
}

bool hasSurrogateKey(std::string_view tags, std::string_view tag) {
  if (tag.empty()) return false;
  while (!tags.empty()) {
    const size_t space = tags.find(' ');
    if (tags.substr(0, space) == tag) return true;
    if (space == std::string_view::npos) break;
    tags.remove_prefix(space + 1);
  }
  return false;
}

bool PurgeSelector::matches(std::string_view vhost_label, std::string_view path_label,
                            std::string_view tags_label) const {
  switch (kind) {
    case Kind::kHost:
      return !vhost.empty() && vhost_label == vhost;
    case Kind::kPrefix:
      return !vhost.empty() && vhost_label == vhost && !prefix.empty() &&
             path_label.starts_with(prefix);
    case Kind::kTag:
      return (vhost.empty() || vhost_label == vhost) && hasSurrogateKey(tags_label, tag);
  }
  return false;
}

bool PurgeSelector::matches(const ResponseHead& head) const {
  return matches(fieldValue(head, kStoredVhostField), fieldValue(head, kStoredPathField),
                 fieldValue(head, kStoredSurrogateKeysField));
}

}  // namespace streamedge::cache

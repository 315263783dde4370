#include "cache/retention.h"

#include <utility>

namespace streamedge::cache {

RetentionTable::RetentionTable(const conf::Config& config) {
  for (const conf::VhostConfig& v : config.vhosts) {
    if (v.retention.count() > 0) set(v.name, v.retention);
  }
}

void RetentionTable::set(std::string vhost, conf::Millis max_age) {
  if (max_age.count() <= 0) {
    by_vhost_.erase(vhost);
    return;
  }
  by_vhost_[std::move(vhost)] = max_age;
}

conf::Millis RetentionTable::maxAgeOf(std::string_view vhost) const {
  auto it = by_vhost_.find(vhost);
  return it == by_vhost_.end() ? conf::Millis{0} : it->second;
}

}  // namespace streamedge::cache

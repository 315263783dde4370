#include "proxy/listener_table.h"

#include <algorithm>
#include <map>

#include "proxy/listen_socket.h"

namespace streamedge::proxy {

std::string listenerKey(const std::string& address) {
  sockaddr_storage parsed;
  socklen_t len = 0;
  if (!parseSocketAddress(address, parsed, len)) return address;
  return socketAddressText(parsed);
}

size_t ListenerDiff::added() const {
  return static_cast<size_t>(std::count(kept_from.begin(), kept_from.end(), std::nullopt));
}

ListenerTable::ListenerTable(size_t slots) : slots_(std::max<size_t>(slots, 1)) {}

void ListenerTable::start(const std::vector<std::string>& addresses) {
  current_.clear();
  retired_.clear();
  next_id_ = 0;
  for (const std::string& address : addresses) current_.push_back(make(address));
}

ListenerDiff ListenerTable::diff(const std::vector<std::string>& addresses) const {
  // Running listeners by key, in config order; each new occurrence takes the next one.
  std::map<std::string, std::vector<size_t>> running;
  for (size_t i = 0; i < current_.size(); ++i) running[current_[i].key].push_back(i);
  std::map<std::string, size_t> taken;
  ListenerDiff d;
  std::vector<bool> kept(current_.size(), false);
  for (const std::string& address : addresses) {
    const std::string key = listenerKey(address);
    const auto it = running.find(key);
    size_t& n = taken[key];
    if (it != running.end() && n < it->second.size()) {
      const size_t index = it->second[n++];
      kept[index] = true;
      d.kept_from.emplace_back(index);
    } else {
      d.kept_from.emplace_back(std::nullopt);
    }
  }
  for (size_t i = 0; i < current_.size(); ++i) {
    if (!kept[i]) d.removed.push_back(i);
  }
  return d;
}

void ListenerTable::commit(const std::vector<std::string>& addresses, const ListenerDiff& diff,
                           const ActiveGauge& active) {
  forgetDrained(active);
  for (size_t index : diff.removed) {
    if (index < current_.size()) retired_.push_back(current_[index]);
  }
  // Slots shared with others are nobody's to reserve (see forgetDrained).
  std::erase_if(retired_, [&](const ListenerEntry& e) { return e.slot == sharedSlot(); });
  // Kept entries go in first, so that new ones are made against every slot and label in use.
  const size_t running = current_.size();
  auto keptIndex = [&](size_t i) -> std::optional<size_t> {
    if (i >= diff.kept_from.size() || !diff.kept_from[i] || *diff.kept_from[i] >= running) {
      return std::nullopt;
    }
    return diff.kept_from[i];
  };
  std::vector<ListenerEntry> previous = std::move(current_);
  current_.clear();
  for (size_t i = 0; i < addresses.size(); ++i) {
    if (auto k = keptIndex(i)) current_.push_back(previous[*k]);
  }
  std::vector<ListenerEntry> next;
  next.reserve(addresses.size());
  for (size_t i = 0; i < addresses.size(); ++i) {
    if (auto k = keptIndex(i)) {
      next.push_back(previous[*k]);
    } else {
      ListenerEntry entry = make(addresses[i]);
      current_.push_back(entry);
      next.push_back(std::move(entry));
    }
  }
  current_ = std::move(next);
}

void ListenerTable::forgetDrained(const ActiveGauge& active) {
  std::erase_if(retired_, [&](const ListenerEntry& e) {
    return e.slot == sharedSlot() || !active || active(e.slot) == 0;
  });
}

std::string ListenerTable::slotLabel(size_t slot) const {
  const ListenerEntry* holder = nullptr;
  size_t holders = 0;
  for (const auto* list : {&current_, &retired_}) {
    for (const ListenerEntry& e : *list) {
      if (e.slot != slot) continue;
      holder = &e;
      ++holders;
    }
  }
  if (holders == 0) return "";
  return holders == 1 ? holder->label : "other";
}

ListenerEntry ListenerTable::make(const std::string& address) {
  ListenerEntry e;
  e.id = next_id_++;
  e.key = listenerKey(address);
  e.label = labelTaken(address) ? address + "#" + std::to_string(e.id) : address;
  e.slot = freeSlot();
  return e;
}

size_t ListenerTable::freeSlot() const {
  for (size_t slot = 0; slot < sharedSlot(); ++slot) {
    bool used = false;
    for (const auto* list : {&current_, &retired_}) {
      for (const ListenerEntry& e : *list) used = used || e.slot == slot;
    }
    if (!used) return slot;
  }
  return sharedSlot();
}

bool ListenerTable::labelTaken(std::string_view label) const {
  for (const auto* list : {&current_, &retired_}) {
    for (const ListenerEntry& e : *list) {
      if (e.label == label) return true;
    }
  }
  return false;
}

}  // namespace streamedge::proxy

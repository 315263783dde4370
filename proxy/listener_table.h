// ListenerTable: who the viewer listeners are across reloads. Each listener gets an identity at
// start or when a reload adds it — an id unique for the process's life, a metric label and a
// metric slot — and keeps it while reloads keep its address, whatever its position in the
// config. So removing listener 0 shifts neither the others' sockets nor their TLS contexts
// nor their metric series.
//
// A reload is planned with diff() (by address: kept, added, removed) and, once the added
// addresses are bound, made current with commit(). A removed listener is retired: its label
// and slot stay reserved while its connections drain (the slot's gauge is read through a
// callback), so its series stays exported and the slot is not handed to a new listener whose
// gauge would then count someone else's connections.
//
// Pure bookkeeping: no sockets, no threads. Main thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace streamedge::proxy {

// The identity of a listener address: the canonical text of the parsed address
// ("127.0.0.1:8080", "[::1]:443"; "[0:0::1]:443" and "[::1]:443" are one), or the text as is
// when it does not parse (the config check refuses those anyway).
std::string listenerKey(const std::string& address);

struct ListenerEntry {
  uint64_t id = 0;    // unique for the process's life; at start, the config position
  std::string key;    // listenerKey(address)
  std::string label;  // metric label: the configured address, "#<id>" added when taken
  size_t slot = 0;    // metric slot; the last one is shared by listeners past the others
};

// What a reload changes, by address. A repeated address (e.g. "127.0.0.1:0" twice) matches
// by occurrence: the first in the new config keeps the first running one, and so on.
struct ListenerDiff {
  // Per listener of the new config, in its order: the index into current() of the running
  // listener it keeps, or nullopt when it is new and must be bound.
  std::vector<std::optional<size_t>> kept_from;
  std::vector<size_t> removed;  // indexes into current() the new config no longer has

  size_t added() const;
  bool changesSockets() const { return added() > 0 || !removed.empty(); }
};

class ListenerTable {
 public:
  // Connections open now in metric slot `slot` (summed over the workers).
  using ActiveGauge = std::function<int64_t(size_t slot)>;

  // `slots`: metric slots available (at least 1; the last is the shared overflow slot).
  explicit ListenerTable(size_t slots);

  // The listeners of the config at start, in its order (ids 0, 1, ...).
  void start(const std::vector<std::string>& addresses);
  ListenerDiff diff(const std::vector<std::string>& addresses) const;
  // Makes `addresses` (the list `diff` was computed from) current: kept listeners keep their
  // entry, added ones get a new id, a free slot and a label, removed ones are retired. Retired
  // listeners whose gauge reads 0 are forgotten first (their slots become free again).
  void commit(const std::vector<std::string>& addresses, const ListenerDiff& diff,
              const ActiveGauge& active);

  // In the order of the config last started or committed.
  const std::vector<ListenerEntry>& current() const { return current_; }
  // Removed by a reload and perhaps still draining (see forgetDrained).
  const std::vector<ListenerEntry>& retired() const { return retired_; }
  // Drops retired listeners whose slot gauge reads 0, and any in the shared slot (whose gauge
  // is not theirs alone).
  void forgetDrained(const ActiveGauge& active);

  // The label to export for `slot`: the one listener holding it (current or retired), "other"
  // when several share it, "" when it is free.
  std::string slotLabel(size_t slot) const;
  size_t slots() const { return slots_; }
  size_t sharedSlot() const { return slots_ - 1; }

 private:
  ListenerEntry make(const std::string& address);
  size_t freeSlot() const;
  bool labelTaken(std::string_view label) const;

  size_t slots_;
  uint64_t next_id_ = 0;
  std::vector<ListenerEntry> current_;
  std::vector<ListenerEntry> retired_;
};

}  // namespace streamedge::proxy

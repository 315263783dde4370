// Who owns an object in a site of edges: weighted rendezvous hashing (highest random weight)
// over the peers, with a bounded-load choice on top.
//
// Every peer ranks the peers for a key the same way: score(peer, key) = -weight / ln(u), where u
// in (0,1) comes from xxh3 of the key seeded with a hash of the peer's address. The highest score
// owns the key. Nothing depends on the order of the peer list, so two edges whose configs list
// the same peers in another order agree; a peer that leaves moves only its own keys (each to the
// peer ranked next for that key), and a peer that joins takes only the keys it now ranks first
// for: the least movement any scheme can have. A lookup costs one hash per peer, and it is made
// only on a local miss, so O(peers) is nothing beside the fetch it decides.
//
// Why not a ring of virtual nodes or a Maglev table: both need a table rebuilt on every change
// and give a share per peer that depends on the table size; jump hashing cannot remove a peer
// from the middle. The unit tests show the shares and the movement on 200k keys.
//
// Bounded loads: choose() walks the key's ranking and takes the first peer that is usable and
// whose load is below max(floor, ceil(c * (total load + 1) / usable peers)), so one peer gets at
// most about c times the mean even when the hash is lopsided for the keys in flight. The floor
// keeps a lightly loaded site on its owners: below it a spill would only cost a second origin
// fetch (the peer ranked next fetches for itself) and buy nothing. With loads counted as
// this edge's fills in flight per peer, and a fill shared by every viewer of one object, a herd
// on one object is one load unit: the owner still gets it.
//
// Immutable after make(); thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cache/cache_key.h"
#include "conf/status.h"

namespace streamedge::proxy {

struct PeerSpec {
  std::string address;  // canonical "host:port" or "[v6]:port": the identity every edge hashes
  uint32_t weight = 1;  // 1..1000: a peer of weight 2 owns about twice the keys of weight 1
};

class PeerRing {
 public:
  static constexpr size_t kMaxPeers = 256;

  // kInvalid: no peers, more than kMaxPeers, an empty or repeated address, a weight of 0 or
  // above 1000.
  static Result<PeerRing> make(std::vector<PeerSpec> peers);

  size_t size() const { return peers_.size(); }
  const PeerSpec& peer(size_t index) const { return peers_[index]; }
  // Index of `address`, or -1.
  int find(std::string_view address) const;

  // The owner of `key`: the index of its highest-ranked peer.
  size_t owner(const cache::CacheKey& key) const;
  // The first out.size() peers (at most size()) in rank order for `key`; returns how many.
  size_t ranking(const cache::CacheKey& key, std::span<uint16_t> out) const;

  // The bounded-load choice: the first peer in `key`'s ranking with usable[i] and
  // load[i] < max(floor, ceil(c * (sum of usable loads + 1) / usable count)). -1 when none is
  // usable. `usable` and `load` have size() entries; `c` > 1 (1.25 is the usual choice).
  int choose(const cache::CacheKey& key, std::span<const bool> usable,
             std::span<const uint32_t> load, double c, uint32_t floor) const;

 private:
  explicit PeerRing(std::vector<PeerSpec> peers);
  double score(const cache::CacheKey& key, size_t index) const;

  std::vector<PeerSpec> peers_;
  std::vector<uint64_t> seeds_;  // xxh3-64 of each address
};

}  // namespace streamedge::proxy

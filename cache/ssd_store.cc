#include "cache/ssd_store.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <utility>

#include "cache/ssd_format.h"

namespace streamedge::cache {

using ssd::EntryHeader;
using ssd::EntryMeta;
using ssd::RegionHeader;

namespace {

constexpr uint64_t kMaxRegionBytes = 1ull << 30;  // offsets inside a region are 32-bit
constexpr int kLogLinesPerWindow = 5;
constexpr auto kLogWindow = std::chrono::seconds(10);

int64_t toSeconds(WallTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
WallTime fromSeconds(int64_t s) { return WallTime(std::chrono::seconds(s)); }
int64_t steadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool keyLess(const CacheKey& a, const CacheKey& b) {
  return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
}

std::string bytesText(uint64_t n) {
  if (n >= (1ull << 20) && n % (1ull << 20) == 0) return std::to_string(n >> 20) + "MiB";
  if (n >= (1ull << 10) && n % (1ull << 10) == 0) return std::to_string(n >> 10) + "KiB";
  return std::to_string(n) + "B";
}

// The purge labels of a stored head (null when it has none).
std::shared_ptr<const PurgeLabels> labelsOf(const ResponseHead& head) {
  PurgeLabels l = purgeLabelsOf(head);
  if (l.empty()) return nullptr;
  return std::make_shared<const PurgeLabels>(std::move(l));
}

}  // namespace

ObjectRef makeCompleteObject(const SsdHit& hit) {
  ObjectRef object = ObjectRef::make(hit.key);
  object->publishHead(hit.head, hit.freshness, /*shareable=*/true, hit.body);
  object->markComplete();
  return object;
}

// ---------------------------------------------------------------------------------------------
// Opening and rebuilding

Result<std::unique_ptr<SsdStore>> SsdStore::open(std::unique_ptr<Device> device,
                                                 SsdStoreOptions options) {
  const uint64_t rb = options.region_bytes;
  if (rb == 0 || rb % device->ioAlignment() != 0 || rb > kMaxRegionBytes ||
      rb < sizeof(RegionHeader) + 2 * sizeof(EntryHeader)) {
    return Status(Code::kInvalid, Source::kInternal, "bad SSD region size");
  }
  const uint64_t count = device->size() / rb;
  if (count < 2 || count > UINT32_MAX) {
    return Status(Code::kInvalid, Source::kInternal, "SSD store must hold at least 2 regions");
  }
  const bool ephemeral = options.encrypt && !options.key;
  if (ephemeral) {
    auto key = randomStoreKey();
    if (!key.isOk()) return key.status();
    options.key = *key;
    wipeStoreKey(*key);
  }
  IoEngineOptions eo;
  eo.backend = options.writer_backend;
  eo.queue_depth = 4;
  eo.threads = 1;
  eo.log = options.log;
  auto engine = makeIoEngine(*device, eo);
  if (!engine.isOk()) return engine.status();

  std::unique_ptr<SsdStore> store(new SsdStore(std::move(device), std::move(options),
                                               static_cast<uint32_t>(count), ephemeral));
  store->writer_engine_ = std::move(*engine);
  if (!store->options_.background_rebuild) store->rebuild();
  store->writer_ = std::thread([s = store.get()] { s->writerLoop(); });
  return store;
}

SsdStore::SsdStore(std::unique_ptr<Device> device, SsdStoreOptions options, uint32_t region_count,
                   bool ephemeral_key)
    : device_(std::move(device)),
      options_(std::move(options)),
      region_bytes_(options_.region_bytes),
      region_count_(region_count),
      encrypt_(options_.encrypt),
      ephemeral_key_(ephemeral_key),
      region_seq_(new std::atomic<uint64_t>[region_count]),
      buf_(region_bytes_, device_->ioAlignment()),
      region_keys_(region_count) {
  for (uint32_t r = 0; r < region_count_; ++r) region_seq_[r].store(0, std::memory_order_relaxed);
  if (encrypt_) {
    cipher_ = std::make_shared<const EntryCipher>(*options_.key);
    key_check_ = keyCheckValue(*options_.key);
    if (ephemeral_key_) {
      // Data keys wrapped under a key that dies with this process are useless in a file; one
      // left by an earlier run must not outlive purges this run makes (see ssd_store.h).
      if (!options_.keyring_path.empty() && ::unlink(options_.keyring_path.c_str()) == 0 &&
          options_.log) {
        options_.log("ephemeral store key: removed the keyring " + options_.keyring_path +
                     " of an earlier run (its entries were unreadable to this run anyway)");
      }
      keyring_ = std::make_unique<SsdKeyring>(*options_.key, "", options_.log);
    } else if (!options_.keyring_path.empty()) {
      keyring_ = std::make_unique<SsdKeyring>(*options_.key, options_.keyring_path, options_.log);
    }
  }
  // The cipher keeps the one copy it needs.
  if (options_.key) wipeStoreKey(*options_.key);
  options_.key.reset();
}

SsdStore::~SsdStore() {
  {
    std::lock_guard<std::mutex> lock(q_mu_);
    stopping_ = true;
  }
  q_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  writer_engine_.reset();
}

bool SsdStore::rebuild() {
  const auto started = std::chrono::steady_clock::now();
  if (ephemeral_key_) {
    // Nothing from an earlier run is readable: a checkpoint of it is useless (and stale).
    if (!options_.checkpoint_path.empty()) ssd::removeCheckpointFile(options_.checkpoint_path);
    if (options_.log) {
      options_.log("no cache.ssd.key_file: the store is encrypted with an ephemeral key; "
                   "contents from earlier runs are unreadable and it starts empty");
    }
    std::lock_guard<std::mutex> lock(rebuild_mu_);
    removed_while_rebuilding_.clear();
    ready_.store(true, std::memory_order_release);
    return true;
  }
  struct FoundEntry {
    CacheKey key;
    Location loc;
    bool tombstone = false;
    std::shared_ptr<const VaryNames> names;  // a variant's (loc.primary set)
  };
  struct Found {
    uint64_t seq;
    uint32_t region;
    std::vector<FoundEntry> entries;  // in write order
  };
  std::vector<Found> found;
  AlignedBuffer scan(region_bytes_, device_->ioAlignment());
  uint64_t other_key = 0, other_mode = 0, torn = 0, old_format = 0;
  // Variants whose stored head does not say which fields they vary on: written by no version
  // of ours, but never indexed (they could not be tied to their URL's rule) and removed.
  std::vector<CacheKey> unusable_variants;
  // Reads and verifies region `r`: its entries in write order, or nothing when it was never
  // written, is torn, or belongs to another key, mode or format.
  const auto scanRegion = [&](uint32_t r) -> std::optional<Found> {
    counters_.rebuild_regions_scanned.fetch_add(1, std::memory_order_relaxed);
    if (!device_->read(uint64_t{r} * region_bytes_, scan.data(), region_bytes_).isOk()) {
      counters_.rebuild_skipped_regions.fetch_add(1, std::memory_order_relaxed);
      logLimited("rebuild: cannot read region " + std::to_string(r));
      return std::nullopt;
    }
    RegionHeader h;
    std::memcpy(&h, scan.data(), sizeof(h));
    if (h.magic != ssd::kRegionMagic) return std::nullopt;  // never written (or torn at its start)
    const bool readable_version =
        h.version >= ssd::kOldestReadableVersion && h.version <= ssd::kFormatVersion;
    if (!readable_version && h.version != 0 && h.version < ssd::kFormatVersion &&
        h.checksum == ssd::regionHeaderChecksum(h)) {
      // Written by an older version (see ssd_format.h): left out, reused in ring order.
      ++old_format;
      counters_.rebuild_skipped_regions.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    const bool header_ok = readable_version &&
                           h.header_bytes == sizeof(RegionHeader) &&
                           h.checksum == ssd::regionHeaderChecksum(h) &&
                           h.region_bytes == region_bytes_ && h.used_bytes <= region_bytes_ &&
                           h.used_bytes >= sizeof(RegionHeader) && h.seq != 0;
    if (!header_ok) {
      ++torn;
      counters_.rebuild_skipped_regions.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    const bool region_encrypted = (h.flags & ssd::kRegionFlagEncrypted) != 0;
    if (region_encrypted != encrypt_) {
      // Written with the other `encrypt` setting. Never served: after switching encryption on,
      // plaintext regions stay unread until reclaimed.
      ++other_mode;
      counters_.rebuild_skipped_regions.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    if (encrypt_ && std::memcmp(h.key_check, key_check_.data(), key_check_.size()) != 0) {
      ++other_key;
      counters_.rebuild_skipped_regions.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
    Found f{h.seq, r, {}};
    size_t off = sizeof(RegionHeader);
    for (uint32_t n = 0; n < h.entry_count && off < h.used_bytes; ++n) {
      EntryView view;
      const char* why = "";
      const Verify v = verifyEntry(scan.data() + off, h.used_bytes - off, &view, &why);
      if (v == Verify::kBadHeader) {
        counters_.rebuild_rejected_entries.fetch_add(h.entry_count - n, std::memory_order_relaxed);
        break;
      }
      if (v == Verify::kNoKey) {
        counters_.shredded_entries.fetch_add(1, std::memory_order_relaxed);
        off += view.entry_bytes;
        continue;
      }
      if (v == Verify::kBadContent) {
        counters_.rebuild_rejected_entries.fetch_add(1, std::memory_order_relaxed);
        off += view.entry_bytes;
        continue;
      }
      if (view.tombstone) {
        f.entries.push_back({view.key, Location{}, true, nullptr});
        off += view.entry_bytes;
        continue;
      }
      ResponseHead head;
      Freshness fr;
      if (!ssd::decodeHead(view.head, view.head_bytes, &head, &fr)) {
        counters_.rebuild_rejected_entries.fetch_add(1, std::memory_order_relaxed);
        off += view.entry_bytes;
        continue;
      }
      Location loc;
      loc.region = r;
      loc.offset = static_cast<uint32_t>(off);
      loc.entry_bytes = view.entry_bytes;
      loc.seq = h.seq;
      loc.checksum = view.checksum;
      loc.body_bytes = view.body_bytes;
      loc.validators = head.find("ETag") || head.find("Last-Modified");
      loc.primary = view.primary;
      loc.labels = labelsOf(head);
      loc.key_id = view.key_id;
      std::shared_ptr<const VaryNames> names;
      if (!(view.primary == CacheKey{})) {
        VarySpec vary = varyOf(head);
        if (vary.kind != VarySpec::Kind::kFields) {
          unusable_variants.push_back(view.key);
          off += view.entry_bytes;
          continue;
        }
        loc.names = internNames(std::move(vary.names));
        names = namesOf(loc.names);
      }
      f.entries.push_back({view.key, summarize(fr, loc), false, std::move(names)});
      off += view.entry_bytes;
    }
    return f;
  };
  const auto closing = [&] {
    std::lock_guard<std::mutex> lock(q_mu_);
    return stopping_;
  };
  std::optional<ssd::Checkpoint> checkpoint = loadCheckpoint();
  if (checkpoint) {
    // The regions the checkpoint describes hold what it saw until the scan below (or, later, a
    // reclaim) says otherwise: one of its entries is good while its region's sequence number
    // is the entry's.
    for (const ssd::CheckpointEntry& e : checkpoint->entries) {
      std::atomic<uint64_t>& seq = region_seq_[e.region];
      if (e.seq > seq.load(std::memory_order_relaxed)) seq.store(e.seq, std::memory_order_relaxed);
    }
    // ...then the regions written after it, in ring order from where the writer was: each
    // replaces what the checkpoint said of its region.
    uint32_t r = checkpoint->resume_region;
    for (uint32_t n = 0; n < region_count_; ++n, r = (r + 1) % region_count_) {
      if (n % 16 == 0 && closing()) return false;
      std::optional<Found> f = scanRegion(r);
      if (!f) {
        // Unreadable, or torn where the writer went on after the checkpoint: what the
        // checkpoint lists there may be half overwritten. Neither answered nor indexed.
        region_seq_[r].store(0, std::memory_order_relaxed);
        break;
      }
      if (f->seq < checkpoint->resume_seq) break;
      found.push_back(std::move(*f));
    }
  } else {
    for (uint32_t r = 0; r < region_count_; ++r) {
      if (r % 16 == 0 && closing()) return false;  // closing during a background rebuild
      if (std::optional<Found> f = scanRegion(r)) found.push_back(std::move(*f));
    }
  }
  // Oldest first, so that the newest copy of a key wins and a tombstone deletes what came
  // before it.
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.seq < b.seq; });
  if (!checkpoint && options_.before_rebuild_apply) options_.before_rebuild_apply();
  {
    std::lock_guard<std::mutex> lock(q_mu_);
    if (stopping_) return false;
  }
  // Held until ready_ is set (with a checkpoint: until lookups are answered from it): a
  // remove() meanwhile waits, then finds the rebuilt index (or the checkpoint); one before it
  // is in removed_while_rebuilding_ and is left out here.
  std::unique_lock<std::mutex> apply_lock(rebuild_mu_);
  std::sort(removed_while_rebuilding_.begin(), removed_while_rebuilding_.end(), keyLess);
  const auto removed = [&](const CacheKey& k) {
    return std::binary_search(removed_while_rebuilding_.begin(), removed_while_rebuilding_.end(),
                              k, keyLess);
  };
  // Removed meanwhile, with a copy on the device; a variant whose URL was removed (purged)
  // meanwhile goes with it.
  std::vector<CacheKey> withheld = std::move(unusable_variants);
  std::unique_ptr<CheckpointIndex> ci;
  if (checkpoint) {
    // The checkpoint's entries stay where decodeCheckpoint() put them (sorted by key): no copy,
    // no allocation per entry.
    ci = std::make_unique<CheckpointIndex>();
    const size_t n = checkpoint->entries.size();
    ci->cp = std::move(*checkpoint);
    ci->flags = std::make_unique<uint8_t[]>(n);  // zero: live
    ci->name_ids.assign(ci->cp.names.size(), 0);
    for (size_t k = 1; k < ci->cp.names.size(); ++k) ci->name_ids[k] = internNames(ci->cp.names[k]);
    std::array<size_t, kShards> per_shard{};
    for (const ssd::CheckpointEntry& e : ci->cp.entries) ++per_shard[e.key.lo & (kShards - 1)];
    for (size_t s = 0; s < kShards; ++s) ci->by_shard[s].reserve(per_shard[s]);
    for (uint32_t i = 0; i < n; ++i) {
      const ssd::CheckpointEntry& e = ci->cp.entries[i];
      ci->by_shard[e.key.lo & (kShards - 1)].push_back(i);
      if (!keyKnown(e.key_id)) {
        // Its data key was destroyed (a vhost purge after the checkpoint was written, or a
        // lost keyring): unreadable, so neither answered nor indexed.
        ci->flags[i] = kCkptDead;
        counters_.shredded_entries.fetch_add(1, std::memory_order_relaxed);
      } else if (removed(e.key) || (!(e.primary == CacheKey{}) && removed(e.primary))) {
        ci->flags[i] = kCkptDead;
        withheld.push_back(e.key);
      }
    }
  }
  for (Found& f : found) {
    region_seq_[f.region].store(f.seq, std::memory_order_release);
    for (const FoundEntry& e : f.entries) {
      if (ci) {
        // A copy or a tombstone written after the checkpoint: its entry there is old.
        if (const ssd::CheckpointEntry* old = ssd::findCheckpointEntry(ci->cp.entries, e.key)) {
          ci->flags[static_cast<size_t>(old - ci->cp.entries.data())] |= kCkptDead;
        }
      }
      if (!e.tombstone &&
          (removed(e.key) || (!(e.loc.primary == CacheKey{}) && removed(e.loc.primary)))) {
        withheld.push_back(e.key);
        continue;
      }
      Shard& shard = shardFor(e.key);
      std::lock_guard<std::mutex> lock(shard.mu);
      if (e.tombstone) {
        if (shard.map.erase(e.key) > 0) {
          counters_.rebuild_tombstones.fetch_add(1, std::memory_order_relaxed);
        }
        continue;
      }
      region_keys_[f.region].push_back(e.key);
      shard.map[e.key] = e.loc;
    }
    next_seq_ = f.seq + 1;
    next_region_ = (f.region + 1) % region_count_;
  }
  if (checkpoint && found.empty()) {
    // Nothing written after the checkpoint: the writer goes on where it was then.
    next_region_ = ci->cp.resume_region;
    next_seq_ = ci->cp.resume_seq;
    for (const ssd::CheckpointEntry& e : ci->cp.entries) next_seq_ = std::max(next_seq_, e.seq + 1);
  }
  // The variants that made it into the index (the newest copy of each), oldest write first:
  // handed to the RAM tier's index, which makes its URLs' vary markers from them.
  std::vector<SsdVariant> variants;
  uint64_t ckpt_live = 0;
  if (ci) {
    // Not published yet: no lock needed for the flags.
    uint64_t live_bytes = 0;
    std::vector<uint32_t> ckpt_variants;
    for (uint32_t i = 0; i < ci->cp.entries.size(); ++i) {
      if (!checkpointLiveLocked(*ci, i)) continue;
      const ssd::CheckpointEntry& e = ci->cp.entries[i];
      ++ckpt_live;
      live_bytes += e.entry_bytes;
      if (!(e.primary == CacheKey{})) ckpt_variants.push_back(i);
    }
    std::sort(ckpt_variants.begin(), ckpt_variants.end(), [&](uint32_t a, uint32_t b) {
      const ssd::CheckpointEntry& x = ci->cp.entries[a];
      const ssd::CheckpointEntry& y = ci->cp.entries[b];
      return x.seq != y.seq ? x.seq < y.seq : x.offset < y.offset;
    });
    variants.reserve(ckpt_variants.size());
    for (const uint32_t i : ckpt_variants) {
      const ssd::CheckpointEntry& e = ci->cp.entries[i];
      const uint32_t id = e.names != 0 ? ci->name_ids[e.names] : 0;
      variants.push_back({e.key, e.primary, id != 0 ? namesOf(id) : nullptr});
    }
    ckpt_pending_.store(ckpt_live, std::memory_order_relaxed);
    ckpt_pending_bytes_.store(live_bytes, std::memory_order_relaxed);
  }
  for (const Found& f : found) {
    for (const FoundEntry& e : f.entries) {
      if (e.tombstone || e.loc.primary == CacheKey{}) continue;
      Shard& shard = shardFor(e.key);
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.map.find(e.key);
      if (it == shard.map.end() || it->second.region != e.loc.region ||
          it->second.seq != e.loc.seq || it->second.offset != e.loc.offset) {
        continue;  // a newer copy (or a tombstone) came after this one
      }
      variants.push_back({e.key, e.loc.primary, e.names});
    }
  }
  counters_.rebuilt_variants.store(variants.size(), std::memory_order_relaxed);
  if (!variants.empty()) {
    // Set before ready_ (and before lookups are answered from the checkpoint): a remove()
    // from here on waits for the hand-over, or takes a URL's variants out of the list with it.
    std::lock_guard<std::mutex> lock(variants_mu_);
    rebuilt_variants_ = std::move(variants);
    variants_pending_.store(true, std::memory_order_release);
  }
  const auto queueTombstones = [&] {
    if (withheld.empty()) return;
    // Their copies stay on the device: the tombstones keep them out of the next rebuild.
    std::sort(withheld.begin(), withheld.end(), keyLess);
    withheld.erase(std::unique(withheld.begin(), withheld.end()), withheld.end());
    std::lock_guard<std::mutex> lock(q_mu_);
    for (const CacheKey& key : withheld) {
      Job tombstone;
      tombstone.key = key;
      tombstone.tombstone = true;
      jobs_.push_back(std::move(tombstone));
    }
  };
  const auto sinceStart = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };
  if (ci) {
    // From here on lookups that miss the index are answered from the checkpoint's entries
    // while they are moved into it; remove() marks them (removed_while_rebuilding_ is done).
    removed_while_rebuilding_.clear();
    queueTombstones();
    ckpt_serving_started_ms_.store(steadyMillis(), std::memory_order_relaxed);
    ckpt_.store(ci.get(), std::memory_order_release);
    if (options_.log) {
      char took[32];
      std::snprintf(took, sizeof took, "%.2f s", sinceStart());
      options_.log("answering from the index checkpoint after " + std::string(took) + ": " +
                   std::to_string(ckpt_live) + " objects (" +
                   std::to_string(counters_.rebuild_regions_scanned.load(std::memory_order_relaxed)) +
                   " regions written after it scanned); building the index meanwhile");
    }
    apply_lock.unlock();
    deliverVariants();
    if (options_.before_rebuild_apply) options_.before_rebuild_apply();
    // A close meanwhile does not stop this: it is bounded (no I/O), and once the store has
    // answered from the checkpoint the writer must know the whole index before it writes
    // (a purge's tombstone, the checkpoint at close).
    applyCheckpoint(*ci);
    apply_lock.lock();
  }
  uint64_t objects = 0;
  for (Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    objects += s.map.size();
  }
  counters_.rebuilt_objects.store(objects, std::memory_order_relaxed);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  rebuild_ms_.store(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(),
                    std::memory_order_relaxed);
  removed_while_rebuilding_.clear();
  ready_.store(true, std::memory_order_release);
  if (ci) {
    ckpt_.store(nullptr, std::memory_order_release);
    ckpt_pending_.store(0, std::memory_order_relaxed);
    ckpt_pending_bytes_.store(0, std::memory_order_relaxed);
    ckpt_serving_ms_.store(steadyMillis() - ckpt_serving_started_ms_.load(std::memory_order_relaxed),
                           std::memory_order_relaxed);
  } else {
    queueTombstones();
  }
  if (options_.log) {
    char took[32];
    std::snprintf(took, sizeof took, " in %.1f s", std::chrono::duration<double>(elapsed).count());
    std::string line = "rebuilt the index: " + std::to_string(objects) + " objects from " +
                       std::to_string(found.size()) + " regions" + took;
    const uint64_t scanned = counters_.rebuild_regions_scanned.load(std::memory_order_relaxed);
    if (checkpoint) {
      line += " (from the checkpoint, " + std::to_string(scanned) +
              " regions written after it scanned)";
    } else {
      line += " (" + std::to_string(scanned) + " regions scanned)";
    }
    const uint64_t rejected = counters_.rebuild_rejected_entries.load(std::memory_order_relaxed);
    if (rejected) line += ", " + std::to_string(rejected) + " damaged entries left out";
    const uint64_t shredded = counters_.shredded_entries.load(std::memory_order_relaxed);
    if (shredded) {
      line += ", " + std::to_string(shredded) +
              " entries sealed with destroyed data keys left out";
    }
    const uint64_t purged = counters_.rebuild_tombstones.load(std::memory_order_relaxed);
    if (purged) line += ", " + std::to_string(purged) + " removed copies left out";
    if (torn) line += ", " + std::to_string(torn) + " regions with a bad header left out";
    if (other_key) line += ", " + std::to_string(other_key) + " regions written under another key";
    if (old_format) {
      line += ", " + std::to_string(old_format) +
              " regions of an older format version left out (refilled as they are reused)";
    }
    const uint64_t nvariants = counters_.rebuilt_variants.load(std::memory_order_relaxed);
    if (nvariants) line += ", " + std::to_string(nvariants) + " of them variants of varying URLs";
    if (other_mode) {
      line += ", " + std::to_string(other_mode) + " regions written with encrypt = " +
              (encrypt_ ? "false" : "true") + " left out";
    }
    options_.log(line);
  }
  apply_lock.unlock();
  if (ci) {
    // Every lookup that loaded ckpt_ did so under a shard lock and is done with it once that
    // lock is free: after one pass over the shard locks nobody can hold the array any more.
    for (Shard& s : shards_) {
      std::lock_guard<std::mutex> lock(s.mu);
    }
    ci.reset();
  } else {
    deliverVariants();
  }
  return true;
}

std::optional<size_t> SsdStore::checkpointEntryLocked(const CacheKey& key,
                                                      CheckpointIndex** out) const {
  CheckpointIndex* ci = ckpt_.load(std::memory_order_acquire);
  if (!ci) return std::nullopt;
  const ssd::CheckpointEntry* e = ssd::findCheckpointEntry(ci->cp.entries, key);
  if (!e) return std::nullopt;
  const size_t i = static_cast<size_t>(e - ci->cp.entries.data());
  if (!checkpointLiveLocked(*ci, i) || !keyKnown(e->key_id)) return std::nullopt;
  *out = ci;
  return i;
}

bool SsdStore::checkpointLiveLocked(const CheckpointIndex& ci, size_t i) const {
  // The rule for answering from the checkpoint: not removed, dropped or superseded by a later
  // copy or tombstone (kCkptDead), not in the index already (kCkptApplied: the index answers),
  // and its region still holds what the checkpoint saw: a region the scan found rewritten
  // after the checkpoint, or reclaimed since, has another sequence number.
  const ssd::CheckpointEntry& e = ci.cp.entries[i];
  return (ci.flags[i] & (kCkptDead | kCkptApplied)) == 0 &&
         region_seq_[e.region].load(std::memory_order_acquire) == e.seq;
}

void SsdStore::retireCheckpointEntryLocked(CheckpointIndex& ci, size_t i, uint8_t flag) {
  if (checkpointLiveLocked(ci, i)) {
    // Counted as indexed (stats) since lookups were first answered from the checkpoint.
    ckpt_pending_.fetch_sub(1, std::memory_order_relaxed);
    ckpt_pending_bytes_.fetch_sub(ci.cp.entries[i].entry_bytes, std::memory_order_relaxed);
  }
  ci.flags[i] |= flag;
}

SsdStore::Location SsdStore::locationOf(const CheckpointIndex& ci, size_t i) const {
  Location loc = entryLocation(ci, i);
  loc.invalidated = loc.invalidated || (ci.flags[i] & kCkptInvalidated) != 0;
  loc.hit = (ci.flags[i] & kCkptHit) != 0;
  return loc;
}

SsdStore::Location SsdStore::entryLocation(const CheckpointIndex& ci, size_t i) {
  const ssd::CheckpointEntry& e = ci.cp.entries[i];
  Location loc;
  loc.region = e.region;
  loc.offset = e.offset;
  loc.entry_bytes = e.entry_bytes;
  loc.seq = e.seq;
  loc.checksum = e.checksum;
  loc.body_bytes = e.body_bytes;
  loc.fresh_until_s = e.fresh_until_s;
  loc.usable_until_s = e.usable_until_s;
  loc.stored_at_s = e.stored_at_s;
  loc.validators = (e.validators & ssd::kCheckpointValidators) != 0;
  loc.invalidated = (e.validators & ssd::kCheckpointInvalidated) != 0;
  loc.primary = e.primary;
  loc.key_id = e.key_id;
  loc.names = e.names != 0 && e.names < ci.name_ids.size() ? ci.name_ids[e.names] : 0;
  return loc;
}

void SsdStore::applyCheckpoint(CheckpointIndex& ci) {
  // Small batches per shard: the nodes (and label blocks) are allocated outside the lock, in a
  // staging map, then moved into the index under it without allocating (node handles), so that
  // lookups on the workers wait for at most one batch. Each shard's map is reserved for all of
  // its entries first: no rehash while they go in.
  constexpr size_t kBatch = 256;
  using Map = decltype(Shard::map);
  Map staging;
  staging.reserve(kBatch);
  std::vector<Map::node_type> trash;
  trash.reserve(kBatch);
  std::vector<uint32_t> applied;
  applied.reserve(kBatch);
  for (size_t s = 0; s < kShards; ++s) {
    Shard& shard = shards_[s];
    const std::vector<uint32_t>& mine = ci.by_shard[s];
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      shard.map.reserve(shard.map.size() + mine.size());
    }
    for (size_t at = 0; at < mine.size(); at += kBatch) {
      const size_t end = std::min(mine.size(), at + kBatch);
      // Flags are written by other threads under the shard lock: read under it below. The
      // labels are immutable (views into the checkpoint's bytes): copied here.
      for (size_t n = at; n < end; ++n) {
        const uint32_t i = mine[n];
        Location loc = entryLocation(ci, i);
        const ssd::PurgeLabelsView labels = ssd::labelsAt(ci.cp, i);
        if (!labels.empty()) loc.labels = std::make_shared<const PurgeLabels>(labels.copy());
        staging.emplace(ci.cp.entries[i].key, std::move(loc));
      }
      {
        std::lock_guard<std::mutex> lock(shard.mu);
        for (size_t n = at; n < end; ++n) {
          const uint32_t i = mine[n];
          const ssd::CheckpointEntry& e = ci.cp.entries[i];
          Map::node_type node = staging.extract(e.key);
          if (!checkpointLiveLocked(ci, i) || !keyKnown(e.key_id)) {
            if (checkpointLiveLocked(ci, i)) {
              // Its data key was destroyed while answering from the checkpoint.
              counters_.shredded_entries.fetch_add(1, std::memory_order_relaxed);
              retireCheckpointEntryLocked(ci, i, kCkptDead);
            }
            trash.push_back(std::move(node));
            continue;
          }
          Location& loc = node.mapped();
          loc.invalidated = loc.invalidated || (ci.flags[i] & kCkptInvalidated) != 0;
          loc.hit = (ci.flags[i] & kCkptHit) != 0;
          retireCheckpointEntryLocked(ci, i, kCkptApplied);
          auto result = shard.map.insert(std::move(node));
          // A key already indexed has a newer copy (its checkpoint entry is dead): cannot
          // happen here, and the newer one would win.
          if (!result.inserted) {
            trash.push_back(std::move(result.node));
            continue;
          }
          applied.push_back(i);
        }
      }
      // Outside the lock: freeing what was not used, the writer's per-region key lists.
      trash.clear();
      staging.clear();
      for (const uint32_t i : applied) region_keys_[ci.cp.entries[i].region].push_back(ci.cp.entries[i].key);
      applied.clear();
    }
  }
}

SsdStore::Location SsdStore::summarize(const Freshness& f, Location loc) {
  const int64_t base = toSeconds(f.response_time) - f.corrected_initial_age.count();
  loc.fresh_until_s = f.no_cache ? toSeconds(f.response_time) : base + f.lifetime.count();
  loc.usable_until_s =
      loc.fresh_until_s + std::max(f.stale_while_revalidate.count(), f.stale_if_error.count());
  loc.stored_at_s = toSeconds(f.response_time);
  return loc;
}

SsdStore::Verify SsdStore::verifyEntry(uint8_t* p, size_t avail, EntryView* view,
                                       const char** why, bool body) const {
  EntryHeader h;
  if (avail < sizeof(h)) {
    *why = "entry header cut off";
    return Verify::kBadHeader;
  }
  std::memcpy(&h, p, sizeof(h));
  const bool enc = (h.flags & ssd::kEntryFlagEncrypted) != 0;
  const bool chunked = (h.flags & ssd::kEntryFlagChunked) != 0;
  // A chunked entry's exact size depends on its body length, which is sealed: checked against
  // the layout once EntryMeta is open (ssd::openChunkedEntry).
  const bool size_ok =
      chunked ? h.entry_bytes % ssd::kEntryAlign == 0 &&
                    h.entry_bytes >= ssd::entryBytes(h.sealed_bytes, enc)
              : h.entry_bytes == ssd::entryBytes(h.sealed_bytes, enc);
  if (h.magic != ssd::kEntryMagic || h.header_bytes != sizeof(EntryHeader) ||
      h.sealed_bytes < sizeof(EntryMeta) || h.entry_bytes > avail || !size_ok) {
    *why = "bad entry header";
    return Verify::kBadHeader;
  }
  view->entry_bytes = h.entry_bytes;
  view->key_id = h.key_id;
  if (enc != encrypt_) {
    *why = "entry encryption flag does not match the store";
    return Verify::kBadContent;
  }
  uint8_t* sealed = p + sizeof(EntryHeader);
  if (!enc && h.key_id != kStoreKeyId) {
    *why = "unencrypted entry names a data key";
    return Verify::kBadContent;
  }
  std::shared_ptr<const EntryCipher> cipher;
  if (enc) {
    // The key id is in the clear header, which is the AAD: a changed id fails the tag.
    cipher = cipherFor(h.key_id);
    if (!cipher) {
      *why = "sealed with a data key that was destroyed (or lost)";
      return Verify::kNoKey;
    }
  }
  view->tombstone = (h.flags & ssd::kEntryFlagTombstone) != 0;
  view->chunked = chunked;
  if (chunked) {
    if (view->tombstone) {
      *why = "chunked tombstone";
      return Verify::kBadContent;
    }
    if (!ssd::openChunkedEntry(p, avail, cipher.get(), &view->chunks, why)) {
      return Verify::kBadContent;
    }
    const EntryMeta& m = view->chunks.meta;
    view->key = CacheKey{m.key_hi, m.key_lo};
    view->primary = CacheKey{m.primary_hi, m.primary_lo};
    view->head = sealed + sizeof(EntryMeta);
    view->head_bytes = m.head_bytes;
    view->body = p + view->chunks.layout.body_at;
    view->body_bytes = m.body_bytes;
    view->checksum = m.checksum;
    if (body && verifyChunks(p, *view, 0, view->chunks.layout.chunks) !=
                    view->chunks.layout.chunks) {
      *why = enc ? "body chunk authentication tag mismatch" : "body chunk checksum mismatch";
      return Verify::kBadContent;
    }
    return Verify::kOk;
  }
  if (enc && !cipher->open(h.nonce, p, sizeof(EntryHeader), sealed, h.sealed_bytes,
                           sealed + h.sealed_bytes)) {
    *why = "authentication tag mismatch";
    return Verify::kBadContent;
  }
  EntryMeta m;
  std::memcpy(&m, sealed, sizeof(m));
  if (m.head_bytes > h.sealed_bytes - sizeof(EntryMeta) ||
      m.body_bytes != h.sealed_bytes - sizeof(EntryMeta) - m.head_bytes) {
    *why = "entry lengths inconsistent";
    return Verify::kBadContent;
  }
  view->key = CacheKey{m.key_hi, m.key_lo};
  view->primary = CacheKey{m.primary_hi, m.primary_lo};
  view->head = sealed + sizeof(EntryMeta);
  view->head_bytes = m.head_bytes;
  view->body = view->head + m.head_bytes;
  view->body_bytes = m.body_bytes;
  view->checksum = m.checksum;
  if (view->tombstone && (m.head_bytes != 0 || m.body_bytes != 0)) {
    *why = "tombstone with content";
    return Verify::kBadContent;
  }
  if (ssd::entryChecksum(view->key, view->primary, view->head, view->head_bytes, view->body,
                         view->body_bytes) != m.checksum) {
    *why = "checksum mismatch";
    return Verify::kBadContent;
  }
  return Verify::kOk;
}

uint32_t SsdStore::verifyChunks(uint8_t* p, const EntryView& view, uint32_t from,
                                uint32_t to) const {
  std::shared_ptr<const EntryCipher> cipher;
  if (encrypt_) {
    cipher = cipherFor(view.key_id);
    if (!cipher) return from;  // shredded meanwhile: nothing more is verified
  }
  for (uint32_t i = from; i < to; ++i) {
    if (!ssd::openChunk(p, view.chunks, i, cipher.get())) return i;
  }
  return to;
}

// ---------------------------------------------------------------------------------------------
// Writing

uint32_t SsdStore::internNames(VaryNames names) {
  for (size_t i = 0; i < names_table_.size(); ++i) {
    if (*names_table_[i] == names) return static_cast<uint32_t>(i + 1);
  }
  names_table_.push_back(std::make_shared<const VaryNames>(std::move(names)));
  return static_cast<uint32_t>(names_table_.size());
}

std::optional<ssd::Checkpoint> SsdStore::loadCheckpoint() {
  const std::string& path = options_.checkpoint_path;
  if (path.empty()) return std::nullopt;
  auto bytes = ssd::readCheckpointFile(path);
  if (!bytes.isOk()) {
    if (bytes.status().code() != Code::kNotFound && options_.log) {
      options_.log("index checkpoint " + path + ": " + bytes.status().toString() +
                   "; scanning the whole store");
    }
    return std::nullopt;
  }
  // Consumed before anything is written: a crash from here on can never leave a checkpoint
  // that is older than the device.
  if (const Status removed = ssd::removeCheckpointFile(path); !removed.isOk()) {
    if (options_.log) {
      options_.log("index checkpoint " + path + ": " + removed.toString() +
                   "; not used (it could outlive what it describes), scanning the whole store");
    }
    return std::nullopt;
  }
  ssd::Checkpoint cp;
  const char* why = "";
  bool ok = ssd::decodeCheckpoint(*bytes, encrypt_ ? cipher_.get() : nullptr, &cp, &why);
  if (ok && (cp.region_bytes != region_bytes_ || cp.region_count != region_count_)) {
    ok = false;
    why = "written for another region size or store size";
  } else if (ok && encrypt_ && cp.key_check != key_check_) {
    ok = false;
    why = "written under another key";
  } else if (ok && cp.resume_region >= region_count_) {
    ok = false;
    why = "its resume region lies outside the store";
  }
  if (!ok) {
    if (options_.log) options_.log("index checkpoint " + path + " refused (" + why + "); scanning the whole store");
    return std::nullopt;
  }
  checkpoint_loaded_.store(true, std::memory_order_relaxed);
  return cp;
}

Status SsdStore::writeCheckpoint() {
  if (options_.checkpoint_path.empty() || ephemeral_key_ || !ready_.load(std::memory_order_acquire)) {
    return Status::ok();
  }
  const auto started = std::chrono::steady_clock::now();
  ssd::Checkpoint cp;
  cp.region_bytes = region_bytes_;
  cp.region_count = region_count_;
  cp.encrypted = encrypt_;
  cp.key_check = key_check_;
  // Where a restart starts scanning: the open region (its entries are left out here, it may
  // take more), else the next one to be written.
  const uint64_t open_seq = region_open_ ? region_seq_[open_region_].load(std::memory_order_relaxed) : 0;
  cp.resume_region = region_open_ ? open_region_ : next_region_;
  cp.resume_seq = region_open_ ? open_seq : next_seq_;
  cp.names.reserve(names_table_.size() + 1);
  cp.names.emplace_back();
  for (const auto& n : names_table_) cp.names.push_back(*n);
  for (Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    for (const auto& [key, loc] : shard.map) {
      if (region_open_ && loc.region == open_region_ && loc.seq == open_seq) continue;
      if (!keyKnown(loc.key_id)) continue;  // shredded since it was indexed
      ssd::CheckpointEntry e;
      e.key = key;
      e.primary = loc.primary;
      e.region = loc.region;
      e.offset = loc.offset;
      e.entry_bytes = loc.entry_bytes;
      e.names = loc.names;
      e.seq = loc.seq;
      e.checksum = loc.checksum;
      e.body_bytes = loc.body_bytes;
      e.fresh_until_s = loc.fresh_until_s;
      e.usable_until_s = loc.usable_until_s;
      e.stored_at_s = loc.stored_at_s;
      e.validators = (loc.validators ? ssd::kCheckpointValidators : 0) |
                     (loc.invalidated ? ssd::kCheckpointInvalidated : 0);
      e.key_id = loc.key_id;
      cp.entries.push_back(e);
      cp.labels.push_back(loc.labels ? *loc.labels : PurgeLabels{});
    }
  }
  const std::vector<uint8_t> bytes = ssd::encodeCheckpoint(cp, encrypt_ ? cipher_.get() : nullptr);
  Status s = bytes.empty() ? Status(Code::kInternal, Source::kStorage, "sealing the checkpoint failed")
                           : ssd::writeCheckpointFile(options_.checkpoint_path, bytes);
  last_checkpoint_ = std::chrono::steady_clock::now();
  checkpoint_ms_.store(std::chrono::duration_cast<std::chrono::milliseconds>(last_checkpoint_ - started).count(),
                       std::memory_order_relaxed);
  if (!s.isOk()) {
    counters_.checkpoint_errors.fetch_add(1, std::memory_order_relaxed);
    logLimited("writing the index checkpoint " + options_.checkpoint_path + " failed: " + s.toString());
    return s;
  }
  checkpoint_pending_ = false;
  counters_.checkpoints_written.fetch_add(1, std::memory_order_relaxed);
  return s;
}

uint64_t SsdStore::maxEntryBytes() const { return region_bytes_ - sizeof(RegionHeader); }

bool SsdStore::insert(const ObjectRef& object, const CacheKey& primary) {
  if (!object || !object->isComplete() || !object->shareable()) {
    counters_.inserts_dropped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  Job job;
  job.key = object->key();
  job.primary = primary;
  job.object = object;
  job.bytes = object->body().length() + object->head().wire.size();
  return enqueue(std::move(job));
}

bool SsdStore::insert(const CacheKey& key, std::shared_ptr<const ResponseHead> head,
                      const Freshness& freshness, Ref<Body> body, const CacheKey& primary) {
  if (!head || !body) {
    counters_.inserts_dropped.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  Job job;
  job.key = key;
  job.primary = primary;
  job.bytes = body->length() + head->wire.size();
  job.head = std::move(head);
  job.freshness = freshness;
  job.body = std::move(body);
  return enqueue(std::move(job));
}

bool SsdStore::enqueue(Job job) {
  // Cheap early refusal of what can never fit (the exact check happens when serialising).
  if (job.bytes + sizeof(EntryHeader) + sizeof(EntryMeta) > maxEntryBytes()) {
    counters_.inserts_too_large.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(q_mu_);
    if (stopping_ || pending_bytes_ + job.bytes > options_.max_pending_bytes) {
      counters_.inserts_dropped.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    pending_bytes_ += job.bytes;
    if (job.object) queued_[job.key] = job.object;
    jobs_.push_back(std::move(job));
  }
  counters_.inserts_queued.fetch_add(1, std::memory_order_relaxed);
  q_cv_.notify_one();
  return true;
}

Status SsdStore::flush() {
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(q_mu_);
    if (stopping_) return Status(Code::kUnavailable, Source::kStorage, "SSD store closing");
    ticket = ++flush_requested_;
    Job job;
    job.flush_ticket = ticket;
    jobs_.push_back(std::move(job));
  }
  q_cv_.notify_one();
  std::unique_lock<std::mutex> lock(q_mu_);
  flushed_cv_.wait(lock, [&] { return flush_done_ >= ticket; });
  return flush_status_;
}

namespace {

// The writer thread yields to the workers: it neither preempts a worker when it wakes
// (SCHED_BATCH) nor takes an equal share of a busy core (nice +10). Its work (sealing and writing
// what RAM evicted, reclaim, checkpoints) can wait, and its queue is bounded (admissions beyond it
// are dropped and counted); a viewer cannot wait. Traced with scripts/bench/ssd.sh, everything on
// one core: each admission woke the writer, which preempted the worker for slices of 3-4 ms while
// it sealed what RAM evicted. Not during the rebuild before it: SSD hits wait for that. Best
// effort: a refusal leaves the thread as it was.
void yieldToWorkers() {
  const sched_param param{};
  (void)sched_setscheduler(0, SCHED_BATCH, &param);  // 0: the calling thread
  const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, tid);
  if (errno == 0) (void)setpriority(PRIO_PROCESS, tid, std::min(19, nice + 10));
}

}  // namespace

void SsdStore::writerLoop() {
  pthread_setname_np(pthread_self(), "se-ssd-writer");
  if (!ready_.load(std::memory_order_acquire) && !rebuild()) {
    // Closed before the background rebuild was done: nothing may be written (where the log
    // goes on is not known yet). Queued admissions are dropped; flush() waiters are released.
    std::lock_guard<std::mutex> lock(q_mu_);
    jobs_.clear();
    queued_.clear();
    pending_bytes_ = 0;
    flush_done_ = flush_requested_;
    flush_status_ = Status(Code::kUnavailable, Source::kStorage, "SSD store closed while rebuilding");
    flushed_cv_.notify_all();
    return;
  }
  yieldToWorkers();
  last_checkpoint_ = std::chrono::steady_clock::now();
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(q_mu_);
      const bool dirty = region_open_ && cursor_ > synced_cursor_;
      const auto ready = [&] { return stopping_ || !jobs_.empty(); };
      const bool checkpoint_waits = checkpoint_pending_ && options_.checkpoint_interval.count() > 0 &&
                                    !options_.checkpoint_path.empty();
      if (checkpoint_waits &&
          std::chrono::steady_clock::now() >= last_checkpoint_ + options_.checkpoint_interval) {
        lock.unlock();
        writeCheckpoint();
        continue;
      }
      if (dirty && options_.sync_interval.count() > 0) {
        if (!q_cv_.wait_for(lock, options_.sync_interval, ready)) {
          // Idle with unwritten objects: put them on the device (outside the queue lock).
          lock.unlock();
          syncOpenRegion();
          continue;
        }
      } else if (checkpoint_waits) {
        if (!q_cv_.wait_until(lock, last_checkpoint_ + options_.checkpoint_interval, ready)) {
          continue;  // due: written at the top of the loop
        }
      } else {
        q_cv_.wait(lock, ready);
      }
      if (jobs_.empty()) break;  // stopping, and everything queued is done
      job = std::move(jobs_.front());
      jobs_.pop_front();
      appending_ = job.flush_ticket == 0 && !job.tombstone;
      appending_key_ = job.key;
      appending_cancelled_ = false;
    }
    if (job.flush_ticket != 0) {
      const Status s = sealAndWrite();
      std::lock_guard<std::mutex> lock(q_mu_);
      flush_done_ = job.flush_ticket;
      flush_status_ = s;
      flushed_cv_.notify_all();
      continue;
    }
    append(job);
    std::lock_guard<std::mutex> lock(q_mu_);
    pending_bytes_ -= job.bytes;
    appending_ = false;
    // Indexed now (or refused): readers find it through the index from here on.
    if (job.object) {
      auto it = queued_.find(job.key);
      if (it != queued_.end() && it->second == job.object) queued_.erase(it);
    }
  }
  // A graceful stop keeps what was admitted: the open region is written, then the index
  // checkpoint (always: the one read at open was consumed).
  sealAndWrite();
  if (options_.checkpoint_at_close) writeCheckpoint();
}

void SsdStore::append(const Job& job) {
  if (job.tombstone) {
    const uint64_t sealed_bytes = sizeof(EntryMeta);
    const uint64_t entry_bytes = ssd::entryBytes(sealed_bytes, encrypt_);
    if (!reserve(entry_bytes)) return;
    uint8_t* p = buf_.data() + cursor_;
    EntryMeta m{};
    m.key_hi = job.key.hi;
    m.key_lo = job.key.lo;
    m.checksum = ssd::entryChecksum(job.key, CacheKey{}, p, 0, p, 0);
    std::memcpy(p + sizeof(EntryHeader), &m, sizeof(m));
    if (!sealEntry(p, ssd::kEntryFlagTombstone, sealed_bytes, entry_bytes)) return;
    cursor_ += static_cast<uint32_t>(entry_bytes);
    ++entry_count_;
    counters_.tombstones_written.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const ResponseHead& head = job.object ? job.object->head() : *job.head;
  const Freshness& freshness = job.object ? job.object->freshness() : job.freshness;
  const Body& body = job.object ? job.object->body() : *job.body;
  const std::vector<uint8_t> head_blob = ssd::encodeHead(head, freshness);
  const uint64_t body_bytes = body.length();
  const bool chunked = options_.write_format_version >= 3;
  const uint64_t sealed_bytes = sizeof(EntryMeta) + head_blob.size() + (chunked ? 0 : body_bytes);
  const ssd::ChunkedLayout layout = ssd::chunkedLayout(sealed_bytes, body_bytes, encrypt_);
  const uint64_t entry_bytes =
      chunked ? layout.entry_bytes : ssd::entryBytes(sealed_bytes, encrypt_);
  // A variant that is not written after all is gone from this tier: its URL's marker forgets it.
  const auto not_written = [&] {
    if (!(job.primary == CacheKey{})) variantsGone({SsdVariant{job.key, job.primary, nullptr}});
  };
  if (entry_bytes > maxEntryBytes()) {
    counters_.inserts_too_large.fetch_add(1, std::memory_order_relaxed);
    return not_written();
  }
  // The vhost's data key (made, and durable in the keyring file, before its first entry is
  // sealed); objects without a vhost label use the store key.
  std::shared_ptr<const PurgeLabels> labels = labelsOf(head);
  uint32_t key_id = kStoreKeyId;
  std::shared_ptr<const EntryCipher> data_key;
  if (keyring_ && labels && !labels->vhost.empty()) {
    auto k = keyring_->keyFor(labels->vhost);
    if (!k.isOk()) {
      // Sealing it with the store key instead would put it out of reach of the vhost's shredding.
      counters_.write_errors.fetch_add(1, std::memory_order_relaxed);
      logLimited("no data key for vhost \"" + labels->vhost + "\" (" + k.status().toString() +
                 "): object not written");
      return not_written();
    }
    key_id = k->first;
    data_key = std::move(k->second);
  }
  if (!reserve(entry_bytes)) return not_written();
  // Bytes at and past cursor_ are invisible to readers (no index entry points there yet), so
  // the entry is built in place without holding buf_mu_.
  uint8_t* p = buf_.data() + cursor_;
  uint8_t* sealed = p + sizeof(EntryHeader);
  uint8_t* head_at = sealed + sizeof(EntryMeta);
  std::memcpy(head_at, head_blob.data(), head_blob.size());
  uint8_t* body_at = chunked ? p + layout.body_at : head_at + head_blob.size();
  for (uint64_t pos = 0; pos < body_bytes;) {
    const uint8_t* run = nullptr;
    const size_t n = body.peek(pos, &run);
    if (n == 0) break;  // cannot happen for a complete body
    std::memcpy(body_at + pos, run, n);
    pos += n;
  }
  EntryMeta m{};
  m.key_hi = job.key.hi;
  m.key_lo = job.key.lo;
  m.head_bytes = static_cast<uint32_t>(head_blob.size());
  m.body_bytes = body_bytes;
  m.primary_hi = job.primary.hi;
  m.primary_lo = job.primary.lo;
  if (chunked) {
    std::memcpy(sealed, &m, sizeof(m));
    if (!sealChunked(p, job.key, job.primary, head_blob.size(), body_bytes, key_id,
                     data_key.get(), &m.checksum)) {
      return not_written();
    }
  } else {
    m.checksum =
        ssd::entryChecksum(job.key, job.primary, head_at, head_blob.size(), body_at, body_bytes);
    std::memcpy(sealed, &m, sizeof(m));
    if (!sealEntry(p, 0, sealed_bytes, entry_bytes, key_id, data_key.get())) return not_written();
  }

  Location loc;
  loc.region = open_region_;
  loc.offset = cursor_;
  loc.entry_bytes = static_cast<uint32_t>(entry_bytes);
  loc.seq = region_seq_[open_region_].load(std::memory_order_relaxed);
  loc.checksum = m.checksum;
  loc.body_bytes = body_bytes;
  loc.validators = head.find("ETag") || head.find("Last-Modified");
  loc.primary = job.primary;
  loc.labels = std::move(labels);
  loc.key_id = key_id;
  if (!(job.primary == CacheKey{})) {
    VarySpec vary = varyOf(head);
    if (vary.kind == VarySpec::Kind::kFields) loc.names = internNames(std::move(vary.names));
  }
  loc = summarize(freshness, loc);
  cursor_ += static_cast<uint32_t>(entry_bytes);
  ++entry_count_;
  region_keys_[open_region_].push_back(job.key);
  {
    // Under q_mu_ (then the shard's): a remove() of the key since the job left the queue wins,
    // and the entry stays unindexed garbage in the region (its tombstone follows it).
    std::lock_guard<std::mutex> queue_lock(q_mu_);
    if (!appending_cancelled_) {
      Shard& shard = shardFor(job.key);
      std::lock_guard<std::mutex> lock(shard.mu);
      shard.map[job.key] = loc;  // the newest copy wins; an older one is garbage on the device
    }
  }
  counters_.objects_written.fetch_add(1, std::memory_order_relaxed);
  checkpoint_pending_ = true;
}

bool SsdStore::reserve(uint64_t entry_bytes) {
  if (region_open_ && cursor_ + entry_bytes <= region_bytes_) return true;
  if (region_open_) sealAndWrite();
  return openNextRegion();
}

bool SsdStore::sealEntry(uint8_t* p, uint16_t flags, uint64_t sealed_bytes,
                         uint64_t entry_bytes, uint32_t key_id, const EntryCipher* cipher) {
  EntryHeader h{};
  h.magic = ssd::kEntryMagic;
  h.flags = flags | (encrypt_ ? ssd::kEntryFlagEncrypted : 0);
  h.header_bytes = sizeof(EntryHeader);
  h.entry_bytes = static_cast<uint32_t>(entry_bytes);
  h.sealed_bytes = static_cast<uint32_t>(sealed_bytes);
  h.key_id = encrypt_ ? key_id : kStoreKeyId;
  if (!cipher) cipher = cipher_.get();
  if (encrypt_ && !randomBytes(h.nonce, sizeof(h.nonce))) {
    logLimited("CSPRNG failed: object not written");
    counters_.write_errors.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::memcpy(p, &h, sizeof(h));
  uint8_t* sealed = p + sizeof(EntryHeader);
  size_t used = sizeof(EntryHeader) + sealed_bytes;
  if (encrypt_) {
    if (!cipher->seal(h.nonce, p, sizeof(EntryHeader), sealed, sealed_bytes, sealed + sealed_bytes)) {
      logLimited("encryption failed: object not written");
      counters_.write_errors.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    used += kTagBytes;
  }
  std::memset(p + used, 0, entry_bytes - used);
  return true;
}

bool SsdStore::sealChunked(uint8_t* p, const CacheKey& key, const CacheKey& primary,
                           size_t head_bytes, uint64_t body_bytes, uint32_t key_id,
                           const EntryCipher* cipher, uint64_t* checksum) {
  uint8_t nonce[kNonceBytes] = {};
  if (encrypt_ && !randomBytes(nonce, sizeof(nonce))) {
    logLimited("CSPRNG failed: object not written");
    counters_.write_errors.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (encrypt_ && !cipher) cipher = cipher_.get();
  if (!ssd::sealChunkedEntry(p, 0, encrypt_ ? key_id : kStoreKeyId, nonce, key, primary,
                             head_bytes, body_bytes, encrypt_ ? cipher : nullptr, checksum)) {
    logLimited("encryption failed: object not written");
    counters_.write_errors.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

bool SsdStore::openNextRegion() {
  const uint32_t r = next_region_;
  next_region_ = (r + 1) % region_count_;
  const uint64_t old_seq = region_seq_[r].load(std::memory_order_relaxed);
  std::vector<Carry> carries;
  if (old_seq != 0 && options_.reclaim == conf::SsdReclaim::kReinsert) {
    carries = readCarries(r, old_seq);  // before the switch: readers still find them meanwhile
  }
  const uint64_t seq = next_seq_++;
  {
    // From here on the buffer holds region r: readers of the previous region go to the device
    // (which has it: sealAndWrite() completed before we got here), and readers of the old
    // content of r see the new sequence number and report a miss.
    std::lock_guard<std::mutex> lock(buf_mu_);
    mem_region_ = r;
    mem_seq_ = seq;
    region_seq_[r].store(seq, std::memory_order_release);
  }
  region_open_ = true;
  open_region_ = r;
  cursor_ = sizeof(RegionHeader);
  synced_cursor_ = cursor_;
  entry_count_ = 0;
  const std::vector<CacheKey> kept = placeCarries(carries, old_seq);
  if (old_seq != 0) {
    dropRegionEntries(r, old_seq, /*count_as_reclaim=*/true);
    counters_.regions_reclaimed.fetch_add(1, std::memory_order_relaxed);
  }
  region_keys_[r] = kept;
  return true;
}

std::vector<SsdStore::Carry> SsdStore::readCarries(uint32_t region, uint64_t seq) {
  // At most half a region is carried over, so that every reclaim makes room for new objects
  // even when everything in the region was read.
  const uint64_t budget = (region_bytes_ - sizeof(RegionHeader)) / 2;
  const int64_t now = toSeconds(options_.clock->wallNow());
  std::vector<Carry> carries;
  uint64_t planned = 0;
  for (const CacheKey& key : region_keys_[region]) {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.map.find(key);
    if (it == shard.map.end()) continue;
    const Location& loc = it->second;
    if (loc.region != region || loc.seq != seq || !loc.hit) continue;
    // Worth keeping: still fresh, or stale but cheap to revalidate.
    if (loc.fresh_until_s <= now && !loc.validators) continue;
    if (planned + loc.entry_bytes > budget) continue;
    planned += loc.entry_bytes;
    carries.push_back({key, loc, 0});
  }
  if (carries.empty()) return carries;
  const uint64_t align = device_->ioAlignment();
  if (reinsert_buf_.size() == 0) reinsert_buf_ = AlignedBuffer(region_bytes_, align);
  size_t at = 0;
  std::vector<Carry> read;
  for (Carry& c : carries) {
    const uint64_t pos = uint64_t{region} * region_bytes_ + c.loc.offset;
    const uint64_t start = pos / align * align;
    const uint64_t len = ssd::alignUp(pos + c.loc.entry_bytes, align) - start;
    if (at + len > reinsert_buf_.size()) break;  // alignment slack: the rest is not carried
    if (!readSyncAt(start, reinsert_buf_.data() + at, len).isOk()) {
      counters_.reinsert_failures.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    c.buf_offset = at + (pos - start);
    at += len;
    read.push_back(c);
  }
  return read;
}

std::vector<CacheKey> SsdStore::placeCarries(const std::vector<Carry>& carries, uint64_t old_seq) {
  std::vector<CacheKey> kept;
  const uint32_t r = open_region_;
  const uint64_t seq = region_seq_[r].load(std::memory_order_relaxed);
  for (const Carry& c : carries) {
    // The entry moves as it is, still sealed (its header, nonce and tag do not depend on where
    // it lies); the copy read is verified (decrypted in place) before the index points at it.
    uint8_t* src = reinsert_buf_.data() + c.buf_offset;
    uint8_t* dst = buf_.data() + cursor_;
    std::memcpy(dst, src, c.loc.entry_bytes);
    EntryView view;
    const char* why = "";
    const Verify verified = verifyEntry(src, c.loc.entry_bytes, &view, &why);
    if (verified == Verify::kNoKey) {
      // Shredded since it was indexed: not carried, not damage.
      counters_.shredded_entries.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (verified != Verify::kOk || !(view.key == c.key) ||
        view.checksum != c.loc.checksum || view.entry_bytes != c.loc.entry_bytes ||
        view.tombstone) {
      counters_.reinsert_failures.fetch_add(1, std::memory_order_relaxed);
      counters_.corrupt.fetch_add(1, std::memory_order_relaxed);
      logLimited("damaged object " + c.key.toHex() + " found while reinserting (region " +
                 std::to_string(c.loc.region) + ", offset " + std::to_string(c.loc.offset) +
                 "): " + (*why ? why : "entry is not the indexed object") + "; dropped");
      continue;
    }
    Location moved = c.loc;
    moved.region = r;
    moved.offset = cursor_;
    moved.seq = seq;
    moved.hit = false;  // must be read again to survive the next reclaim
    bool placed = false;
    {
      // Unless it was removed (or rewritten) meanwhile: then the copy stays unindexed garbage.
      Shard& shard = shardFor(c.key);
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.map.find(c.key);
      if (it != shard.map.end() && it->second.region == c.loc.region &&
          it->second.seq == old_seq && it->second.offset == c.loc.offset) {
        moved.invalidated = it->second.invalidated;  // a soft purge since the carry was read
        it->second = moved;
        placed = true;
      }
    }
    if (!placed) continue;
    cursor_ += c.loc.entry_bytes;
    ++entry_count_;
    kept.push_back(c.key);
    counters_.objects_reinserted.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_reinserted.fetch_add(c.loc.entry_bytes, std::memory_order_relaxed);
  }
  return kept;
}

void SsdStore::dropRegionEntries(uint32_t region, uint64_t seq, bool count_as_reclaim) {
  uint64_t dropped = 0;
  std::vector<SsdVariant> gone;
  for (const CacheKey& key : region_keys_[region]) {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.map.find(key);
    if (it != shard.map.end() && it->second.region == region && it->second.seq == seq) {
      if (!(it->second.primary == CacheKey{})) gone.push_back({key, it->second.primary, nullptr});
      shard.map.erase(it);
      ++dropped;
    }
  }
  region_keys_[region].clear();
  variantsGone(std::move(gone));
  if (count_as_reclaim) counters_.objects_reclaimed.fetch_add(dropped, std::memory_order_relaxed);
}

Status SsdStore::sealAndWrite() {
  if (!region_open_) return Status::ok();
  if (entry_count_ == 0 || cursor_ == synced_cursor_) {
    region_open_ = false;  // nothing new to write (an idle sync wrote it all)
    return Status::ok();
  }
  return writeOpenRegion(/*close=*/true);
}

Status SsdStore::syncOpenRegion() {
  if (!region_open_ || entry_count_ == 0 || cursor_ == synced_cursor_) return Status::ok();
  const Status s = writeOpenRegion(/*close=*/false);
  if (s.isOk()) counters_.region_syncs.fetch_add(1, std::memory_order_relaxed);
  return s;
}

// A region may be written more than once while open (idle syncs, then the final write): each
// write carries the whole used part, whose earlier bytes are unchanged, and a header whose
// used_bytes and entry_count cover exactly what that write holds. A torn rewrite therefore
// leaves either the old header (the earlier entries, intact) or the new one with entries that
// fail their checks and are skipped at rebuild.
Status SsdStore::writeOpenRegion(bool close) {
  const uint32_t r = open_region_;
  RegionHeader h{};
  h.magic = ssd::kRegionMagic;
  h.version = options_.write_format_version;
  h.header_bytes = sizeof(RegionHeader);
  h.seq = region_seq_[r].load(std::memory_order_relaxed);
  h.region_bytes = region_bytes_;
  h.entry_count = entry_count_;
  h.used_bytes = cursor_;
  if (encrypt_) {
    std::memcpy(h.key_check, key_check_.data(), key_check_.size());
    h.flags = ssd::kRegionFlagEncrypted;
  }
  h.checksum = ssd::regionHeaderChecksum(h);
  std::memcpy(buf_.data(), &h, sizeof(h));
  const size_t len = ssd::alignUp(cursor_, device_->ioAlignment());
  std::memset(buf_.data() + cursor_, 0, len - cursor_);
  if (close) region_open_ = false;
  const Status s = writeSync(uint64_t{r} * region_bytes_, buf_.data(), len);
  if (s.isOk()) {
    synced_cursor_ = cursor_;
    if (close) counters_.regions_written.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
  region_open_ = false;
  counters_.write_errors.fetch_add(1, std::memory_order_relaxed);
  logLimited("writing region " + std::to_string(r) + " failed (" + s.toString() + "): its " +
             std::to_string(entry_count_) + " objects are dropped");
  dropRegionEntries(r, h.seq, /*count_as_reclaim=*/false);
  {
    std::lock_guard<std::mutex> lock(buf_mu_);
    region_seq_[r].store(0, std::memory_order_release);
  }
  return s;
}

Status SsdStore::writeSync(uint64_t offset, const uint8_t* buf, size_t len) {
  const auto started = std::chrono::steady_clock::now();
  const Status s = waitForIo([&](IoEngine::Callback done) {
    return writer_engine_->write(offset, buf, len, std::move(done));
  });
  if (options_.observers.write) options_.observers.write(std::chrono::steady_clock::now() - started);
  return s;
}

Status SsdStore::readSyncAt(uint64_t offset, uint8_t* buf, size_t len) {
  return waitForIo([&](IoEngine::Callback done) {
    return writer_engine_->read(offset, buf, len, std::move(done));
  });
}

Status SsdStore::waitForIo(const std::function<Status(IoEngine::Callback)>& submit) {
  bool done = false;
  Status result;
  const Status s = submit([&](Status st) {
    done = true;
    result = st;
  });
  if (!s.isOk()) return s;
  while (!done) writer_engine_->wait(std::chrono::milliseconds(100));
  return result;
}

// ---------------------------------------------------------------------------------------------
// Index and reading

std::optional<SsdEntryInfo> SsdStore::find(const CacheKey& key) const {
  Shard& shard = shardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.map.find(key);
  Location from_checkpoint;
  const Location* loc = nullptr;
  if (it != shard.map.end()) {
    loc = &it->second;
  } else {
    CheckpointIndex* ci = nullptr;
    const std::optional<size_t> i = checkpointEntryLocked(key, &ci);
    if (!i) return std::nullopt;
    from_checkpoint = locationOf(*ci, *i);
    loc = &from_checkpoint;
  }
  SsdEntryInfo info;
  info.body_bytes = loc->body_bytes;
  info.entry_bytes = loc->entry_bytes;
  // A soft-purged copy is stale now: a lookup reads it only to revalidate it.
  info.fresh_until = loc->invalidated ? WallTime{} : fromSeconds(loc->fresh_until_s);
  info.usable_until = fromSeconds(loc->usable_until_s);
  info.revalidatable = loc->validators;
  info.stored_at = fromSeconds(loc->stored_at_s);
  return info;
}

bool SsdStore::invalidate(const CacheKey& key) {
  Shard& shard = shardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.map.find(key);
  if (it != shard.map.end()) {
    it->second.invalidated = true;
    return true;
  }
  // Answered from the checkpoint: marked there, and kept when it enters the index.
  CheckpointIndex* ci = nullptr;
  const std::optional<size_t> i = checkpointEntryLocked(key, &ci);
  if (!i) return false;
  ci->flags[*i] |= kCkptInvalidated;
  return true;
}

std::shared_ptr<const EntryCipher> SsdStore::cipherFor(uint32_t id) const {
  if (id == kStoreKeyId) return cipher_;
  return keyring_ ? keyring_->cipher(id) : nullptr;
}

Result<uint32_t> SsdStore::destroyVhostKey(std::string_view vhost) {
  if (!keyring_) return kStoreKeyId;
  Result<uint32_t> destroyed = keyring_->destroy(vhost);
  // destroy() forgets the key in memory even when the file write fails: the index drops what
  // it sealed either way.
  const uint32_t id = destroyed.isOk() ? *destroyed : kStoreKeyId;
  if (destroyed.isOk() && id == kStoreKeyId) return destroyed;
  uint64_t dropped = 0;
  std::vector<SsdVariant> gone;
  for (Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    for (auto it = shard.map.begin(); it != shard.map.end();) {
      if (!keyKnown(it->second.key_id)) {
        if (!(it->second.primary == CacheKey{})) gone.push_back({it->first, it->second.primary, nullptr});
        it = shard.map.erase(it);
        ++dropped;
      } else {
        ++it;
      }
    }
    if (CheckpointIndex* ci = ckpt_.load(std::memory_order_acquire)) {
      // Not in the index yet, answered from the checkpoint: no longer.
      for (const uint32_t i : ci->by_shard[static_cast<size_t>(&shard - shards_.data())]) {
        const ssd::CheckpointEntry& e = ci->cp.entries[i];
        if (!checkpointLiveLocked(*ci, i) || keyKnown(e.key_id)) continue;
        if (!(e.primary == CacheKey{})) gone.push_back({e.key, e.primary, nullptr});
        retireCheckpointEntryLocked(*ci, i, kCkptDead);
        ++dropped;
      }
    }
  }
  counters_.shredded_entries.fetch_add(dropped, std::memory_order_relaxed);
  variantsGone(std::move(gone));
  if (options_.log) {
    options_.log("destroyed the data key of vhost \"" + std::string(vhost) + "\" (key id " +
                 std::to_string(id) + "): its entries on the device are unreadable" +
                 (dropped ? ", " + std::to_string(dropped) + " still indexed dropped" : std::string()) +
                 (destroyed.isOk() ? "" : "; the keyring file still holds it (see above)"));
  }
  return destroyed;
}

std::vector<CacheKey> SsdStore::keysMatching(const PurgeSelector& selector) const {
  std::vector<CacheKey> keys;
  for (Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    for (const auto& [key, loc] : shard.map) {
      if (loc.labels && selector.matches(*loc.labels)) keys.push_back(key);
    }
    if (const CheckpointIndex* ci = ckpt_.load(std::memory_order_acquire)) {
      // Entries still answered from the checkpoint (not in the index yet).
      for (const uint32_t i : ci->by_shard[static_cast<size_t>(&shard - shards_.data())]) {
        if (!checkpointLiveLocked(*ci, i)) continue;
        const ssd::PurgeLabelsView labels = ssd::labelsAt(ci->cp, i);
        if (labels.empty()) continue;
        if (selector.matches(labels.vhost, labels.path, labels.tags)) {
          keys.push_back(ci->cp.entries[i].key);
        }
      }
    }
  }
  return keys;
}

std::vector<SsdExpired> SsdStore::expiredEntries(const RetentionTable& table, WallTime now,
                                                 size_t budget) const {
  std::vector<SsdExpired> out;
  if (table.empty() || budget == 0) return out;
  std::lock_guard<std::mutex> sweep(sweep_mu_);
  size_t looked_at = 0;
  // Every shard at most once per call, so that a small index is not walked twice.
  for (size_t n = 0; n < kShards && looked_at < budget; ++n) {
    Shard& shard = shards_[sweep_shard_];
    std::vector<SsdExpired> found;
    found.reserve(budget - looked_at);  // no allocation under the shard lock
    bool shard_done = false;
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      const size_t buckets = shard.map.bucket_count();
      // A rehash since the last step changes the buckets: some entries are then looked at
      // twice or not until the next pass, never judged wrongly.
      while (sweep_bucket_ < buckets && looked_at < budget) {
        for (auto it = shard.map.begin(sweep_bucket_); it != shard.map.end(sweep_bucket_); ++it) {
          ++looked_at;
          const Location& loc = it->second;
          if (!loc.labels || found.size() == found.capacity()) continue;
          const conf::Millis max_age = table.maxAgeOf(loc.labels->vhost);
          if (pastRetention(fromSeconds(loc.stored_at_s), max_age, now)) {
            found.push_back({it->first, loc.primary, loc.labels});
          }
        }
        ++sweep_bucket_;
        ++looked_at;  // an empty bucket is work too (a map that shrank keeps its buckets)
      }
      shard_done = sweep_bucket_ >= buckets;
    }
    for (SsdExpired& e : found) out.push_back(std::move(e));
    if (!shard_done) break;
    sweep_bucket_ = 0;
    sweep_shard_ = (sweep_shard_ + 1) % kShards;
  }
  return out;
}

bool SsdStore::remove(const CacheKey& key) {
  std::vector<CacheKey> variants;
  if (variants_pending_.load(std::memory_order_acquire)) {
    // The rebuilt variants are not handed over yet: those of this URL (and the key itself, if
    // it is one) leave the list and the store. Waits for a hand-over in progress.
    std::lock_guard<std::mutex> lock(variants_mu_);
    std::erase_if(rebuilt_variants_, [&](const SsdVariant& v) {
      if (v.primary == key) variants.push_back(v.key);
      return v.primary == key || v.key == key;
    });
  }
  bool found = removeKey(key);
  for (const CacheKey& variant : variants) found = removeKey(variant) || found;
  return found;
}

void SsdStore::setVariantObserver(SsdVariantObserver* observer) {
  {
    std::lock_guard<std::mutex> lock(variants_mu_);
    variant_observer_ = observer;
  }
  deliverVariants();
}

void SsdStore::unsetVariantObserver(SsdVariantObserver* observer) {
  std::lock_guard<std::mutex> lock(variants_mu_);
  if (variant_observer_ == observer) variant_observer_ = nullptr;
}

void SsdStore::deliverVariants() {
  std::vector<CacheKey> refused;
  {
    std::lock_guard<std::mutex> lock(variants_mu_);
    if (!variant_observer_ || !variants_pending_.load(std::memory_order_acquire)) return;
    refused = variant_observer_->adoptSsdVariants(std::move(rebuilt_variants_));
    rebuilt_variants_.clear();
    variants_pending_.store(false, std::memory_order_release);
  }
  for (const CacheKey& key : refused) removeKey(key);
}

void SsdStore::variantsGone(std::vector<SsdVariant> gone) {
  if (gone.empty()) return;
  std::lock_guard<std::mutex> lock(variants_mu_);
  if (variants_pending_.load(std::memory_order_acquire)) {
    std::erase_if(rebuilt_variants_, [&](const SsdVariant& v) {
      return std::any_of(gone.begin(), gone.end(), [&](const SsdVariant& g) { return g.key == v.key; });
    });
  }
  // Under variants_mu_, so that setVariantObserver(nullptr) waits for this call to end.
  if (variant_observer_) variant_observer_->onSsdVariantsGone(gone);
}

bool SsdStore::removeKey(const CacheKey& key) {
  bool forgotten = false;
  bool remembered = false;
  if (!ready_.load(std::memory_order_acquire)) {
    // The rebuild has not filled the index yet: remember the key. The rebuilt index leaves it
    // out, and writes its tombstone if a copy was found on the device.
    std::lock_guard<std::mutex> lock(rebuild_mu_);
    if (!ready_.load(std::memory_order_acquire) && !ckpt_.load(std::memory_order_acquire)) {
      removed_while_rebuilding_.push_back(key);
      remembered = true;
    }
  }
  {
    // Writes of `key` still queued, or being appended, must not bring it back afterwards.
    std::lock_guard<std::mutex> lock(q_mu_);
    for (auto it = jobs_.begin(); it != jobs_.end();) {
      if (it->flush_ticket == 0 && !it->tombstone && it->key == key) {
        forgotten = true;
        pending_bytes_ -= it->bytes;
        it = jobs_.erase(it);
      } else {
        ++it;
      }
    }
    if (appending_ && appending_key_ == key) {
      appending_cancelled_ = true;
      forgotten = true;
    }
    queued_.erase(key);
    {
      Shard& shard = shardFor(key);
      std::lock_guard<std::mutex> shard_lock(shard.mu);
      if (shard.map.erase(key) > 0) forgotten = true;
      // Answered from the checkpoint: never again, nor indexed when the rest goes in.
      CheckpointIndex* ci = nullptr;
      if (const std::optional<size_t> i = checkpointEntryLocked(key, &ci)) {
        retireCheckpointEntryLocked(*ci, *i, kCkptDead);
        forgotten = true;
      }
    }
    if (forgotten && !stopping_) {
      // After every copy already appended (and any being appended): at rebuild it deletes
      // them all. Tiny, and never dropped for a full queue: a purge must not be lost.
      Job tombstone;
      tombstone.key = key;
      tombstone.tombstone = true;
      jobs_.push_back(std::move(tombstone));
    }
  }
  if (forgotten) q_cv_.notify_one();
  return forgotten || remembered;
}

ObjectRef SsdStore::queuedObject(const CacheKey& key) const {
  std::lock_guard<std::mutex> lock(q_mu_);
  auto it = queued_.find(key);
  return it == queued_.end() ? ObjectRef() : it->second;
}

void SsdStore::removeIfAt(const CacheKey& key, const Location& loc) {
  CacheKey primary;
  {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.map.find(key);
    if (it == shard.map.end()) {
      // Read while answered from the checkpoint (and not indexed since).
      CheckpointIndex* ci = nullptr;
      const std::optional<size_t> i = checkpointEntryLocked(key, &ci);
      if (!i) return;
      const ssd::CheckpointEntry& e = ci->cp.entries[*i];
      if (e.region != loc.region || e.seq != loc.seq || e.offset != loc.offset) return;
      primary = e.primary;
      retireCheckpointEntryLocked(*ci, *i, kCkptDead);
    } else if (it->second.region != loc.region || it->second.seq != loc.seq ||
               it->second.offset != loc.offset) {
      return;
    } else {
      primary = it->second.primary;
      shard.map.erase(it);
    }
  }
  if (!(primary == CacheKey{})) variantsGone({SsdVariant{key, primary, nullptr}});
}

bool SsdStore::read(const CacheKey& key, IoEngine& engine, ReadDone done) {
  return read(key, engine, std::move(done), ReadProgress());
}

bool SsdStore::read(const CacheKey& key, IoEngine& engine, ReadDone done, ReadProgress progress) {
  counters_.lookups.fetch_add(1, std::memory_order_relaxed);
  if (options_.observers.read) {
    done = [observe = &options_.observers.read, started = std::chrono::steady_clock::now(),
            inner = std::move(done)](Result<SsdHit> r) {
      (*observe)(std::chrono::steady_clock::now() - started);
      inner(std::move(r));
    };
  }
  Location loc;
  {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.map.find(key);
    if (it != shard.map.end()) {
      it->second.hit = true;
      loc = it->second;
    } else {
      CheckpointIndex* ci = nullptr;
      const std::optional<size_t> i = checkpointEntryLocked(key, &ci);
      if (!i) {
        counters_.index_misses.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      ci->flags[*i] |= kCkptHit;  // a reinsertion candidate once indexed
      loc = locationOf(*ci, *i);
    }
  }
  {
    std::unique_lock<std::mutex> lock(buf_mu_);
    if (mem_region_ == static_cast<int64_t>(loc.region) && mem_seq_ == loc.seq) {
      // Still in the region buffer (open, or being written): copy it out; verification and
      // decryption happen outside the lock, on the caller's thread.
      auto copy = std::make_shared<AlignedBuffer>(loc.entry_bytes, 16);
      std::memcpy(copy->data(), buf_.data() + loc.offset, loc.entry_bytes);
      lock.unlock();
      counters_.reads_from_buffer.fetch_add(1, std::memory_order_relaxed);
      engine.post([this, key, loc, copy, &engine, done = std::move(done),
                   progress = std::move(progress)](Status) {
        done(finishRead(key, loc, copy->data(), copy, &engine, progress ? &progress : nullptr));
      });
      return true;
    }
  }
  const uint64_t align = device_->ioAlignment();
  const uint64_t at = uint64_t{loc.region} * region_bytes_ + loc.offset;
  const uint64_t start = at / align * align;
  const uint64_t end = ssd::alignUp(at + loc.entry_bytes, align);
  auto buf = std::make_shared<AlignedBuffer>(end - start, align);
  counters_.reads_from_device.fetch_add(1, std::memory_order_relaxed);
  const Status s = engine.read(start, buf->data(), end - start,
                               [this, key, loc, buf, skip = at - start, &engine, done,
                                progress = std::move(progress)](Status st) {
    if (!st.isOk()) {
      done(fail(key, loc, Code::kIo, st.detail()));
      return;
    }
    if (region_seq_[loc.region].load(std::memory_order_acquire) != loc.seq) {
      // Reclaimed while we read: the bytes may be the new region's. Not damage: a plain miss.
      counters_.reclaimed_during_read.fetch_add(1, std::memory_order_relaxed);
      done(Status(Code::kNotFound, Source::kStorage, "SSD region reclaimed during the read"));
      return;
    }
    done(finishRead(key, loc, buf->data() + skip, buf, &engine, progress ? &progress : nullptr));
  });
  if (!s.isOk()) {
    fail(key, loc, Code::kIo, s.detail());
    return false;
  }
  return true;
}

// A streaming read's state between turns of its engine.
struct SsdStore::ReadStream {
  IoEngine* engine = nullptr;
  CacheKey key;
  Location loc;
  std::shared_ptr<AlignedBuffer> buffer;  // the entry's bytes (decrypted in place as verified)
  uint8_t* p = nullptr;                   // the entry header inside `buffer`
  EntryView view;
  Ref<Body> body;                         // the hit's body, extended chunk by chunk
  uint32_t next = 0;                      // the next chunk to verify
  uint32_t batch = 1;                     // chunks verified on the next turn (streamRest)
  bool damaged = false;                   // chunk `next` failed: reported on the next turn
  ReadProgress progress;
};

Result<SsdHit> SsdStore::finishRead(const CacheKey& key, const Location& loc, uint8_t* p,
                                    const std::shared_ptr<AlignedBuffer>& buffer,
                                    IoEngine* engine, const ReadProgress* progress) {
  EntryView view;
  const char* why = "";
  const Verify verified = verifyEntry(p, loc.entry_bytes, &view, &why, /*body=*/false);
  if (verified == Verify::kNoKey) {
    // Its vhost's data key was destroyed after the lookup found it: gone, a plain miss.
    counters_.shredded_entries.fetch_add(1, std::memory_order_relaxed);
    removeIfAt(key, loc);
    return Status(Code::kNotFound, Source::kStorage, "SSD entry's data key was destroyed");
  }
  if (verified != Verify::kOk) return fail(key, loc, Code::kCorrupt, why);
  if (!(view.key == key) || !(view.primary == loc.primary) || view.checksum != loc.checksum ||
      view.entry_bytes != loc.entry_bytes || view.tombstone) {
    return fail(key, loc, Code::kCorrupt, "entry is not the indexed object");
  }
  auto head = std::make_shared<ResponseHead>();
  SsdHit hit;
  if (!ssd::decodeHead(view.head, view.head_bytes, head.get(), &hit.freshness)) {
    return fail(key, loc, Code::kCorrupt, "undecodable head");
  }
  hit.key = key;
  hit.head = std::move(head);
  hit.invalidated = loc.invalidated;
  if (view.chunked && view.chunks.layout.chunks > 1 && progress && engine) {
    // The first chunk now, the others on later turns of the engine: the caller hands on what is
    // verified while the rest is checked. The body never shows a byte past the verified chunks.
    if (verifyChunks(p, view, 0, 1) != 1) {
      logLimited("damaged object " + key.toHex() + ": body chunk 0 of " +
                 std::to_string(view.chunks.layout.chunks) + " failed verification");
      return fail(key, loc, Code::kCorrupt,
                  encrypt_ ? "body chunk authentication tag mismatch"
                           : "body chunk checksum mismatch");
    }
    hit.body = Body::adoptGrowing(buffer, view.body, view.body_bytes, buffer->size(),
                                  ssd::chunkEnd(0, view.body_bytes));
    hit.streaming = true;
    auto stream = std::make_shared<ReadStream>();
    stream->engine = engine;
    stream->key = key;
    stream->loc = loc;
    stream->buffer = buffer;
    stream->p = p;
    stream->view = view;
    stream->body = hit.body;
    stream->next = 1;
    stream->progress = *progress;
    streamRest(std::move(stream));  // runs after `done` has the hit: a later turn of the engine
    return hit;
  }
  if (view.chunked) {
    // Chunk by chunk: the first damaged one is named (where the damage is), and nothing of the
    // body is handed out unless every chunk passed.
    const uint32_t n = view.chunks.layout.chunks;
    const uint32_t bad = verifyChunks(p, view, 0, n);
    if (bad != n) {
      logLimited("damaged object " + key.toHex() + ": body chunk " + std::to_string(bad) +
                 " of " + std::to_string(n) + " failed verification");
      return fail(key, loc, Code::kCorrupt,
                  encrypt_ ? "body chunk authentication tag mismatch"
                           : "body chunk checksum mismatch");
    }
  }
  // The verified (decrypted in place) bytes are served from the read buffer itself: no copy.
  hit.body = Body::adopt(buffer, view.body, view.body_bytes, buffer->size());
  return hit;
}

// Each turn verifies twice the chunks of the turn before (at most kMaxStreamBatch): the first
// bytes go out after one chunk, and a 2 MiB entry is verified in six turns of the engine instead
// of 32 (so it waits on fewer turns of a busy loop, and wakes its readers six times, not 32).
void SsdStore::streamRest(std::shared_ptr<ReadStream> stream) {
  static constexpr uint32_t kMaxStreamBatch = 16;  // 1 MiB: ~0.25 ms of AES-GCM on this VM
  IoEngine* const engine = stream->engine;
  engine->post([this, stream = std::move(stream)](Status) mutable {
    const uint32_t n = stream->view.chunks.layout.chunks;
    const uint32_t i = stream->next;
    const uint32_t to = std::min(n, i + stream->batch);
    const uint32_t passed = stream->damaged ? i : verifyChunks(stream->p, stream->view, i, to);
    if (passed != to && passed > i) {
      // The chunks before a damaged one are good: the viewers get them now, and the damage is
      // reported on the next turn, once they had the chance to take those bytes.
      stream->next = passed;
      stream->damaged = true;
      stream->body->extendAdopted(ssd::chunkEnd(passed - 1, stream->view.body_bytes));
      if (stream->progress(Status(), false)) {
        streamRest(std::move(stream));
        return;
      }
      // Nobody reads on: the damage is reported, and the entry dropped, now.
    }
    if (passed != to) {
      if (!keyKnown(stream->view.key_id)) {
        // Its vhost's data key was destroyed meanwhile: gone (a purge), not damage.
        counters_.shredded_entries.fetch_add(1, std::memory_order_relaxed);
        removeIfAt(stream->key, stream->loc);
        stream->progress(Status(Code::kNotFound, Source::kStorage,
                                "SSD entry's data key was destroyed"),
                         true);
        return;
      }
      logLimited("damaged object " + stream->key.toHex() + ": body chunk " +
                 std::to_string(passed) + " of " + std::to_string(n) + " failed verification");
      const Status st = fail(stream->key, stream->loc, Code::kCorrupt,
                             encrypt_ ? "body chunk authentication tag mismatch"
                                      : "body chunk checksum mismatch");
      stream->progress(st, true);
      return;
    }
    stream->next = to;
    stream->body->extendAdopted(ssd::chunkEnd(to - 1, stream->view.body_bytes));
    stream->batch = std::min(kMaxStreamBatch, stream->batch * 2);
    const bool finished = stream->next == n;
    if (stream->progress(Status(), finished) && !finished) streamRest(std::move(stream));
  });
}

Status SsdStore::fail(const CacheKey& key, const Location& loc, Code code, const char* why) {
  if (code == Code::kCorrupt) {
    counters_.corrupt.fetch_add(1, std::memory_order_relaxed);
  } else {
    counters_.read_errors.fetch_add(1, std::memory_order_relaxed);
  }
  removeIfAt(key, loc);
  logLimited(std::string(code == Code::kCorrupt ? "damaged object " : "read error on object ") +
             key.toHex() + " (region " + std::to_string(loc.region) + ", offset " +
             std::to_string(loc.offset) + "): " + why + "; dropped, served as a miss");
  return Status(code, Source::kStorage, why);
}

Result<SsdHit> SsdStore::readSync(const CacheKey& key, IoEngine& engine) {
  std::optional<Result<SsdHit>> result;
  if (!read(key, engine, [&](Result<SsdHit> r) { result.emplace(std::move(r)); })) {
    return Status(Code::kNotFound, Source::kStorage, "not in the SSD index");
  }
  while (!result) engine.wait(std::chrono::milliseconds(100));
  return std::move(*result);
}

void SsdStore::logLimited(const std::string& line) {
  if (!options_.log) return;
  uint64_t suppressed = 0;
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    const MonoTime now = options_.clock->monoNow();
    if (!log_window_started_ || now - log_window_start_ >= kLogWindow) {
      log_window_started_ = true;
      log_window_start_ = now;
      log_lines_in_window_ = 0;
    }
    if (log_lines_in_window_ >= kLogLinesPerWindow) {
      ++log_suppressed_;
      return;
    }
    ++log_lines_in_window_;
    suppressed = std::exchange(log_suppressed_, 0);
  }
  if (suppressed) {
    options_.log(line + " (" + std::to_string(suppressed) + " similar lines suppressed before)");
  } else {
    options_.log(line);
  }
}

SsdStats SsdStore::stats() const {
  SsdStats s;
  for (Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    s.objects += shard.map.size();
    for (const auto& [key, loc] : shard.map) s.indexed_bytes += loc.entry_bytes;
  }
  // Entries answered from the checkpoint and not moved into the index yet.
  s.objects += ckpt_pending_.load(std::memory_order_relaxed);
  s.indexed_bytes += ckpt_pending_bytes_.load(std::memory_order_relaxed);
  const auto ld = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  s.regions = region_count_;
  s.region_bytes = region_bytes_;
  s.inserts_queued = ld(counters_.inserts_queued);
  {
    std::lock_guard<std::mutex> lock(q_mu_);
    s.queued_bytes = pending_bytes_;
  }
  s.inserts_dropped = ld(counters_.inserts_dropped);
  s.inserts_too_large = ld(counters_.inserts_too_large);
  s.objects_written = ld(counters_.objects_written);
  s.regions_written = ld(counters_.regions_written);
  s.region_syncs = ld(counters_.region_syncs);
  s.write_errors = ld(counters_.write_errors);
  s.regions_reclaimed = ld(counters_.regions_reclaimed);
  s.objects_reclaimed = ld(counters_.objects_reclaimed);
  s.objects_reinserted = ld(counters_.objects_reinserted);
  s.bytes_reinserted = ld(counters_.bytes_reinserted);
  s.reinsert_failures = ld(counters_.reinsert_failures);
  s.tombstones_written = ld(counters_.tombstones_written);
  s.rebuild_tombstones = ld(counters_.rebuild_tombstones);
  s.lookups = ld(counters_.lookups);
  s.index_misses = ld(counters_.index_misses);
  s.reads_from_buffer = ld(counters_.reads_from_buffer);
  s.reads_from_device = ld(counters_.reads_from_device);
  s.read_errors = ld(counters_.read_errors);
  s.corrupt = ld(counters_.corrupt);
  s.reclaimed_during_read = ld(counters_.reclaimed_during_read);
  s.rebuilt_objects = ld(counters_.rebuilt_objects);
  s.rebuild_rejected_entries = ld(counters_.rebuild_rejected_entries);
  s.rebuild_skipped_regions = ld(counters_.rebuild_skipped_regions);
  s.rebuilt_variants = ld(counters_.rebuilt_variants);
  s.rebuild_regions_scanned = ld(counters_.rebuild_regions_scanned);
  s.checkpoint_loaded = checkpoint_loaded_.load(std::memory_order_relaxed);
  s.checkpoints_written = ld(counters_.checkpoints_written);
  s.checkpoint_errors = ld(counters_.checkpoint_errors);
  s.checkpoint_seconds = static_cast<double>(checkpoint_ms_.load(std::memory_order_relaxed)) / 1000.0;
  s.writer_backend = writer_engine_ ? writer_engine_->backendName() : "";
  s.rebuilding = !ready_.load(std::memory_order_acquire);
  s.rebuild_seconds = static_cast<double>(rebuild_ms_.load(std::memory_order_relaxed)) / 1000.0;
  // The pointer only, never what it points to (that needs a shard lock).
  s.serving_from_checkpoint = ckpt_.load(std::memory_order_acquire) != nullptr;
  const int64_t serving_ms = ckpt_serving_ms_.load(std::memory_order_relaxed);
  const int64_t serving_since = ckpt_serving_started_ms_.load(std::memory_order_relaxed);
  if (serving_ms >= 0) {
    s.checkpoint_serving_seconds = static_cast<double>(serving_ms) / 1000.0;
  } else if (serving_since >= 0) {
    s.checkpoint_serving_seconds = static_cast<double>(steadyMillis() - serving_since) / 1000.0;
  }
  s.encrypted = encrypt_;
  s.ephemeral_key = ephemeral_key_;
  s.shredded_entries = ld(counters_.shredded_entries);
  if (keyring_) {
    const SsdKeyringStats k = keyring_->stats();
    s.vhost_keys = true;
    s.data_keys = k.keys;
    s.data_keys_created = k.created;
    s.data_keys_destroyed = k.destroyed;
    s.keyring_errors = k.write_errors;
    s.keyring_load_failed = k.load_failed;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// From the config

Result<std::unique_ptr<SsdStore>> openSsdStore(const conf::SsdCacheConfig& config,
                                               const Clock& clock, SsdLogFn log,
                                               std::string* error, SsdObservers observers) {
  std::string why;
  FileDeviceOptions fo;
  fo.path = config.path;
  fo.size_bytes = config.size_bytes / config.region_bytes * config.region_bytes;
  fo.direct_io = config.direct_io;
  fo.log = log;
  auto device = FileDevice::open(fo, &why);
  if (!device.isOk()) {
    if (error) *error = why;
    if (log) log("cannot open the store: " + why);
    return device.status();
  }
  const std::string described = (*device)->describe();
  SsdStoreOptions options;
  options.region_bytes = config.region_bytes;
  options.encrypt = config.encrypt;
  options.writer_backend = config.io_backend;
  options.max_pending_bytes = config.write_queue_bytes;
  options.sync_interval = config.sync_interval;
  options.reclaim = config.reclaim;
  options.background_rebuild = config.background_rebuild;
  options.checkpoint_path = config.checkpoint;
  options.checkpoint_interval = config.checkpoint_interval;
  options.keyring_path = config.keyring;
  options.clock = &clock;
  options.log = log;
  options.observers = std::move(observers);
  if (config.encrypt && !config.key_file.empty()) {
    auto key = loadStoreKey(config.key_file, &why);
    if (!key.isOk()) {
      // The operator asked for a persistent key: starting with another one would silently
      // throw the store away.
      if (error) *error = why;
      if (log) log("cannot load cache.ssd.key_file: " + why);
      return key.status();
    }
    options.key = *key;
    wipeStoreKey(*key);
  }
  auto store = SsdStore::open(std::move(*device), std::move(options));
  if (!store.isOk()) {
    if (error) *error = store.status().toString();
    if (log) log("cannot open the store: " + store.status().toString());
    return store.status();
  }
  if (log) {
    const SsdStats s = (*store)->stats();
    log("store " + described + ": " + std::to_string(s.regions) + " regions of " +
        bytesText(s.region_bytes) + ", encryption " +
        (s.encrypted ? (s.ephemeral_key ? "on (ephemeral key)" : "on") : "OFF") +
        ", I/O backend " + s.writer_backend + ", reclaim " +
        (config.reclaim == conf::SsdReclaim::kReinsert ? "reinsert" : "fifo") + ", " +
        (s.rebuilding ? std::string("index rebuilding in the background (SSD misses until done)")
                      : std::to_string(s.objects) + " objects indexed"));
  }
  return store;
}

}  // namespace streamedge::cache

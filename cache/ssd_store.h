// SsdStore: the SSD tier's engine, a log-structured store in the manner of CacheLib Navy's
// BlockCache. The device is split into regions; complete objects (key, head, freshness, body)
// are appended to the one in-memory region buffer by a writer thread, and a full region is
// written with one I/O; when the writer moves on, the next region in ring order is reclaimed
// whole: its objects leave the index (FIFO), or, with reinsertion, those read since they were
// written and still worth keeping are first copied, verified and unchanged (still sealed), into
// the region that replaces it. Every entry carries an xxh3-64 checksum and, with
// encryption on, is sealed with AES-256-GCM (random 96-bit nonce, entry header as AAD). The
// index (key → region, offset, size, checksum, freshness summary) lives in RAM, sharded, and is
// rebuilt at open() by scanning and verifying every region: what was not fully written is
// absent. With `background_rebuild` the scan runs on the writer thread while the store is
// already in use (an empty index until it is done: misses, never wrong answers; admissions
// wait in the queue), so that a large store does not hold the proxy's start for minutes.
// With an index checkpoint (ssd_checkpoint.h) the store answers from the checkpoint's own
// entries (sorted by key: a binary search) as soon as it is loaded and the regions written
// after it are scanned, while the index is built from it in the background
// (SsdStats::serving_from_checkpoint): an entry is answered from there only while its region
// still holds what the checkpoint saw (not rewritten after it, not reclaimed), no later copy or
// tombstone of its key was found, and no remove() (purge), destroyed data key or failed read
// has dropped it since; invalidate() marks it. Reads are asynchronous on the caller's IoEngine
// and verified before any byte is handed out (an entry of format version 3 chunk by chunk, each
// 64 KiB chunk handed out once it passed: see read() with a progress callback); a mismatch or
// I/O error is logged (rate-limited), counted, dropped from the index and reported as a miss.
//
// remove() writes a tombstone entry (key only, sealed like any entry) after the key's copies:
// at rebuild it deletes every older copy, so a purge or an answer that became uncacheable
// survives a restart. Ring order guarantees the tombstone's region outlives the older copies.
//
// Variants (RFC 9111 §4.1, see cache.h): an entry written for a variant of a URL whose answers
// vary carries the URL's key (its primary key). The rebuild hands the variants it found, with
// the field names of their stored Vary, to the RAM tier's index (setVariantObserver), which
// makes the URL's vary marker from them: after a restart lookups find those variants again and
// a purge of the URL removes them. Variants that leave the index other than by remove()
// (reclaim, damage, a failed write) are reported too, so that the index forgets them.
//
// Per-vhost data keys (crypto-shredding, see ssd_keyring.h): with encryption on and a keyring,
// an object whose head carries a `:vhost` label is sealed with that vhost's own data key, whose
// id its entry header records (EntryHeader::key_id, authenticated as AAD); tombstones and
// objects without a vhost use the store key (id 0). destroyVhostKey() makes every entry of the
// vhost unreadable at once: reads, reinsertion, the rebuild and the checkpoint load treat an
// entry whose key id is unknown as gone (SsdStats::shredded_entries), never as data.
//
// Objects bigger than a region (minus headers) are refused (kept in RAM only): spanning regions
// would make reclaim and torn-write detection multi-region for objects that HLS/DASH segments
// (1-10 MB) never are; region_size can be raised instead.
//
// Thread-safety: all public methods are thread-safe. insert() only queues; the writer thread
// does serialisation, encryption and device writes. read() callbacks run on the thread that
// polls the given engine. Ownership: the store owns its device; every IoEngine used with read()
// must be destroyed (or drained) before the store.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cache/cache_key.h"
#include "cache/freshness.h"
#include "cache/object.h"
#include "cache/purge_labels.h"
#include "cache/retention.h"
#include "cache/ssd_checkpoint.h"
#include "cache/ssd_crypto.h"
#include "cache/ssd_device.h"
#include "cache/ssd_format.h"
#include "cache/ssd_io_engine.h"
#include "cache/ssd_keyring.h"
#include "cache/vary.h"
#include "conf/clock.h"
#include "conf/config.h"
#include "conf/status.h"

namespace streamedge::cache {

// Latency observers (metrics). `read`: from read() to the verified result, called on the thread
// that polls the engine; `write`: one device write of a region, called on the writer thread.
struct SsdObservers {
  std::function<void(std::chrono::nanoseconds)> read;
  std::function<void(std::chrono::nanoseconds)> write;
};

struct SsdStoreOptions {
  uint64_t region_bytes = 16ull << 20;  // a multiple of the device alignment
  bool encrypt = true;
  // The store key. encrypt && !key: a random key is made and nothing on the device is read at
  // open (it was written under a key that no longer exists).
  std::optional<StoreKey> key;
  conf::IoBackend writer_backend = conf::IoBackend::kAuto;  // the writer thread's engine
  uint64_t max_pending_bytes = 64ull << 20;  // queued admissions; beyond, insert() drops
  // When the writer has been idle this long with objects in the open region that are not on
  // the device yet, it writes the region's used part (the region stays open for more). Bounds
  // what a crash (kill -9, power loss) can lose at low traffic. Zero: only full regions and
  // flush()/close are written.
  std::chrono::milliseconds sync_interval{1000};
  // FIFO or reinsertion of read objects at reclaim (openSsdStore passes the configured one).
  conf::SsdReclaim reclaim = conf::SsdReclaim::kFifo;
  // Rebuild the index on the writer thread after open() returns (see above). Else open()
  // returns once the index is complete.
  bool background_rebuild = false;
  // The index checkpoint (ssd_checkpoint.h): loaded (and removed) at open, so that only the
  // regions written after it are scanned; written at a graceful stop and every
  // checkpoint_interval while objects are being written (zero: only at a graceful stop).
  // "" = no checkpoint (every open scans the whole device).
  std::string checkpoint_path;
  std::chrono::milliseconds checkpoint_interval{300'000};
  // The keyring of per-vhost data keys (ssd_keyring.h). With encryption on: a file path, or ""
  // for none (every entry sealed with the store key: a vhost purge cannot shred). With an
  // ephemeral key the data keys are kept in memory only, whatever this says (an existing file
  // at the path is removed: what it protected cannot be read by this run, and it must not
  // outlive a purge made by it).
  std::string keyring_path;
  // Tests only: the format version of the regions written (ssd_format.h): 2 writes unchunked
  // entries, as before chunked entries existed (the store reads both).
  uint32_t write_format_version = ssd::kFormatVersion;
  // Tests only: no checkpoint at close (as after a crash).
  bool checkpoint_at_close = true;
  // Tests only: runs on the rebuilding thread after the scan, before the index is filled (with
  // a checkpoint: once lookups are answered from it, before its entries enter the index).
  std::function<void()> before_rebuild_apply;
  const Clock* clock = &SystemClock::instance();
  SsdLogFn log = ssdLogToStderr;
  SsdObservers observers;
};

// A verified object read from the store.
struct SsdHit {
  CacheKey key;
  std::shared_ptr<const ResponseHead> head;
  Freshness freshness;
  // Complete and frozen; or, when `streaming`, readable only up to what is verified so far
  // (Body::adoptGrowing): the store extends it as it verifies more (see read() with progress).
  Ref<Body> body;
  bool streaming = false;
  // Soft-purged (SsdStore::invalidate): stale whatever its freshness says; revalidate it.
  bool invalidated = false;
};

// A complete CacheObject holding the hit's head, freshness and body (shareable: only shareable
// objects are stored).
ObjectRef makeCompleteObject(const SsdHit& hit);

// A variant of a URL whose answers vary, as the store knows it.
struct SsdVariant {
  CacheKey key;      // the variant's own key
  CacheKey primary;  // its URL's key
  // The field names of its stored head's Vary (rebuild only; shared between variants that
  // name the same fields). Null in onSsdVariantsGone.
  std::shared_ptr<const VaryNames> names;
};

// The RAM tier's index, told by the store about the variants on the device.
class SsdVariantObserver {
 public:
  // The variants the start-up rebuild indexed, oldest write first. Called once, on the thread
  // that calls setVariantObserver() or on the rebuilding thread, whichever comes last; a
  // remove() meanwhile waits for it (a purge of a URL either comes first, and its variants are
  // not in the list, or after, and finds them). Must not call into the store. Returns the
  // variant keys it does not keep (e.g. over its bounds): the store removes them.
  virtual std::vector<CacheKey> adoptSsdVariants(std::vector<SsdVariant> variants) = 0;
  // Variants that left the index other than by remove(): region reclaimed, damaged or unreadable
  // on read, write failed. On the writer thread or a reading thread; may call find(),
  // contains() and queuedObject(), never remove() or setVariantObserver().
  virtual void onSsdVariantsGone(const std::vector<SsdVariant>& variants) = 0;

 protected:
  ~SsdVariantObserver() = default;
};

// What the index knows of an object without reading it.
struct SsdEntryInfo {
  uint64_t body_bytes = 0;
  uint32_t entry_bytes = 0;
  WallTime fresh_until{};  // response_time - initial age + lifetime (response_time if no-cache)
  WallTime usable_until{}; // fresh_until + max(stale-while-revalidate, stale-if-error)
  bool revalidatable = false;  // the head has an ETag or a Last-Modified
  WallTime stored_at{};        // response time (whole seconds, rounded down): retention.h
};

// An indexed object past its vhost's retention (SsdStore::expiredEntries).
struct SsdExpired {
  CacheKey key;
  CacheKey primary;  // a variant's URL key; zero when not a variant
  std::shared_ptr<const PurgeLabels> labels;  // null when its head had none
};

struct SsdStats {
  uint64_t objects = 0;           // in the index
  uint64_t indexed_bytes = 0;     // their entries' bytes on the device (or in the open region)
  uint32_t regions = 0;
  uint64_t region_bytes = 0;
  uint64_t inserts_queued = 0;
  uint64_t queued_bytes = 0;      // admissions waiting for the writer now
  uint64_t inserts_dropped = 0;   // queue full, store closing
  uint64_t inserts_too_large = 0; // bigger than a region: RAM only
  uint64_t objects_written = 0;   // appended to a region
  uint64_t regions_written = 0;
  uint64_t region_syncs = 0;      // open region's used part written after an idle interval
  uint64_t write_errors = 0;
  uint64_t regions_reclaimed = 0;
  uint64_t objects_reclaimed = 0;
  uint64_t objects_reinserted = 0; // copied into the new region at reclaim
  uint64_t bytes_reinserted = 0;
  uint64_t reinsert_failures = 0;  // a candidate failed its read or checks: dropped
  uint64_t tombstones_written = 0;
  uint64_t rebuild_tombstones = 0; // copies deleted at rebuild by a newer tombstone
  uint64_t lookups = 0;           // read() calls
  uint64_t index_misses = 0;
  uint64_t reads_from_buffer = 0; // the entry was still in the region buffer
  uint64_t reads_from_device = 0;
  uint64_t read_errors = 0;       // device I/O failed
  uint64_t corrupt = 0;           // checksum, tag, header or key mismatch
  uint64_t reclaimed_during_read = 0;
  uint64_t rebuilt_objects = 0;
  uint64_t rebuild_rejected_entries = 0;
  uint64_t rebuild_skipped_regions = 0;  // torn/bad header, other key, other encryption mode,
                                         // older format version
  uint64_t rebuilt_variants = 0;  // variants handed to the RAM tier's index by the rebuild
  uint64_t rebuild_regions_scanned = 0;  // read whole at open (all of them without a checkpoint)
  bool checkpoint_loaded = false;        // the index came from a checkpoint
  uint64_t checkpoints_written = 0;
  uint64_t checkpoint_errors = 0;        // a checkpoint could not be written
  double checkpoint_seconds = 0;         // how long the last one took to write
  const char* writer_backend = "";
  bool rebuilding = false;        // the start-up scan is still running (index empty until done)
  double rebuild_seconds = 0;     // how long the start-up scan took
  // Lookups are answered from the loaded checkpoint while the index is built from it; how long
  // that lasted (so far, while it lasts).
  bool serving_from_checkpoint = false;
  double checkpoint_serving_seconds = 0;
  bool encrypted = false;
  bool ephemeral_key = false;
  // Per-vhost data keys (ssd_keyring.h): in use, held now, made and destroyed since open,
  // keyring file write errors, and entries left out or dropped because the data key that sealed
  // them is gone (destroyed by a vhost purge, or lost with a damaged keyring).
  bool vhost_keys = false;
  uint64_t data_keys = 0;
  uint64_t data_keys_created = 0;
  uint64_t data_keys_destroyed = 0;
  uint64_t keyring_errors = 0;
  bool keyring_load_failed = false;
  uint64_t shredded_entries = 0;
};

class SsdStore {
 public:
  // Opens the store on `device` and rebuilds the index from it. Errors: kInvalid (region size
  // not a multiple of the device alignment, fewer than 2 regions, region over 1 GiB),
  // kUnavailable/kIo (no I/O engine), kInternal (no random key).
  static Result<std::unique_ptr<SsdStore>> open(std::unique_ptr<Device> device,
                                                SsdStoreOptions options);
  // Writes what was queued and the open region, then stops the writer.
  ~SsdStore();
  SsdStore(const SsdStore&) = delete;
  SsdStore& operator=(const SsdStore&) = delete;

  // Queues a complete, shareable object for writing. False (and counted) when it is not
  // complete or shareable, bigger than a region, the queue is full, or the store is closing.
  // The object is readable (from the region buffer) once the writer has appended it.
  // `primary`: for a variant of a URL whose answers vary, the URL's key; else zero.
  bool insert(const ObjectRef& object, const CacheKey& primary = {});
  bool insert(const CacheKey& key, std::shared_ptr<const ResponseHead> head,
              const Freshness& freshness, Ref<Body> body, const CacheKey& primary = {});

  // Sets the RAM tier's index that is told about variants (see SsdVariantObserver). Hands it
  // the rebuilt variants at once when the rebuild is done.
  void setVariantObserver(SsdVariantObserver* observer);
  // Before `observer` goes away: no more calls to it (waits for one in progress). No-op when
  // another observer was set since.
  void unsetVariantObserver(SsdVariantObserver* observer);
  // Waits until everything queued before the call is appended, then writes the open region to
  // the device (the next insert opens a new region). Returns the write error, if any.
  Status flush();

  std::optional<SsdEntryInfo> find(const CacheKey& key) const;
  // The object queued for writing under `key` and not indexed yet (null if none): lets the RAM
  // tier take back an object it has just evicted instead of missing until the writer gets to it.
  ObjectRef queuedObject(const CacheKey& key) const;
  bool contains(const CacheKey& key) const { return find(key).has_value(); }
  // Forgets `key`: writes of it queued before the call are cancelled and a tombstone is
  // queued, so that no copy comes back after a restart. The sealed bytes stay on the device
  // until their region is reclaimed. True when something was forgotten or cancelled, or the
  // index is still being rebuilt (the key is kept out of it, and its tombstone written if the
  // rebuild finds a copy). While lookups are answered from the checkpoint, its entry of `key`
  // is dropped there (never answered again, never indexed) and a tombstone queued.
  bool remove(const CacheKey& key);
  // Soft purge: `key`'s copy is stale from now on (find() reports it so, reads set
  // SsdHit::invalidated) until a newer copy replaces it. Kept in the index checkpoint; a restart
  // that has to scan the device (no checkpoint, after a crash) forgets it. True when indexed.
  bool invalidate(const CacheKey& key);
  // The keys of indexed objects whose purge labels (purge_labels.h) `selector` matches. Scans
  // the index shard by shard, each under its lock (no I/O).
  std::vector<CacheKey> keysMatching(const PurgeSelector& selector) const;
  // Crypto-shredding of a whole vhost (after its objects were purged): destroys the vhost's
  // data key, durably out of the keyring file before returning, and drops what the index still
  // holds under it. Every entry it sealed is unreadable from now on; the vhost's next object
  // gets a fresh key. Returns the destroyed key's id, kStoreKeyId when the vhost had none or the
  // store has no per-vhost keys. Errors: kIo (the keyring file could not be rewritten: the key
  // is gone from memory but its wrapped copy is still in the file; logged).
  Result<uint32_t> destroyVhostKey(std::string_view vhost);
  // The keyring (null without per-vhost keys).
  const SsdKeyring* keyring() const { return keyring_.get(); }
  // One step of the retention sweep: looks at about `budget` index entries from where the
  // previous call stopped (wrapping around the index), each shard under its lock for at most
  // that many entries (no I/O, no allocation under it), and returns those whose vhost label
  // has a limit in `table` that they are past at `now`. Entries without a :vhost label are not
  // judged here (a lookup judges them by the vhost it routes to). The caller removes them.
  std::vector<SsdExpired> expiredEntries(const RetentionTable& table, WallTime now,
                                         size_t budget) const;

  // Read path. Returns false at once when `key` is not in the index (a miss). Else `done` is
  // called exactly once from a later engine.poll() on this thread, with the verified object, or
  // with kNotFound (reclaimed meanwhile), kCorrupt or kIo; after the last two the key is gone
  // from the index.
  using ReadDone = std::function<void(Result<SsdHit>)>;
  bool read(const CacheKey& key, IoEngine& engine, ReadDone done);
  // Streaming read of a chunked entry (ssd_format.h): as read(), but `done` gets the hit as soon
  // as its head and first body chunk are verified, with SsdHit::streaming set and hit.body
  // readable up to what is verified. The store then verifies the rest on later turns of the
  // engine (1, 2, 4, ... at most 16 chunks a turn), extends hit.body over what passed and calls
  // `progress`: (ok, false) more is
  // readable; (ok, true) the whole body is verified; (kCorrupt, true) a chunk failed, nothing
  // past the chunks before it ever becomes readable, and the key is gone from the index
  // ((kNotFound, true) likewise when its vhost's data key was destroyed meanwhile). When
  // `progress` returns false no more is verified and it is not called again, except once with
  // (kCorrupt, true) when the turn that extended the body last had found the next chunk damaged
  // (the entry is dropped then, not left for the next reader). Unchunked and
  // single-chunk entries come whole, as from read() (streaming false, progress never called).
  // If the engine is destroyed first, `progress` is dropped uncalled.
  using ReadProgress = std::function<bool(Status, bool finished)>;
  bool read(const CacheKey& key, IoEngine& engine, ReadDone done, ReadProgress progress);
  // read() and wait for it (tests, tools; never on a worker loop). kNotFound for a miss.
  Result<SsdHit> readSync(const CacheKey& key, IoEngine& engine);

  Device& device() const { return *device_; }
  uint32_t regionCount() const { return region_count_; }
  uint64_t regionBytes() const { return region_bytes_; }
  // Largest body (with a small head) that fits in a region.
  uint64_t maxEntryBytes() const;
  SsdStats stats() const;
  // False while a background rebuild runs.
  bool ready() const { return ready_.load(std::memory_order_acquire); }

 private:
  struct Location {
    uint32_t region = 0;
    uint32_t offset = 0;      // of the entry header inside the region
    uint32_t entry_bytes = 0;
    uint64_t seq = 0;         // the region's sequence number when written
    uint64_t checksum = 0;
    uint64_t body_bytes = 0;
    int64_t fresh_until_s = 0;
    int64_t usable_until_s = 0;
    int64_t stored_at_s = 0;   // response time: retention runs from it
    bool hit = false;          // read since written (reinsertion candidate)
    bool validators = false;   // ETag or Last-Modified: a stale copy can be revalidated
    uint32_t names = 0;        // a variant's Vary names: an id of internNames(); 0 = none
    CacheKey primary;          // a variant's URL key; zero when not a variant
    bool invalidated = false;  // soft-purged: stale whatever fresh_until_s says
    // The object's vhost, path and surrogate keys (null when its head had none): purges by
    // host, prefix and tag find objects that are only on the SSD.
    std::shared_ptr<const PurgeLabels> labels;
    uint32_t key_id = kStoreKeyId;  // the data key that sealed it
  };
  struct Job {
    uint64_t flush_ticket = 0;  // non-zero: a flush marker
    CacheKey key;
    ObjectRef object;           // keeps head and body alive; or:
    std::shared_ptr<const ResponseHead> head;
    Freshness freshness;
    Ref<Body> body;
    uint64_t bytes = 0;
    bool tombstone = false;     // remove(): key only
    CacheKey primary;           // a variant's URL key (written into the entry)
  };
  // A reinsertion candidate, read into reinsert_buf_ at `buf_offset`.
  struct Carry {
    CacheKey key;
    Location loc;
    size_t buf_offset = 0;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<CacheKey, Location, CacheKeyHash> map;  // guarded by mu
  };
  // What verifyEntry() found.
  struct EntryView {
    CacheKey key;
    CacheKey primary;
    uint64_t checksum = 0;
    uint32_t entry_bytes = 0;
    const uint8_t* head = nullptr;
    size_t head_bytes = 0;
    const uint8_t* body = nullptr;
    uint64_t body_bytes = 0;
    bool tombstone = false;
    uint32_t key_id = kStoreKeyId;
    bool chunked = false;       // format version 3: the body is verified chunk by chunk
    ssd::ChunkedView chunks;    // when chunked
  };
  // kNoKey: sealed with a data key that is gone (shredded); skip `entry_bytes` like kBadContent.
  enum class Verify { kOk, kBadHeader, kBadContent, kNoKey };
  static constexpr size_t kShards = 16;

  SsdStore(std::unique_ptr<Device> device, SsdStoreOptions options, uint32_t region_count,
           bool ephemeral_key);

  bool enqueue(Job job);
  void writerLoop();
  void append(const Job& job);
  // Seals an entry of `sealed_bytes` (EntryMeta + head blob + body, already at p + header)
  // in place at the cursor; false (counted, logged) when the CSPRNG or the cipher fails.
  // `key_id` and `cipher`: the data key (kStoreKeyId and null: the store key).
  bool sealEntry(uint8_t* p, uint16_t flags, uint64_t sealed_bytes, uint64_t entry_bytes,
                 uint32_t key_id = kStoreKeyId, const EntryCipher* cipher = nullptr);
  // Builds a chunked entry (format version 3) in place at `p`, EntryMeta, head blob and body
  // already at their layout offsets; `*checksum` gets EntryMeta::checksum. False (counted,
  // logged) when the CSPRNG or the cipher fails.
  bool sealChunked(uint8_t* p, const CacheKey& key, const CacheKey& primary, size_t head_bytes,
                   uint64_t body_bytes, uint32_t key_id, const EntryCipher* cipher,
                   uint64_t* checksum);
  // The cipher of key `id` (the store key for kStoreKeyId); null when it is unknown.
  std::shared_ptr<const EntryCipher> cipherFor(uint32_t id) const;
  bool keyKnown(uint32_t id) const { return id == kStoreKeyId || (keyring_ && keyring_->known(id)); }
  // Makes room for `entry_bytes` at the cursor (writes the full region, opens the next).
  bool reserve(uint64_t entry_bytes);
  bool openNextRegion();
  // Reads the entries of `region` worth reinserting into reinsert_buf_ (writer thread).
  std::vector<Carry> readCarries(uint32_t region, uint64_t seq);
  // Copies the verified carries into the open region and points the index at them.
  std::vector<CacheKey> placeCarries(const std::vector<Carry>& carries, uint64_t old_seq);
  Status sealAndWrite();
  // Writes header + entries so far of the open region, which stays open (idle sync).
  Status syncOpenRegion();
  Status writeOpenRegion(bool close);
  void dropRegionEntries(uint32_t region, uint64_t seq, bool count_as_reclaim);
  Status writeSync(uint64_t offset, const uint8_t* buf, size_t len);
  Status readSyncAt(uint64_t offset, uint8_t* buf, size_t len);
  // Submits one I/O on the writer's engine (`submit` passes it the completion) and waits.
  Status waitForIo(const std::function<Status(IoEngine::Callback)>& submit);

  // The loaded checkpoint while the index is built from it (rebuild()). Lookups that miss the
  // index look here (binary search). Published in ckpt_ under rebuild_mu_, retired after ready_
  // is set: a reader loads ckpt_ only under a shard lock and uses it only while holding it.
  struct CheckpointIndex {
    // Entries sorted by key, their labels in the file's bytes (ssd::labelsAt); const while
    // published.
    ssd::Checkpoint cp;
    std::vector<uint32_t> name_ids;  // checkpoint name list → internNames() id (0: none)
    std::array<std::vector<uint32_t>, kShards> by_shard;  // entry indexes per index shard
    // Per entry, under the shard lock of its key: kCkpt* bits.
    std::unique_ptr<uint8_t[]> flags;
  };
  static constexpr uint8_t kCkptDead = 1;         // removed, dropped, or superseded by a later copy
  static constexpr uint8_t kCkptApplied = 2;      // in the index now (or a newer copy is)
  static constexpr uint8_t kCkptInvalidated = 4;  // soft-purged while served from here
  static constexpr uint8_t kCkptHit = 8;          // read while served from here (reinsertion)

  // Scans every region (or loads the checkpoint and scans the regions written after it) and
  // fills the index; false when the store began closing meanwhile.
  bool rebuild();
  // Under the shard lock of `key`: the index of its checkpoint entry in `*ci` when lookups
  // may be answered from it (not dead, not applied, its region unchanged, its key known).
  std::optional<size_t> checkpointEntryLocked(const CacheKey& key, CheckpointIndex** ci) const;
  bool checkpointLiveLocked(const CheckpointIndex& ci, size_t i) const;
  // An entry's live → dead or applied transition (under its shard lock).
  void retireCheckpointEntryLocked(CheckpointIndex& ci, size_t i, uint8_t flag);
  // What the index would hold for entry `i` (locationOf: with the flags, under the lock).
  Location locationOf(const CheckpointIndex& ci, size_t i) const;
  static Location entryLocation(const CheckpointIndex& ci, size_t i);
  // Moves the checkpoint's live entries into the index, shard by shard in small batches
  // (rebuilding thread; lookups go on meanwhile).
  void applyCheckpoint(CheckpointIndex& ci);
  // The checkpoint, if there is a usable one (removed from disk either way); logs why not.
  std::optional<ssd::Checkpoint> loadCheckpoint();
  // Writes the index checkpoint (writer thread). The open region's entries are left out: a
  // restart scans that region again.
  Status writeCheckpoint();
  // Vary name lists of variants, interned (writer thread, and the rebuild before it): id ≥ 1.
  uint32_t internNames(VaryNames names);
  const std::shared_ptr<const VaryNames>& namesOf(uint32_t id) const { return names_table_[id - 1]; }
  // Checks one entry at `p` (at most `avail` bytes), decrypting in place. kBadHeader: the
  // header itself is unusable (stop scanning the region); kBadContent: skip `*entry_bytes`.
  // `body`: false leaves a chunked entry's body chunks unchecked (verifyChunks does them);
  // an unchunked entry is always verified whole.
  Verify verifyEntry(uint8_t* p, size_t avail, EntryView* view, const char** why,
                     bool body = true) const;
  // Verifies (decrypting in place) chunks [from, to) of a chunked entry that verifyEntry passed
  // without its body. Returns the index of the first damaged chunk, or `to`.
  uint32_t verifyChunks(uint8_t* p, const EntryView& view, uint32_t from, uint32_t to) const;
  // Verifies the entry at `p` (inside `buffer`) and builds the hit over `buffer`'s memory.
  // With `progress` (and `engine`), a chunked entry of several chunks is handed out after its
  // first chunk and verified on from the engine (streamRest).
  Result<SsdHit> finishRead(const CacheKey& key, const Location& loc, uint8_t* p,
                            const std::shared_ptr<AlignedBuffer>& buffer,
                            IoEngine* engine = nullptr, const ReadProgress* progress = nullptr);
  struct ReadStream;
  // Verifies the next chunks of a streaming read on a later turn of its engine, and so on.
  void streamRest(std::shared_ptr<ReadStream> stream);
  Status fail(const CacheKey& key, const Location& loc, Code code, const char* why);
  void removeIfAt(const CacheKey& key, const Location& loc);
  // remove() of one key (the variants of a URL not handed over yet aside).
  bool removeKey(const CacheKey& key);
  // Hands rebuilt_variants_ to the observer when both are there; removes what it refuses.
  void deliverVariants();
  // Tells the observer (or the list not handed over yet) that these variants left the index.
  void variantsGone(std::vector<SsdVariant> gone);
  void logLimited(const std::string& line);
  Shard& shardFor(const CacheKey& key) const { return shards_[key.lo & (kShards - 1)]; }
  static Location summarize(const Freshness& f, Location loc);

  // --- const after construction
  const std::unique_ptr<Device> device_;
  SsdStoreOptions options_;  // const after construction; the key is wiped from it
  const uint64_t region_bytes_;
  const uint32_t region_count_;
  const bool encrypt_;
  const bool ephemeral_key_;
  std::shared_ptr<const EntryCipher> cipher_;  // the store key
  std::unique_ptr<SsdKeyring> keyring_;        // per-vhost data keys; null: store key only
  std::array<uint8_t, 8> key_check_{};
  std::unique_ptr<IoEngine> writer_engine_;  // used by the rebuild, then the writer only
  std::atomic<bool> ready_{false};           // the index is rebuilt
  std::atomic<int64_t> rebuild_ms_{0};
  // Keys removed while the rebuild ran: the rebuilt index must not bring them back.
  std::mutex rebuild_mu_;
  std::vector<CacheKey> removed_while_rebuilding_;  // guarded by rebuild_mu_
  // Answering from the checkpoint (see CheckpointIndex); owned by the rebuilding thread.
  std::atomic<CheckpointIndex*> ckpt_{nullptr};
  // Its entries not applied nor dropped yet (stats: they count as indexed).
  std::atomic<uint64_t> ckpt_pending_{0};
  std::atomic<uint64_t> ckpt_pending_bytes_{0};
  std::atomic<int64_t> ckpt_serving_started_ms_{-1};  // steady clock; -1: never
  std::atomic<int64_t> ckpt_serving_ms_{-1};          // the window's length once over

  // Variants found by the rebuild, until the observer has them. Lock order: variants_mu_, then
  // the observer's locks, then shard/queue locks; never taken under any other lock of ours.
  std::mutex variants_mu_;
  SsdVariantObserver* variant_observer_ = nullptr;  // guarded by variants_mu_
  std::vector<SsdVariant> rebuilt_variants_;         // guarded by variants_mu_
  // rebuilt_variants_ holds variants not handed over: remove() of a URL takes its variants too.
  std::atomic<bool> variants_pending_{false};

  mutable std::array<Shard, kShards> shards_;
  // Sequence number of each region's current content, 0 = empty. Written by the writer (and
  // rebuild), read by readers to see whether a region was reclaimed under their read.
  std::unique_ptr<std::atomic<uint64_t>[]> region_seq_;

  // The region buffer. Bytes below the writer's cursor are immutable until the buffer moves to
  // another region, which happens under buf_mu_.
  AlignedBuffer buf_;
  std::mutex buf_mu_;
  int64_t mem_region_ = -1;  // guarded by buf_mu_: region held in buf_, -1 none
  uint64_t mem_seq_ = 0;     // guarded by buf_mu_

  // --- writer thread only (and open() before it starts)
  std::vector<std::shared_ptr<const VaryNames>> names_table_;  // internNames()
  bool checkpoint_pending_ = false;  // the index changed since the last checkpoint
  MonoTime last_checkpoint_{};
  std::atomic<bool> checkpoint_loaded_{false};
  std::atomic<int64_t> checkpoint_ms_{0};
  std::vector<std::vector<CacheKey>> region_keys_;  // keys written per region, for reclaim
  AlignedBuffer reinsert_buf_;  // a region's worth, allocated at the first reinsertion
  bool region_open_ = false;
  uint32_t open_region_ = 0;
  uint32_t cursor_ = 0;
  uint32_t synced_cursor_ = 0;  // the open region's bytes already on the device
  uint32_t entry_count_ = 0;
  uint32_t next_region_ = 0;
  uint64_t next_seq_ = 1;

  // --- the writer's queue
  mutable std::mutex q_mu_;
  std::condition_variable q_cv_;
  std::condition_variable flushed_cv_;
  std::deque<Job> jobs_;             // guarded by q_mu_
  // Objects of queued jobs (and of the one being appended) by key, until indexed.
  std::unordered_map<CacheKey, ObjectRef, CacheKeyHash> queued_;  // guarded by q_mu_
  uint64_t pending_bytes_ = 0;       // guarded by q_mu_
  bool stopping_ = false;            // guarded by q_mu_
  uint64_t flush_requested_ = 0;     // guarded by q_mu_
  uint64_t flush_done_ = 0;          // guarded by q_mu_
  Status flush_status_;              // guarded by q_mu_
  // The job the writer is appending: a remove() of its key meanwhile cancels its index entry.
  bool appending_ = false;            // guarded by q_mu_
  CacheKey appending_key_;            // guarded by q_mu_
  bool appending_cancelled_ = false;  // guarded by q_mu_
  std::thread writer_;

  // Where expiredEntries() goes on: shard, bucket of its map.
  mutable std::mutex sweep_mu_;
  mutable size_t sweep_shard_ = 0;   // guarded by sweep_mu_
  mutable size_t sweep_bucket_ = 0;  // guarded by sweep_mu_

  std::mutex log_mu_;
  bool log_window_started_ = false;  // guarded by log_mu_
  MonoTime log_window_start_{};      // guarded by log_mu_
  int log_lines_in_window_ = 0;      // guarded by log_mu_
  uint64_t log_suppressed_ = 0;      // guarded by log_mu_

  struct Counters {
    std::atomic<uint64_t> inserts_queued{0}, inserts_dropped{0}, inserts_too_large{0},
        objects_written{0}, regions_written{0}, region_syncs{0}, write_errors{0}, regions_reclaimed{0},
        objects_reclaimed{0}, objects_reinserted{0}, bytes_reinserted{0}, reinsert_failures{0},
        tombstones_written{0}, rebuild_tombstones{0}, lookups{0}, index_misses{0}, reads_from_buffer{0},
        reads_from_device{0}, read_errors{0}, corrupt{0}, reclaimed_during_read{0},
        rebuilt_objects{0}, rebuild_rejected_entries{0}, rebuild_skipped_regions{0},
        rebuilt_variants{0}, rebuild_regions_scanned{0}, checkpoints_written{0},
        checkpoint_errors{0}, shredded_entries{0};
  };
  mutable Counters counters_;
};

// Opens the configured store: the file or block device (FileDevice), the key (key_file, or an
// ephemeral key, logged), the writer's engine per io_backend. Logs one summary line. Errors:
// those of FileDevice::open, loadStoreKey and SsdStore::open; `error` gets a readable line.
Result<std::unique_ptr<SsdStore>> openSsdStore(const conf::SsdCacheConfig& config,
                                               const Clock& clock, SsdLogFn log = ssdLogToStderr,
                                               std::string* error = nullptr,
                                               SsdObservers observers = {});

}  // namespace streamedge::cache

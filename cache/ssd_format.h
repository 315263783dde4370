// On-disk format of the SSD store (format version 2). All integers little-endian, structs
// packed by construction (sized fields, explicit padding, static_assert on sizeof).
//
// A store is an array of regions of `region_bytes`. A region, written whole in one I/O:
//   RegionHeader | entry | entry | ... | (unused tail, never parsed)
// An entry (starting 8-byte aligned):
//   EntryHeader (clear; the GCM AAD) | sealed part | GCM tag (16, when encrypted) | pad to 8
// The sealed part (AES-256-GCM ciphertext when the region is encrypted, else plaintext):
//   EntryMeta | head blob (ResponseHead + Freshness, see encodeHead) | body bytes
// EntryMeta carries the key and the xxh3-64 checksum, so that with encryption on neither the
// key (a hash of the URL) nor a checksum of known content can be read or confirmed on disk.
// It also carries, for a variant of a URL whose answers vary (RFC 9111 §4.1), the URL's own key
// (its primary key): at rebuild the store tells the RAM tier which variants each URL has on
// the device, so that lookups find them and a purge of the URL removes them after a restart too.
//
// Data keys: EntryHeader::key_id names the key that sealed the entry (0: the store key; else
// a per-vhost data key of the store's keyring, ssd_keyring.h). It was a reserved field written
// as zero, so version-2 regions written before data keys existed read as sealed with the store
// key, as they were: no version change. An unencrypted entry must say 0.
//
// Versions: 1 had no primary key in EntryMeta (40 bytes). A region of another version is left
// out at rebuild (counted and logged) and reused in ring order: a version-1 variant cannot be
// tied to its URL, so serving it could outlive a purge.
//
// Pure functions and plain structs; thread-safe.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cache/cache_key.h"
#include "cache/freshness.h"
#include "cache/response_head.h"

namespace streamedge::cache::ssd {

static_assert(std::endian::native == std::endian::little, "the SSD format is little-endian");

constexpr uint64_t kRegionMagic = 0x31474552'45455453ull;  // "STEEREG1"
constexpr uint32_t kEntryMagic = 0x45454553u;              // "SEEE"
constexpr uint32_t kFormatVersion = 2;
constexpr uint32_t kRegionFlagEncrypted = 1;
constexpr uint16_t kEntryFlagEncrypted = 1;
// A tombstone: the sealed part is EntryMeta alone (no head, no body); at rebuild it deletes
// every older copy of its key. The flag is in the clear header, which GCM authenticates.
constexpr uint16_t kEntryFlagTombstone = 2;

struct RegionHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t header_bytes;   // sizeof(RegionHeader)
  uint64_t seq;            // write order across the store; newest copy of a key wins
  uint64_t region_bytes;   // the store's region size when written
  uint32_t entry_count;
  uint32_t used_bytes;     // header + entries; nothing past it is parsed
  uint8_t key_check[8];    // keyCheckValue() of the store key; zero when not encrypted
  uint32_t flags;          // kRegionFlagEncrypted
  uint32_t reserved;
  uint64_t checksum;       // xxh3-64 of the bytes above
};
static_assert(sizeof(RegionHeader) == 64);

struct EntryHeader {
  uint32_t magic;
  uint16_t flags;          // kEntryFlagEncrypted | kEntryFlagTombstone
  uint16_t header_bytes;   // sizeof(EntryHeader)
  uint32_t entry_bytes;    // whole entry: header + sealed + tag + pad
  uint32_t sealed_bytes;   // EntryMeta + head blob + body
  uint8_t nonce[12];
  uint32_t key_id;         // the data key that sealed it (ssd_keyring.h); 0 = the store key
};
static_assert(sizeof(EntryHeader) == 32);

struct EntryMeta {
  uint64_t key_hi;
  uint64_t key_lo;
  uint64_t checksum;       // xxh3-64 of keys, lengths, head blob and body (plaintext)
  uint32_t head_bytes;
  uint32_t reserved;
  uint64_t body_bytes;
  uint64_t primary_hi;     // a variant: its URL's key; else zero (and for tombstones)
  uint64_t primary_lo;
};
static_assert(sizeof(EntryMeta) == 56);

constexpr size_t kEntryAlign = 8;
constexpr size_t alignUp(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Whole entry size for a sealed part of `sealed_bytes`.
constexpr size_t entryBytes(size_t sealed_bytes, bool encrypted) {
  return alignUp(sizeof(EntryHeader) + sealed_bytes + (encrypted ? 16 : 0), kEntryAlign);
}

// xxh3-64 over the region header fields before `checksum`.
uint64_t regionHeaderChecksum(const RegionHeader& h);
// The entry checksum (EntryMeta::checksum) over plaintext. `primary`: zero when not a variant.
uint64_t entryChecksum(const CacheKey& key, const CacheKey& primary, const uint8_t* head,
                       size_t head_bytes, const uint8_t* body, size_t body_bytes);

// Head blob: Freshness then ResponseHead (status, reason, headers in order, content length).
// `wire` is not stored: decodeHead rebuilds it.
std::vector<uint8_t> encodeHead(const ResponseHead& head, const Freshness& freshness);
// False on any inconsistency (the blob passed its checksum, so only a format bug gets here).
bool decodeHead(const uint8_t* data, size_t len, ResponseHead* head, Freshness* freshness);

}  // namespace streamedge::cache::ssd

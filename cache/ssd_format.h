// On-disk format of the SSD store (format version 3; version 2 is still read). All integers
// little-endian, structs packed by construction (sized fields, explicit padding, static_assert
// on sizeof).
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
// Chunked entries (format version 3, kEntryFlagChunked in the clear header): the body is
// protected per 64 KiB piece, so that a reader can hand on the first verified piece while the
// rest is still being checked, and a damaged piece is found where it is. Layout:
//   EntryHeader | EntryMeta | head blob | meta tag (16, encrypted) | chunk table | body | pad to 8
// EntryHeader::sealed_bytes then counts EntryMeta + head blob only (the part protected whole:
// one GCM seal with the entry nonce and the header as AAD, as in version 2). The chunk table
// holds one entry per body chunk: its GCM tag (16) when encrypted, else its xxh3-64 (8).
// Chunk i is sealed with chunkNonce(nonce, i) and the AAD chunkAad(header, i, count): a chunk
// cannot move to another index, another entry (the header holds the entry's random nonce) or a
// shorter entry. EntryMeta::checksum covers keys, lengths, the head blob and the chunk table, so
// the table (and with it each chunk) is bound to the entry's meta. Tombstones stay unchunked
// (they have no body). Body bytes are stored contiguously: once verified (decrypted in place)
// they are served from the read buffer as in version 2.
//
// Versions: 1 had no primary key in EntryMeta (40 bytes). 2 had unchunked entries only (the
// whole sealed part under one tag and one checksum); its regions are still read and served
// (every entry verified whole). A version-3 region holds chunked entries, tombstones, and
// unchunked entries carried over from version-2 regions by reinsertion. A region of another
// version is left out at rebuild (counted and logged) and reused in ring order: a version-1
// variant cannot be tied to its URL, so serving it could outlive a purge.
//
// Pure functions and plain structs; thread-safe.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "cache/cache_key.h"
#include "cache/ssd_crypto.h"
#include "cache/freshness.h"
#include "cache/response_head.h"

namespace streamedge::cache::ssd {

static_assert(std::endian::native == std::endian::little, "the SSD format is little-endian");

constexpr uint64_t kRegionMagic = 0x31474552'45455453ull;  // "STEEREG1"
constexpr uint32_t kEntryMagic = 0x45454553u;              // "SEEE"
constexpr uint32_t kFormatVersion = 3;
constexpr uint32_t kOldestReadableVersion = 2;  // unchunked entries only
constexpr uint32_t kRegionFlagEncrypted = 1;
constexpr uint16_t kEntryFlagEncrypted = 1;
// A tombstone: the sealed part is EntryMeta alone (no head, no body); at rebuild it deletes
// every older copy of its key. The flag is in the clear header, which GCM authenticates.
constexpr uint16_t kEntryFlagTombstone = 2;
// The body is sealed in chunks (format version 3, see above).
constexpr uint16_t kEntryFlagChunked = 4;
constexpr size_t kChunkBytes = 64 * 1024;

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
  uint32_t sealed_bytes;   // EntryMeta + head blob + body (chunked: EntryMeta + head blob)
  uint8_t nonce[12];
  uint32_t key_id;         // the data key that sealed it (ssd_keyring.h); 0 = the store key
};
static_assert(sizeof(EntryHeader) == 32);

struct EntryMeta {
  uint64_t key_hi;
  uint64_t key_lo;
  uint64_t checksum;       // xxh3-64 of keys, lengths, head blob and body (plaintext);
                           // chunked: of keys, lengths, head blob and chunk table
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

// Where the parts of a chunked entry lie, from its header (`meta_head_bytes` = EntryMeta + head
// blob) and its body length. Offsets from the start of the entry header.
struct ChunkedLayout {
  uint32_t chunks = 0;
  size_t meta_tag_at = 0;   // encrypted only
  size_t table_at = 0;
  size_t table_entry = 0;   // 16 (GCM tag) or 8 (xxh3-64)
  size_t body_at = 0;
  size_t entry_bytes = 0;   // padded to kEntryAlign
};
constexpr uint32_t chunkCount(uint64_t body_bytes) {
  return static_cast<uint32_t>((body_bytes + kChunkBytes - 1) / kChunkBytes);
}
constexpr ChunkedLayout chunkedLayout(size_t meta_head_bytes, uint64_t body_bytes, bool encrypted) {
  ChunkedLayout l;
  l.chunks = chunkCount(body_bytes);
  l.meta_tag_at = sizeof(EntryHeader) + meta_head_bytes;
  l.table_at = l.meta_tag_at + (encrypted ? kTagBytes : 0);
  l.table_entry = encrypted ? kTagBytes : sizeof(uint64_t);
  l.body_at = l.table_at + size_t{l.chunks} * l.table_entry;
  l.entry_bytes = alignUp(l.body_at + body_bytes, kEntryAlign);
  return l;
}
// Bytes [begin, end) of chunk `i` within the body.
constexpr uint64_t chunkBegin(uint32_t i) { return uint64_t{i} * kChunkBytes; }
constexpr uint64_t chunkEnd(uint32_t i, uint64_t body_bytes) {
  return chunkBegin(i) + kChunkBytes < body_bytes ? chunkBegin(i) + kChunkBytes : body_bytes;
}

// xxh3-64 over the region header fields before `checksum`.
uint64_t regionHeaderChecksum(const RegionHeader& h);
// The entry checksum (EntryMeta::checksum) over plaintext. `primary`: zero when not a variant.
uint64_t entryChecksum(const CacheKey& key, const CacheKey& primary, const uint8_t* head,
                       size_t head_bytes, const uint8_t* body, size_t body_bytes);

// EntryMeta::checksum of a chunked entry: keys, lengths, head blob and the chunk table.
uint64_t chunkedMetaChecksum(const CacheKey& key, const CacheKey& primary, const uint8_t* head,
                             size_t head_bytes, uint64_t body_bytes, const uint8_t* table,
                             size_t table_bytes);
// The xxh3-64 of chunk `index` of `count` of an unencrypted chunked entry of `key`.
uint64_t chunkChecksum(const CacheKey& key, uint32_t index, uint32_t count, const uint8_t* data,
                       size_t len);
// The GCM nonce of chunk `index`: the entry nonce with its last 4 bytes XORed with index + 1
// (the entry nonce itself seals EntryMeta + head).
void chunkNonce(const uint8_t* entry_nonce, uint32_t index, uint8_t* out);
// The AAD of a chunk: the entry header's 32 bytes, then index and count (u32 each).
constexpr size_t kChunkAadBytes = sizeof(EntryHeader) + 8;
void chunkAad(const uint8_t* entry_header, uint32_t index, uint32_t count, uint8_t* out);

// Builds a chunked entry in place at `p`: the caller has put EntryMeta (key, lengths, primary;
// the checksum is filled here), head blob and body at their layout offsets. Writes the header
// (`nonce`: random, used when `cipher` is set), the chunk table, the checksum (also returned in
// `*checksum`), the seals and the padding. `cipher` null: unencrypted. False when the cipher
// fails.
bool sealChunkedEntry(uint8_t* p, uint16_t flags, uint32_t key_id, const uint8_t* nonce,
                      const CacheKey& key, const CacheKey& primary, size_t head_bytes,
                      uint64_t body_bytes, const EntryCipher* cipher, uint64_t* checksum);

// A chunked entry whose header, meta and head are verified (openChunkedEntry); its chunks are
// verified one by one with openChunk.
struct ChunkedView {
  EntryMeta meta{};
  ChunkedLayout layout;
};
// Verifies the header part of a chunked entry at `p` (header already checked by the caller
// for magic, sizes within `avail`): opens EntryMeta + head (decrypting in place) and checks the
// lengths, the layout against entry_bytes and the meta checksum (over the chunk table). False
// with `*why` set on any mismatch. The body is not looked at.
bool openChunkedEntry(uint8_t* p, size_t avail, const EntryCipher* cipher, ChunkedView* view,
                      const char** why);
// Verifies (decrypting in place) chunk `index` of the entry at `p`. False: that chunk is
// damaged or not this entry's chunk `index`; never use its bytes.
bool openChunk(uint8_t* p, const ChunkedView& view, uint32_t index, const EntryCipher* cipher);

// Head blob: Freshness then ResponseHead (status, reason, headers in order, content length).
// `wire` is not stored: decodeHead rebuilds it.
std::vector<uint8_t> encodeHead(const ResponseHead& head, const Freshness& freshness);
// False on any inconsistency (the blob passed its checksum, so only a format bug gets here).
bool decodeHead(const uint8_t* data, size_t len, ResponseHead* head, Freshness* freshness);

}  // namespace streamedge::cache::ssd

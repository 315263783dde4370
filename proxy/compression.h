// Compression of text answers (playlists, MPDs, JSON, subtitles) for viewers who accept it:
// Accept-Encoding negotiation (RFC 9110 §12.5.3), the test of which answers may be encoded, the
// head of an encoded representation (its own ETag, Content-Encoding, Vary), and the encoders
// (gzip through zlib, br through libbrotli).
//
// An encoded representation is made once per object and coding, from the complete identity
// body, and attached to the cache object as a derived representation (slot = codingSlot()):
// see cache::CacheObject::publishDerived and cache::Cache::attachDerived. Only this module knows
// what the slots hold; the cache and its tiers store identity bytes only.
//
// Thread-safety: pure functions; the encoders allocate their own state per call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "cache/object.h"
#include "conf/config.h"

namespace streamedge::proxy {

// Levels, chosen from measurements on the simulator's large MPD and HLS playlist (README,
// "Compression"): ratio close to the best at a cost of a few ms per MiB.
inline constexpr int kGzipLevel = 6;
inline constexpr int kBrotliQuality = 5;

// "gzip", "br".
std::string_view codingName(conf::ContentCoding coding);
// The derived-representation slot of a coding on a cache object.
inline size_t codingSlot(conf::ContentCoding coding) { return static_cast<size_t>(coding); }

// A request's Accept-Encoding, reduced to what the edge can offer. q-values in thousandths
// (0..1000); -1 = not listed.
struct AcceptEncoding {
  bool present = false;  // at least one Accept-Encoding field was received
  int16_t gzip = -1;     // "gzip" or "x-gzip" (RFC 9110 §8.4.1.3)
  int16_t br = -1;
  int16_t identity = -1;
  int16_t star = -1;     // "*": any coding not listed

  void reset() { *this = AcceptEncoding{}; }
};

// Adds one Accept-Encoding field value to `out` (call once per field line; a repeated field is
// one list, RFC 9110 §5.3). Members with an invalid weight are ignored; a coding listed twice
// keeps its highest weight.
void parseAcceptEncoding(std::string_view value, AcceptEncoding& out);

// The coding to send among `offered` (the route's, in its order of preference), or nullopt for
// no coding. RFC 9110 §12.5.3: the acceptable coding with the highest weight wins; weight 0
// refuses; "*" stands for codings not listed; identity is acceptable unless refused, and is
// chosen when its weight is above every offered coding's. Equal weights go to a coding before
// identity, and among codings to the route's order. No Accept-Encoding field, or an empty one:
// no coding (the RFC lets a server assume anything is accepted when the field is absent; an
// edge that sends gzip to a client that did not ask breaks simple clients and gains nothing).
// When identity is refused and no offered coding is acceptable, identity is sent anyway, as
// §12.5.3 recommends over a 415.
std::optional<conf::ContentCoding> negotiateCoding(const AcceptEncoding& accept,
                                                   std::span<const conf::ContentCoding> offered);

// Media types worth encoding: HLS playlists (application/vnd.apple.mpegurl,
// application/x-mpegurl, audio/mpegurl, audio/x-mpegurl), text/* (but text/event-stream, which
// never ends), application/json, application/xml, application/javascript, any +xml or +json
// type (application/dash+xml, application/ttml+xml, image/svg+xml). Never audio, video or
// image binaries, application/octet-stream or application/mp4. Parameters (charset) ignored.
bool isCompressibleType(std::string_view content_type);

// The object-level conditions on a stored answer: status 200, a compressible Content-Type, no
// Content-Encoding of the origin's own, no Cache-Control no-transform (RFC 9110 §7.7).
bool headAllowsCompression(const cache::ResponseHead& head);

// True when the head's Vary already names Accept-Encoding, or is "*".
bool varyCoversAcceptEncoding(const cache::ResponseHead& head);

// The entity tag of an encoded representation (RFC 9110 §8.8.3: validators differ per
// representation): "abc" → "abc-gzip", W/"abc" → W/"abc-br". nullopt for a malformed tag (the
// encoded representation then has none).
std::optional<std::string> encodedEtag(std::string_view etag, conf::ContentCoding coding);

// The head of the encoded representation of `identity`: Content-Encoding added, ETag derived,
// Vary names Accept-Encoding, digest fields of the identity bytes dropped, content_length the
// encoded length.
std::shared_ptr<const cache::ResponseHead> encodedHead(const cache::ResponseHead& identity,
                                                       conf::ContentCoding coding,
                                                       uint64_t encoded_length);

// Encodes the first `length` bytes of `body` (all present) into `out`. False on an encoder
// error (out undefined).
bool gzipEncode(const cache::Body& body, uint64_t length, int level, std::string& out);
bool brotliEncode(const cache::Body& body, uint64_t length, int quality, std::string& out);

// The derived representation of the complete `object` in `coding`: encoded head and body, or a
// representation with no head when encoding failed or saved less than 1/8 of the bytes (so it
// is not tried again for this object).
std::unique_ptr<cache::DerivedRepresentation> encodeRepresentation(
    const cache::CacheObject& object, conf::ContentCoding coding);

// What a stored head says about encoding it, computed once per object (the head is immutable)
// and cached on it (CacheObject::deliveryFacts): bit flags, never 0 once computed.
inline constexpr uint8_t kFactsKnown = 1;       // computed
inline constexpr uint8_t kFactsCompressible = 2;  // headAllowsCompression
inline constexpr uint8_t kFactsVaryCovers = 4;  // varyCoversAcceptEncoding
uint8_t compressionFacts(const cache::ResponseHead& head);

// What delivering one object to one viewer does about content codings.
struct EncodingChoice {
  // The answer depends on Accept-Encoding: identity answers add "Vary: Accept-Encoding"
  // (encoded heads carry it already).
  bool vary = false;
  // Encode with this coding (once the object is complete and within the route's sizes).
  std::optional<conf::ContentCoding> coding;
};

// `length`: the identity body length when known (Content-Length, or the complete body).
// `ranged`: the request has a Range: it is answered from the identity representation (ranges
// of an encoded copy would address bytes that depend on this edge's encoder).
EncodingChoice chooseEncoding(const conf::CompressionPolicy& policy,
                              const cache::ResponseHead& head, std::optional<uint64_t> length,
                              bool get_or_head, bool ranged, const AcceptEncoding& accept);
// The same from the head's cached compressionFacts() (the per-hit path).
EncodingChoice chooseEncoding(const conf::CompressionPolicy& policy, uint8_t facts,
                              std::optional<uint64_t> length, bool get_or_head, bool ranged,
                              const AcceptEncoding& accept);

}  // namespace streamedge::proxy

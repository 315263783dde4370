#include "proxy/compression.h"

#include <brotli/encode.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <limits>

namespace streamedge::proxy {
namespace {

using conf::ContentCoding;

constexpr std::string_view kOws = " \t";

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(kOws);
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(kOws);
  return s.substr(b, e - b + 1);
}

unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c - 'A' + 'a') : c;
}

bool endsWithIgnoreCase(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         cache::equalsIgnoreCase(s.substr(s.size() - suffix.size()), suffix);
}

// Calls f(element) for each non-empty element of a comma-separated list (RFC 9110 §5.6.1).
template <typename F>
void forEachListElement(std::string_view list, F&& f) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view element = trim(list.substr(0, comma));
    if (!element.empty()) f(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

// RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ). Thousandths.
std::optional<int16_t> parseQvalue(std::string_view v) {
  if (v.empty() || v.size() > 5) return std::nullopt;
  if (v[0] != '0' && v[0] != '1') return std::nullopt;
  int value = (v[0] - '0') * 1000;
  if (v.size() > 1) {
    if (v[1] != '.') return std::nullopt;
    int scale = 100;
    for (size_t i = 2; i < v.size(); ++i, scale /= 10) {
      if (v[i] < '0' || v[i] > '9') return std::nullopt;
      value += (v[i] - '0') * scale;
    }
  }
  if (value > 1000) return std::nullopt;  // "1.5"
  return static_cast<int16_t>(value);
}

bool hasListToken(const cache::ResponseHead& head, std::string_view field,
                  std::string_view token) {
  bool found = false;
  for (const auto& [name, value] : head.headers) {
    if (!cache::equalsIgnoreCase(name, field)) continue;
    forEachListElement(value, [&](std::string_view element) {
      // A directive's name ends at '=' (Cache-Control: no-transform takes no argument).
      const std::string_view name_part = trim(element.substr(0, element.find('=')));
      if (cache::equalsIgnoreCase(name_part, token)) found = true;
    });
  }
  return found;
}

// Digests of the identity bytes: wrong for the encoded ones (RFC 9530 Content-Digest is of the
// content, Repr-Digest of the representation, which includes its content coding).
bool isIdentityDigestField(std::string_view name) {
  for (std::string_view f : {"Content-MD5", "Content-Digest", "Repr-Digest", "Digest"}) {
    if (cache::equalsIgnoreCase(name, f)) return true;
  }
  return false;
}

}  // namespace

std::string_view codingName(ContentCoding coding) {
  switch (coding) {
    case ContentCoding::kGzip: return "gzip";
    case ContentCoding::kBrotli: return "br";
  }
  return "identity";
}

void parseAcceptEncoding(std::string_view value, AcceptEncoding& out) {
  out.present = true;
  forEachListElement(value, [&](std::string_view member) {
    const size_t semi = member.find(';');
    const std::string_view coding = trim(member.substr(0, semi));
    int16_t weight = 1000;
    if (semi != std::string_view::npos) {
      // weight = OWS ";" OWS "q=" qvalue; other parameters are not defined for codings.
      std::string_view params = member.substr(semi + 1);
      bool valid = true;
      while (!params.empty()) {
        const size_t next = params.find(';');
        const std::string_view param = trim(params.substr(0, next));
        const size_t eq = param.find('=');
        if (eq != std::string_view::npos && eq == 1 && lower(static_cast<unsigned char>(param[0])) == 'q') {
          const auto q = parseQvalue(trim(param.substr(2)));
          if (!q) valid = false;
          else weight = *q;
        }
        if (next == std::string_view::npos) break;
        params.remove_prefix(next + 1);
      }
      if (!valid) return;  // a member we cannot read says nothing
    }
    int16_t* slot = nullptr;
    if (cache::equalsIgnoreCase(coding, "gzip") || cache::equalsIgnoreCase(coding, "x-gzip")) {
      slot = &out.gzip;
    } else if (cache::equalsIgnoreCase(coding, "br")) {
      slot = &out.br;
    } else if (cache::equalsIgnoreCase(coding, "identity")) {
      slot = &out.identity;
    } else if (coding == "*") {
      slot = &out.star;
    }
    if (slot) *slot = std::max(*slot, weight);
  });
}

std::optional<ContentCoding> negotiateCoding(const AcceptEncoding& accept,
                                             std::span<const ContentCoding> offered) {
  if (!accept.present) return std::nullopt;
  std::optional<ContentCoding> best;
  int best_weight = 0;
  for (ContentCoding coding : offered) {
    const int16_t listed = coding == ContentCoding::kGzip ? accept.gzip : accept.br;
    const int weight = listed >= 0 ? listed : accept.star;  // "*" covers codings not listed
    if (weight > best_weight) {  // strict: equal weights keep the route's order
      best = coding;
      best_weight = weight;
    }
  }
  if (!best) return std::nullopt;
  // Identity listed (or covered by "*") with a higher weight than every coding: the viewer
  // prefers the bytes as they are. Not listed at all: acceptable, but after any coding.
  const int identity = accept.identity >= 0 ? accept.identity : accept.star;
  if (identity > best_weight) return std::nullopt;
  return best;
}

bool isCompressibleType(std::string_view content_type) {
  const std::string_view media = trim(content_type.substr(0, content_type.find(';')));
  const size_t slash = media.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == media.size()) return false;
  const std::string_view type = media.substr(0, slash);
  if (cache::equalsIgnoreCase(type, "text")) {
    return !cache::equalsIgnoreCase(media, "text/event-stream");  // never ends
  }
  static constexpr std::array<std::string_view, 10> kTypes = {
      "application/vnd.apple.mpegurl", "application/x-mpegurl", "audio/mpegurl",
      "audio/x-mpegurl",               "application/json",      "application/xml",
      "application/javascript",        "application/x-javascript",
      "application/ecmascript",        "application/x-subrip"};
  for (std::string_view t : kTypes) {
    if (cache::equalsIgnoreCase(media, t)) return true;
  }
  // Structured syntax suffixes (RFC 6839): application/dash+xml, application/ttml+xml,
  // image/svg+xml, application/ld+json, application/vnd.ms-sstr+xml...
  return endsWithIgnoreCase(media, "+xml") || endsWithIgnoreCase(media, "+json");
}

bool headAllowsCompression(const cache::ResponseHead& head) {
  if (head.status != 200) return false;
  const std::string* type = head.find("Content-Type");
  if (!type || !isCompressibleType(*type)) return false;
  if (head.find("Content-Encoding")) return false;  // the origin encoded it already
  // RFC 9110 §7.7: a proxy MUST NOT transform content marked no-transform.
  return !hasListToken(head, "Cache-Control", "no-transform");
}

bool varyCoversAcceptEncoding(const cache::ResponseHead& head) {
  return hasListToken(head, "Vary", "Accept-Encoding") || hasListToken(head, "Vary", "*");
}

std::optional<std::string> encodedEtag(std::string_view etag, ContentCoding coding) {
  // entity-tag = [ "W/" ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE (RFC 9110 §8.8.3).
  etag = trim(etag);
  const bool weak = etag.substr(0, 2) == "W/";  // case-sensitive (%s"W/")
  std::string_view opaque = weak ? etag.substr(2) : etag;
  if (opaque.size() < 2 || opaque.front() != '"' || opaque.back() != '"') return std::nullopt;
  const std::string_view inner = opaque.substr(1, opaque.size() - 2);
  for (char c : inner) {
    const auto u = static_cast<unsigned char>(c);
    if (u == '"' || u < 0x21 || u == 0x7f) return std::nullopt;
  }
  std::string out;
  out.reserve(etag.size() + 4);
  if (weak) out += "W/";
  out += '"';
  out += inner;
  out += '-';
  out += codingName(coding);
  out += '"';
  return out;
}

std::shared_ptr<const cache::ResponseHead> encodedHead(const cache::ResponseHead& identity,
                                                       ContentCoding coding,
                                                       uint64_t encoded_length) {
  auto head = std::make_shared<cache::ResponseHead>();
  head->status = identity.status;
  head->reason = identity.reason;
  head->filled_by_origin = identity.filled_by_origin;
  head->filled_by_dc = identity.filled_by_dc;
  head->content_length = encoded_length;
  head->headers.reserve(identity.headers.size() + 2);
  const bool vary_covered = varyCoversAcceptEncoding(identity);
  bool vary_done = vary_covered;
  for (const auto& [name, value] : identity.headers) {
    if (isIdentityDigestField(name)) continue;
    if (cache::equalsIgnoreCase(name, "ETag")) {
      if (auto etag = encodedEtag(value, coding)) head->headers.emplace_back(name, std::move(*etag));
      continue;
    }
    if (!vary_done && cache::equalsIgnoreCase(name, "Vary")) {
      // One list (RFC 9110 §12.5.5): the origin's fields, then ours.
      head->headers.emplace_back(name, trim(value).empty() ? std::string("Accept-Encoding")
                                                           : value + ", Accept-Encoding");
      vary_done = true;
      continue;
    }
    head->headers.emplace_back(name, value);
  }
  if (!vary_done) head->headers.emplace_back("Vary", "Accept-Encoding");
  head->headers.emplace_back("Content-Encoding", std::string(codingName(coding)));
  head->buildWire();
  return head;
}

bool gzipEncode(const cache::Body& body, uint64_t length, int level, std::string& out) {
  if (length > std::numeric_limits<uInt>::max() / 2) return false;  // far over any route's cap
  z_stream zs{};
  // windowBits 15 + 16: a gzip wrapper (RFC 1952) with mtime 0, so every worker makes the same
  // bytes for the same object.
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
  out.resize(deflateBound(&zs, static_cast<uLong>(length)));
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  uint64_t pos = 0;
  int rc = Z_OK;
  do {
    const uint8_t* data = nullptr;
    size_t n = pos < length ? body.peek(pos, &data) : 0;
    if (pos < length && n == 0) break;  // bytes missing: not a complete body
    n = static_cast<size_t>(std::min<uint64_t>(n, length - pos));
    zs.next_in = const_cast<Bytef*>(data);
    zs.avail_in = static_cast<uInt>(n);
    pos += n;
    // The output holds deflateBound(): every call consumes all its input.
    rc = deflate(&zs, pos >= length ? Z_FINISH : Z_NO_FLUSH);
    if (rc == Z_STREAM_ERROR || zs.avail_in != 0) break;
  } while (pos < length);
  const bool ok = rc == Z_STREAM_END && pos == length;
  if (ok) out.resize(zs.total_out);
  deflateEnd(&zs);
  return ok;
}

bool brotliEncode(const cache::Body& body, uint64_t length, int quality, std::string& out) {
  BrotliEncoderState* state = BrotliEncoderCreateInstance(nullptr, nullptr, nullptr);
  if (!state) return false;
  BrotliEncoderSetParameter(state, BROTLI_PARAM_QUALITY, static_cast<uint32_t>(quality));
  BrotliEncoderSetParameter(state, BROTLI_PARAM_MODE, BROTLI_MODE_TEXT);
  BrotliEncoderSetParameter(state, BROTLI_PARAM_SIZE_HINT,
                            static_cast<uint32_t>(std::min<uint64_t>(length, 1u << 30)));
  size_t bound = BrotliEncoderMaxCompressedSize(static_cast<size_t>(length));
  if (bound == 0) bound = static_cast<size_t>(length) + (static_cast<size_t>(length) >> 2) + 1024;
  out.resize(bound);
  uint8_t* next_out = reinterpret_cast<uint8_t*>(out.data());
  size_t avail_out = out.size();
  uint64_t pos = 0;
  bool ok = true;
  do {
    const uint8_t* data = nullptr;
    size_t n = pos < length ? body.peek(pos, &data) : 0;
    if (pos < length && n == 0) {
      ok = false;
      break;
    }
    n = static_cast<size_t>(std::min<uint64_t>(n, length - pos));
    pos += n;
    const BrotliEncoderOperation op =
        pos >= length ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_PROCESS;
    const uint8_t* next_in = data;
    size_t avail_in = n;
    // Bounded: each call either consumes input or produces output into a bound-sized buffer.
    for (int guard = 0; ok; ++guard) {
      if (!BrotliEncoderCompressStream(state, op, &avail_in, &next_in, &avail_out, &next_out,
                                       nullptr)) {
        ok = false;
        break;
      }
      const bool done = op == BROTLI_OPERATION_FINISH ? BrotliEncoderIsFinished(state) != 0
                                                      : avail_in == 0;
      if (done) break;
      if (avail_out == 0 || guard > 1'000'000) ok = false;
    }
  } while (ok && pos < length);
  BrotliEncoderDestroyInstance(state);
  if (!ok) return false;
  out.resize(out.size() - avail_out);
  return true;
}

std::unique_ptr<cache::DerivedRepresentation> encodeRepresentation(
    const cache::CacheObject& object, ContentCoding coding) {
  auto rep = std::make_unique<cache::DerivedRepresentation>();
  const uint64_t length = object.body().length();
  auto bytes = std::make_shared<std::string>();
  const bool ok = coding == ContentCoding::kGzip
                      ? gzipEncode(object.body(), length, kGzipLevel, *bytes)
                      : brotliEncode(object.body(), length, kBrotliQuality, *bytes);
  // Saving less than an eighth is not worth a second copy in RAM and a Vary split downstream.
  if (!ok || bytes->size() > length - length / 8) return rep;
  bytes->shrink_to_fit();
  const auto* data = reinterpret_cast<const uint8_t*>(bytes->data());
  const uint64_t size = bytes->size();
  const uint64_t held = bytes->capacity();
  rep->head = encodedHead(object.head(), coding, size);
  rep->body = cache::Body::adopt(std::move(bytes), data, size, held);
  return rep;
}

uint8_t compressionFacts(const cache::ResponseHead& head) {
  uint8_t facts = kFactsKnown;
  if (headAllowsCompression(head)) facts |= kFactsCompressible;
  if (varyCoversAcceptEncoding(head)) facts |= kFactsVaryCovers;
  return facts;
}

EncodingChoice chooseEncoding(const conf::CompressionPolicy& policy,
                              const cache::ResponseHead& head, std::optional<uint64_t> length,
                              bool get_or_head, bool ranged, const AcceptEncoding& accept) {
  if (policy.codings.empty()) return {};
  return chooseEncoding(policy, compressionFacts(head), length, get_or_head, ranged, accept);
}

EncodingChoice chooseEncoding(const conf::CompressionPolicy& policy, uint8_t facts,
                              std::optional<uint64_t> length, bool get_or_head, bool ranged,
                              const AcceptEncoding& accept) {
  EncodingChoice choice;
  if (policy.codings.empty() || !(facts & kFactsCompressible)) return choice;
  if (length && (*length < policy.min_size || *length > policy.max_size)) return choice;
  choice.vary = !(facts & kFactsVaryCovers);
  if (!get_or_head || ranged) return choice;
  choice.coding = negotiateCoding(accept, policy.codings);
  return choice;
}

}  // namespace streamedge::proxy

#include "proxy/cache_status.h"

#include <algorithm>
#include <charconv>

namespace streamedge::proxy {
namespace {

// RFC 8941 §3.3.1: an Integer has at most 15 digits.
constexpr int64_t kMaxSfInteger = 999'999'999'999'999;

void appendInt(std::string& out, int64_t v) {
  v = std::clamp(v, -kMaxSfInteger, kMaxSfInteger);
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

}  // namespace

const char* cacheFwdToken(CacheFwd fwd) {
  switch (fwd) {
    case CacheFwd::kNone: return "";
    case CacheFwd::kBypass: return "bypass";
    case CacheFwd::kMethod: return "method";
    case CacheFwd::kUriMiss: return "uri-miss";
    case CacheFwd::kVaryMiss: return "vary-miss";
    case CacheFwd::kMiss: return "miss";
    case CacheFwd::kRequest: return "request";
    case CacheFwd::kStale: return "stale";
    case CacheFwd::kPartial: return "partial";
  }
  return "";
}

CacheStatus describeCacheStatus(const CacheStatusFacts& facts) {
  CacheStatus s;
  switch (facts.result) {
    case CacheResult::kNone:
    case CacheResult::kCount:
      // Answered before any cache lookup (a bad request, no route): our name alone says that
      // this cache saw the request and neither hit nor forwarded it.
      return s;
    case CacheResult::kHit:
      s.hit = true;
      s.ttl_seconds = facts.ttl_seconds;
      s.detail = facts.detail;
      return s;
    case CacheResult::kStale:
      // A stored answer past its freshness was served: beside its background revalidation
      // (stale-while-revalidate) or in place of a failed one (stale-if-error). It is stale
      // because of which the request went forward; ttl is negative.
      s.fwd = CacheFwd::kStale;
      s.ttl_seconds = facts.ttl_seconds;
      return s;
    case CacheResult::kPass:
      s.fwd = facts.other_method ? CacheFwd::kMethod : CacheFwd::kBypass;
      if (!facts.synthesized) s.fwd_status = facts.origin_status;
      return s;
    case CacheResult::kMiss:
    case CacheResult::kCoalesced:
      break;
  }
  if (facts.stale_found || facts.not_modified) {
    s.fwd = CacheFwd::kStale;  // a revalidation (a 200 replaces the stored answer, a 304 refreshes it)
  } else if (facts.vary_miss) {
    s.fwd = CacheFwd::kVaryMiss;
  } else {
    s.fwd = CacheFwd::kUriMiss;
  }
  if (facts.synthesized) return s;  // the fetch failed: nothing reused, nothing stored
  s.collapsed = facts.result == CacheResult::kCoalesced;
  s.fwd_status = facts.not_modified ? std::optional<int>(304) : facts.origin_status;
  s.stored = facts.stored;
  if (facts.stored) s.ttl_seconds = facts.ttl_seconds;
  return s;
}

void appendCacheStatusField(std::string& out, std::string_view name, const CacheStatus& status) {
  out += "Cache-Status: ";
  out += name;
  if (status.hit) {
    out += "; hit";
  } else {
    if (status.fwd != CacheFwd::kNone) {
      out += "; fwd=";
      out += cacheFwdToken(status.fwd);
    }
    if (status.fwd_status) {
      out += "; fwd-status=";
      appendInt(out, *status.fwd_status);
    }
    if (status.stored) out += "; stored";
    if (status.collapsed) out += "; collapsed";
  }
  if (status.ttl_seconds) {
    out += "; ttl=";
    appendInt(out, *status.ttl_seconds);
  }
  if (status.detail != nullptr && *status.detail != '\0') {
    out += "; detail=";
    out += status.detail;
  }
  out += "\r\n";
}

}  // namespace streamedge::proxy

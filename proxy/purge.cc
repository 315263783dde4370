#include "proxy/purge.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <chrono>
#include <cstdio>

#include "cache/ssd_store.h"
#include "proxy/json_text.h"
#include "proxy/router.h"

namespace streamedge::proxy {

namespace {


bool hasControlOrSpace(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7F) return true;
  }
  return false;
}

PurgeResult failure(int status, std::string error) {
  PurgeResult r;
  r.status = status;
  r.error = std::move(error);
  r.json = purgeErrorJson(r.error);
  return r;
}

}  // namespace

std::string purgeErrorJson(std::string_view error) {
  return "{\"error\":" + jsonString(error) + "}\n";
}

const char* purgeKindName(PurgeRequest::Kind kind) {
  switch (kind) {
    case PurgeRequest::Kind::kUrl: return "url";
    case PurgeRequest::Kind::kPrefix: return "prefix";
    case PurgeRequest::Kind::kTag: return "tag";
    case PurgeRequest::Kind::kHost: return "host";
  }
  return "url";
}

bool parsePurgeQuery(std::string_view query, PurgeRequest& out, std::string& error) {
  out = PurgeRequest{};
  const std::string text(query);
  evkeyvalq params{};
  if (text.empty() || evhttp_parse_query_str(text.c_str(), &params) != 0) {
    evhttp_clear_headers(&params);
    error = "expected url=, host=, host= and prefix=, or tag= (optionally soft=1)";
    return false;
  }
  bool has_url = false, has_host = false, has_prefix = false, has_tag = false, has_soft = false;
  bool has_scope = false;
  bool ok = true;
  for (const evkeyval* kv = params.tqh_first; kv && ok; kv = kv->next.tqe_next) {
    const std::string_view name = kv->key;
    const std::string_view value = kv->value;
    bool* seen = nullptr;
    std::string* target = nullptr;
    if (name == "url") {
      seen = &has_url;
      target = &out.url;
    } else if (name == "host") {
      seen = &has_host;
      target = &out.host;
    } else if (name == "prefix") {
      seen = &has_prefix;
      target = &out.prefix;
    } else if (name == "tag") {
      seen = &has_tag;
      target = &out.tag;
    } else if (name == "soft") {
      seen = &has_soft;
    } else if (name == "scope") {
      seen = &has_scope;
    } else {
      error = "unknown parameter \"" + std::string(name) + "\"";
      ok = false;
      break;
    }
    if (*seen) {
      error = "parameter \"" + std::string(name) + "\" given twice";
      ok = false;
      break;
    }
    *seen = true;
    if (target) {
      if (value.empty() || hasControlOrSpace(value)) {
        error = "parameter \"" + std::string(name) + "\" must be non-empty, without spaces";
        ok = false;
        break;
      }
      target->assign(value);
    } else if (seen == &has_scope) {
      if (value == "site") {
        out.scope = PurgeRequest::Scope::kSite;
      } else if (value != "local") {
        error = "scope must be local or site";
        ok = false;
      }
    } else if (value == "1" || value == "true") {
      out.soft = true;
    } else if (value != "0" && value != "false") {
      error = "soft must be 1 or 0";
      ok = false;
    }
  }
  evhttp_clear_headers(&params);
  if (!ok) return false;
  if (has_url) {
    if (has_host || has_prefix || has_tag) {
      error = "url= purges one URL: it takes no host, prefix or tag";
      return false;
    }
    out.kind = PurgeRequest::Kind::kUrl;
  } else if (has_tag) {
    if (has_prefix) {
      error = "tag= takes no prefix";
      return false;
    }
    if (out.tag.size() > cache::kMaxSurrogateKeyBytes || out.tag.find(',') != std::string::npos) {
      error = "tag must be one surrogate key (no commas, at most 256 bytes)";
      return false;
    }
    out.kind = PurgeRequest::Kind::kTag;
  } else if (has_host) {
    out.kind = has_prefix ? PurgeRequest::Kind::kPrefix : PurgeRequest::Kind::kHost;
  } else {
    error = has_prefix ? "prefix= needs host=" : "expected url=, host=, host= and prefix=, or tag=";
    return false;
  }
  return true;
}

const conf::VhostConfig* vhostForPurge(const conf::Config& config, std::string_view host) {
  for (const conf::VhostConfig& v : config.vhosts) {
    if (v.name == host) return &v;
  }
  // A host the vhost names, exactly or by a "*.suffix" pattern; never through the "*"
  // catch-all: a mistyped host must not purge the catch-all vhost.
  const conf::VhostConfig* v = matchRoute(config, host, "/").vhost;
  if (!v) return nullptr;
  char buf[256];
  const std::string_view name = hostName(host, buf, sizeof buf);
  for (const std::string& pattern : v->hostnames) {
    if (pattern == name) return v;
    if (pattern.size() > 2 && pattern.starts_with("*.") && name.size() > pattern.size() - 1 &&
        name.ends_with(std::string_view(pattern).substr(1))) {
      return v;
    }
  }
  return nullptr;
}

bool purgeKeyForUrl(const conf::Config& config, std::string_view url, cache::CacheKey& key,
                    const conf::VhostConfig*& vhost, std::string& error) {
  std::string_view rest = url;
  if (const size_t hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  const auto startsWithNoCase = [](std::string_view s, std::string_view p) {
    if (s.size() < p.size()) return false;
    for (size_t i = 0; i < p.size(); ++i) {
      char c = s[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != p[i]) return false;
    }
    return true;
  };
  if (startsWithNoCase(rest, "http://")) {
    rest.remove_prefix(7);
  } else if (startsWithNoCase(rest, "https://")) {
    rest.remove_prefix(8);
  } else {
    error = "url must be an absolute http:// or https:// URL";
    return false;
  }
  const size_t end = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    error = "url has no host (or has user information)";
    return false;
  }
  const size_t q = rest.find('?');
  std::string_view raw_path = rest.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? std::string_view() : rest.substr(q + 1);
  if (raw_path.empty()) raw_path = "/";  // RFC 3986 §6.2.3
  std::string path;
  if (!cache::normalizePath(raw_path, path)) {
    error = "url path is not a valid path";
    return false;
  }
  // The vhost and route a GET for this URL would take: the authority is its Host field.
  const RouteMatch match = matchRoute(config, authority, path);
  if (!match.vhost) {
    error = "no virtual host for " + std::string(authority);
    return false;
  }
  if (!match.route) {
    error = "no route for this path";
    return false;
  }
  vhost = match.vhost;
  key = cache::makeKey(match.vhost->name, path, cache::filterQuery(query, match.route->key));
  return true;
}

PurgeResult runPurge(cache::Cache& cache, const conf::Config& config, const PurgeRequest& request) {
  const auto started = std::chrono::steady_clock::now();
  PurgeResult r;
  if (request.kind == PurgeRequest::Kind::kUrl) {
    cache::CacheKey key;
    const conf::VhostConfig* vhost = nullptr;
    std::string error;
    if (!purgeKeyForUrl(config, request.url, key, vhost, error)) return failure(404, error);
    r.vhost = vhost->name;
    r.objects = request.soft ? cache.invalidate(key) : cache.purgeObjects(key);
  } else {
    cache::PurgeSelector selector;
    if (!request.host.empty()) {
      const conf::VhostConfig* vhost = vhostForPurge(config, request.host);
      if (!vhost) return failure(404, "no virtual host for " + request.host);
      selector.vhost = vhost->name;
      r.vhost = vhost->name;
    }
    switch (request.kind) {
      case PurgeRequest::Kind::kPrefix: {
        selector.kind = cache::PurgeSelector::Kind::kPrefix;
        if (!cache::normalizePath(request.prefix, selector.prefix)) {
          return failure(400, "prefix must be an absolute path (\"/live/\")");
        }
        // normalizePath drops a trailing "/." but keeps a trailing "/": "/live/" stays a
        // directory prefix, "/live" also matches "/live2/...".
        break;
      }
      case PurgeRequest::Kind::kTag:
        selector.kind = cache::PurgeSelector::Kind::kTag;
        selector.tag = request.tag;
        break;
      default:
        selector.kind = cache::PurgeSelector::Kind::kHost;
        break;
    }
    r.objects = cache.purgeMatching(selector, request.soft, &r.scanned);
    if (request.kind == PurgeRequest::Kind::kHost && !request.soft && cache.ssd()) {
      // After the objects (their tombstones are queued): whatever of the vhost is still on the
      // device, or is being written right now under its old key, becomes unreadable at once.
      const Result<uint32_t> destroyed = cache.ssd()->destroyVhostKey(selector.vhost);
      if (!destroyed.isOk()) {
        PurgeResult f = failure(500, "objects purged, but the SSD keyring could not be rewritten (" +
                                         destroyed.status().toString() + "); retry the purge");
        f.objects = r.objects;
        f.vhost = r.vhost;
        return f;
      }
      r.data_key_destroyed = *destroyed != cache::kStoreKeyId;
    }
  }
  r.duration_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  char ms[32];
  std::snprintf(ms, sizeof ms, "%.3f", r.duration_ms);
  r.json = std::string("{\"kind\":\"") + purgeKindName(request.kind) + "\",\"mode\":\"" +
           (request.soft ? "soft" : "hard") + "\",\"vhost\":" +
           (r.vhost.empty() ? std::string("null") : jsonString(r.vhost)) +
           ",\"objects\":" + std::to_string(r.objects) +
           (request.kind == PurgeRequest::Kind::kHost && !request.soft
                ? std::string(",\"data_key_destroyed\":") + (r.data_key_destroyed ? "true" : "false")
                : std::string()) +
           ",\"duration_ms\":" + ms + "}\n";
  return r;
}

}  // namespace streamedge::proxy

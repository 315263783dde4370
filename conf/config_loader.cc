// Config loading: TOML text → toml++ tree → Config, validating as it goes.
//
// Every section is read through a TableReader, which remembers which keys it was asked for and
// reports every other key as unknown, so a typo never silently falls back to a default. Errors
// are collected, never thrown, and sorted by line at the end so that an operator sees all of
// them at once, in file order.
#include "conf/config_loader.h"

#include <arpa/inet.h>
#include <glob.h>
#include <netinet/in.h>
#include <pwd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <utility>

#include <toml++/toml.h>

#include "conf/request_field_names.h"
#include "conf/key_file.h"

namespace streamedge::conf {
namespace {

// ----------------------------------------------------------------------------------------------
// Error collection

// Where a diagnostic points: a line (0: none) of a file (null: the main config file). Included
// files' nodes carry their own file name.
struct Where {
  Where(int l = 0) : line(l) {}  // NOLINT: a bare line is a line of the main file
  Where(int l, std::shared_ptr<const std::string> f) : line(l), file(std::move(f)) {}
  int line = 0;
  std::shared_ptr<const std::string> file;
  // "line 12" in the main file, "conf.d/a.toml:12" elsewhere.
  std::string describe(const std::string& main_file) const {
    if (file && *file != main_file) return *file + ":" + std::to_string(line);
    return "line " + std::to_string(line);
  }
};

class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  void error(const Where& where, std::string key, std::string message) {
    errors_.push_back(ConfigError{fileOf(where), where.line, std::move(key), std::move(message)});
  }
  void warn(const Where& where, std::string key, std::string message) {
    warnings_.push_back(ConfigError{fileOf(where), where.line, std::move(key), std::move(message)});
  }
  const std::string& file() const { return file_; }

  bool hasErrors() const { return !errors_.empty(); }

  // Errors in file order; errors that belong to no line (a missing section) come last.
  std::vector<ConfigError> takeErrors() { return sorted(std::move(errors_)); }
  std::vector<std::string> takeWarnings() {
    std::vector<std::string> out;
    for (const ConfigError& w : sorted(std::move(warnings_))) out.push_back(w.toString());
    return out;
  }

 private:
  const std::string& fileOf(const Where& where) const { return where.file ? *where.file : file_; }
  // The main file first, then included files by name; by line within a file.
  std::vector<ConfigError> sorted(std::vector<ConfigError> v) const {
    std::stable_sort(v.begin(), v.end(), [this](const ConfigError& a, const ConfigError& b) {
      const bool ma = a.file == file_, mb = b.file == file_;
      if (ma != mb) return ma;
      if (a.file != b.file) return a.file < b.file;
      const int la = a.line > 0 ? a.line : INT_MAX;
      const int lb = b.line > 0 ? b.line : INT_MAX;
      return la < lb;
    });
    return v;
  }

  std::string file_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
};

Where lineOf(const toml::source_region& source) {
  return Where(static_cast<int>(source.begin.line), source.path);
}
Where lineOf(const toml::node& node) { return lineOf(node.source()); }

const char* typeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
  }
  return "an unknown type";
}

std::string expected(const char* what, const toml::node& got) {
  std::string out = "expected ";
  out += what;
  out += ", got ";
  out += typeName(got.type());
  return out;
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

bool isBareKey(std::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// "origin_group[0].origin[1].url"; keys that are not bare TOML keys are quoted so that the
// path stays unambiguous.
std::string childPath(const std::string& parent, std::string_view key) {
  std::string out = parent;
  if (!out.empty()) out += '.';
  if (isBareKey(key)) {
    out += key;
  } else {
    out += quoted(key);
  }
  return out;
}

std::string indexPath(const std::string& parent, size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// ----------------------------------------------------------------------------------------------
// Reading one table

// Reads the keys of one TOML table into config fields. Each accessor marks its key as known
// whether or not it is present; finish() then reports every key nobody asked for. Accessors
// leave `out` untouched when the key is absent (the struct default stays) or invalid (an error
// is recorded), and return true only when they stored a value.
class TableReader {
 public:
  TableReader(Diagnostics& diag, const toml::table& table, std::string path)
      : diag_(diag), table_(table), path_(std::move(path)) {}

  TableReader(const TableReader&) = delete;
  TableReader& operator=(const TableReader&) = delete;

  const std::string& path() const { return path_; }
  std::string path(std::string_view key) const { return childPath(path_, key); }
  Where line() const { return lineOf(table_); }
  Diagnostics& diag() { return diag_; }

  // The node for `key`, or null when absent.
  const toml::node* get(std::string_view key) {
    known_.insert(std::string(key));
    return table_.get(key);
  }

  bool has(std::string_view key) const { return table_.contains(key); }

  void missing(std::string_view key) { diag_.error(line(), path(key), "missing required key"); }

  void error(std::string_view key, const toml::node& at, std::string message) {
    diag_.error(lineOf(at), path(key), std::move(message));
  }

  bool string(std::string_view key, std::string& out) {
    const toml::node* node = get(key);
    if (!node) return false;
    const auto* value = node->as_string();
    if (!value) {
      error(key, *node, expected("a string", *node));
      return false;
    }
    out = value->get();
    return true;
  }

  // A string that must be one of `options` (value name → what it sets `out` to). A value not
  // listed is reported as `expected "a", "b" or "c", got "x"`.
  template <typename T>
  bool choice(std::string_view key, T& out,
              std::initializer_list<std::pair<std::string_view, T>> options) {
    std::string text;
    if (!string(key, text)) return false;
    for (const auto& [name, value] : options) {
      if (text == name) {
        out = value;
        return true;
      }
    }
    std::string list;
    size_t i = 0;
    for (const auto& option : options) {
      if (i > 0) list += i + 1 == options.size() ? " or " : ", ";
      list += quoted(option.first);
      ++i;
    }
    error(key, *get(key), "expected " + list + ", got " + quoted(text));
    return false;
  }

  bool integer(std::string_view key, int& out, int min, int max) {
    const toml::node* node = get(key);
    if (!node) return false;
    const auto* value = node->as_integer();
    if (!value) {
      error(key, *node, expected("an integer", *node));
      return false;
    }
    const int64_t v = value->get();
    if (v < min || v > max) {
      error(key, *node,
            "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                std::to_string(v));
      return false;
    }
    out = static_cast<int>(v);
    return true;
  }

  // A number (integer or float) within [min, max].
  bool number(std::string_view key, double& out, double min, double max) {
    const toml::node* node = get(key);
    if (!node) return false;
    double v = 0;
    if (const auto* i = node->as_integer()) {
      v = static_cast<double>(i->get());
    } else if (const auto* f = node->as_floating_point()) {
      v = f->get();
    } else {
      error(key, *node, expected("a number", *node));
      return false;
    }
    if (!(v >= min && v <= max)) {
      std::ostringstream msg;
      msg << "must be between " << min << " and " << max << ", got " << v;
      error(key, *node, msg.str());
      return false;
    }
    out = v;
    return true;
  }

  bool boolean(std::string_view key, bool& out) {
    const toml::node* node = get(key);
    if (!node) return false;
    const auto* value = node->as_boolean();
    if (!value) {
      error(key, *node, expected("true or false", *node));
      return false;
    }
    out = value->get();
    return true;
  }

  // A string with a unit ("16KiB") or a plain integer number of bytes.
  bool byteSize(std::string_view key, uint64_t& out, uint64_t min) {
    const toml::node* node = get(key);
    if (!node) return false;
    uint64_t bytes = 0;
    if (const auto* i = node->as_integer()) {
      if (i->get() < 0) {
        error(key, *node, "must not be negative, got " + std::to_string(i->get()));
        return false;
      }
      bytes = static_cast<uint64_t>(i->get());
    } else if (const auto* s = node->as_string()) {
      const auto parsed = parseByteSize(s->get());
      if (!parsed) {
        error(key, *node,
              "invalid byte size " + quoted(s->get()) +
                  ": expected a non-negative number with an optional unit B, KB, MB, GB, TB, "
                  "KiB, MiB, GiB or TiB, like \"256MiB\"");
        return false;
      }
      bytes = *parsed;
    } else {
      error(key, *node, expected("a byte size like \"256MiB\"", *node));
      return false;
    }
    if (bytes < min) {
      error(key, *node, "must be at least " + formatByteSize(min));
      return false;
    }
    out = bytes;
    return true;
  }

  // A string with a unit ("10s", "250ms") or a plain integer number of seconds.
  bool duration(std::string_view key, Millis& out, bool allow_zero) {
    const toml::node* node = get(key);
    if (!node) return false;
    Millis value{0};
    if (const auto* i = node->as_integer()) {
      constexpr int64_t kMaxSeconds = INT64_MAX / 1000;
      if (i->get() < 0 || i->get() > kMaxSeconds) {
        error(key, *node, "must be a non-negative number of seconds, got " +
                              std::to_string(i->get()));
        return false;
      }
      value = Seconds(i->get());
    } else if (const auto* s = node->as_string()) {
      const auto parsed = parseDuration(s->get());
      if (!parsed) {
        error(key, *node,
              "invalid duration " + quoted(s->get()) +
                  ": expected a non-negative number with a unit ms, s, m, h or d, like \"10s\"");
        return false;
      }
      value = *parsed;
    } else {
      error(key, *node, expected("a duration like \"10s\"", *node));
      return false;
    }
    if (!allow_zero && value.count() == 0) {
      error(key, *node, "must be greater than zero");
      return false;
    }
    out = value;
    return true;
  }

  // A duration that must be a whole number of seconds (TTLs: HTTP ages are in seconds).
  bool seconds(std::string_view key, Seconds& out) {
    Millis ms{0};
    if (!duration(key, ms, /*allow_zero=*/true)) return false;
    if (ms.count() % 1000 != 0) {
      error(key, *table_.get(key), "must be a whole number of seconds");
      return false;
    }
    out = std::chrono::duration_cast<Seconds>(ms);
    return true;
  }

  // An array of strings; every element is checked and reported on its own.
  bool stringList(std::string_view key, std::vector<std::string>& out) {
    const toml::node* node = get(key);
    if (!node) return false;
    const auto* array = node->as_array();
    if (!array) {
      error(key, *node, expected("an array of strings", *node));
      return false;
    }
    std::vector<std::string> values;
    bool ok = true;
    for (size_t i = 0; i < array->size(); ++i) {
      const toml::node& element = *array->get(i);
      const auto* s = element.as_string();
      if (!s) {
        diag_.error(lineOf(element), indexPath(path(key), i), expected("a string", element));
        ok = false;
        continue;
      }
      values.push_back(s->get());
    }
    if (!ok) return false;
    out = std::move(values);
    return true;
  }

  // A sub-table ([server]); null when absent or not a table (then an error is recorded).
  const toml::table* table(std::string_view key) {
    const toml::node* node = get(key);
    if (!node) return nullptr;
    if (const auto* t = node->as_table()) return t;
    std::string message = expected("a table", *node);
    if (node->is_array_of_tables()) message += ": write [" + path(key) + "], not [[" + path(key) + "]]";
    error(key, *node, std::move(message));
    return nullptr;
  }

  // An array of tables ([[listener]]); null when absent or of the wrong type. Elements that are
  // not tables are reported here and must be skipped by the caller (use forEachTable).
  const toml::array* tableArray(std::string_view key) {
    const toml::node* node = get(key);
    if (!node) return nullptr;
    const auto* array = node->as_array();
    if (!array) {
      std::string message = expected("an array of tables", *node);
      if (node->is_table()) message += ": write [[" + path(key) + "]], not [" + path(key) + "]";
      error(key, *node, std::move(message));
      return nullptr;
    }
    for (size_t i = 0; i < array->size(); ++i) {
      const toml::node& element = *array->get(i);
      if (!element.is_table()) {
        diag_.error(lineOf(element), indexPath(path(key), i), expected("a table", element));
      }
    }
    return array;
  }

  // Reports every key that no accessor asked for.
  void finish() {
    for (auto&& [key, node] : table_) {
      const std::string name(key.str());
      if (known_.count(name)) continue;
      std::string message = "unknown key";
      const std::string* best = nullptr;
      size_t best_distance = 3;  // suggest only close matches
      for (const std::string& candidate : known_) {
        const size_t d = editDistance(name, candidate);
        if (d < best_distance) {
          best_distance = d;
          best = &candidate;
        }
      }
      if (best) message += "; did you mean '" + *best + "'?";
      (void)node;
      diag_.error(lineOf(key.source()), path(name), std::move(message));
    }
  }

 private:
  Diagnostics& diag_;
  const toml::table& table_;
  std::string path_;
  std::set<std::string> known_;
};

// Calls fn(table, path, index) for every table element of an array of tables.
template <class Fn>
void forEachTable(const toml::array* array, const std::string& path, Fn&& fn) {
  if (!array) return;
  for (size_t i = 0; i < array->size(); ++i) {
    if (const auto* t = array->get(i)->as_table()) fn(*t, indexPath(path, i), i);
  }
}

// ----------------------------------------------------------------------------------------------
// Addresses, URLs, hostnames

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlnum(char c) {
  return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char toLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = toLower(c);
  return out;
}

bool hasSpaceOrControl(std::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

bool isIpv4Literal(const std::string& s) {
  in_addr addr{};
  return inet_pton(AF_INET, s.c_str(), &addr) == 1;
}

bool isIpv6Literal(const std::string& s) {
  in6_addr addr{};
  return inet_pton(AF_INET6, s.c_str(), &addr) == 1;
}

bool looksNumeric(std::string_view s) {
  for (char c : s) {
    if (!isDigit(c) && c != '.') return false;
  }
  return true;
}

// A DNS name: labels of letters, digits, '-' and '_' separated by single dots. '_' is not valid
// in host names proper but appears in real internal names, and rejecting it helps nobody.
bool isDnsName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!isAlnum(c) && c != '-' && c != '_') return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

// Parses a decimal port; nullopt unless 1-5 digits and at most 65535.
std::optional<uint16_t> parsePort(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  uint32_t port = 0;
  for (char c : s) {
    if (!isDigit(c)) return std::nullopt;
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port > 65535) return std::nullopt;
  return static_cast<uint16_t>(port);
}

// A listen address: "IPv4:port" or "[IPv6]:port". The host must be an IP literal because a
// bind address is not resolved; port 0 means "pick a free port" (tests use it). Returns an error
// message, or "" when `host` and `port` were filled.
std::string parseListenAddress(std::string_view text, std::string& host, uint16_t& port) {
  std::string_view host_part;
  std::string_view port_part;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return "missing ']' after the IPv6 address";
    host_part = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return "expected host:port, like \"[::1]:8080\"";
    port_part = rest.substr(1);
    if (!isIpv6Literal(std::string(host_part))) {
      return "invalid IPv6 address " + quoted(host_part);
    }
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return "expected host:port, like \"127.0.0.1:8080\"";
    host_part = text.substr(0, colon);
    port_part = text.substr(colon + 1);
    if (host_part.find(':') != std::string_view::npos) {
      return "IPv6 addresses must be in brackets, like \"[::1]:8080\"";
    }
    if (host_part.empty()) {
      return "missing host: use \"0.0.0.0:PORT\" or \"[::]:PORT\" for all interfaces";
    }
    if (!isIpv4Literal(std::string(host_part))) {
      return "host " + quoted(host_part) +
             " is not an IP address (listen addresses are not resolved; use an IPv4 address "
             "or a bracketed IPv6 address)";
    }
  }
  const auto parsed_port = parsePort(port_part);
  if (!parsed_port) return "invalid port " + quoted(port_part) + " (expected 0 to 65535)";
  host = std::string(host_part);
  port = *parsed_port;
  return "";
}

bool isLoopback(const std::string& host) {
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return host == "::1";
}

// An origin URL: http:// or https://, a host (IP literal or name), an optional port (default
// 80/443) and an optional path that becomes base_path without its trailing slash. No userinfo,
// query or fragment: credentials do not belong in a config shown in logs, and a query would be
// ambiguous once the viewer's own query is appended. The host is not resolved here: resolution
// happens at connect time in proxy/ so that DNS changes are followed without a reload.
// Returns an error message, or "" when `origin` was filled.
std::string parseOriginUrl(std::string_view url, OriginConfig& origin) {
  const size_t sep = url.find("://");
  if (sep == std::string_view::npos) return "expected an http:// or https:// URL";
  const std::string scheme = lowercase(url.substr(0, sep));
  uint16_t default_port = 0;
  if (scheme == "http") {
    default_port = 80;
  } else if (scheme == "https") {
    default_port = 443;
  } else {
    return "unsupported scheme " + quoted(url.substr(0, sep)) + " (only http and https)";
  }
  if (hasSpaceOrControl(url)) return "URL must not contain spaces or control characters";
  const std::string_view rest = url.substr(sep + 3);
  const size_t authority_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, authority_end);
  const std::string_view path =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return "user:password@ is not allowed in origin URLs";
  }
  if (path.find_first_of("?#") != std::string_view::npos) {
    return "query and fragment are not allowed in origin URLs";
  }

  std::string_view host;
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return "missing ']' after the IPv6 address";
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return "unexpected characters after the IPv6 address";
      port_text = after.substr(1);
      has_port = true;
    }
    if (!isIpv6Literal(std::string(host))) return "invalid IPv6 address " + quoted(host);
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      has_port = true;
      if (port_text.find(':') != std::string_view::npos) {
        return "IPv6 addresses must be in brackets, like \"http://[::1]:8081\"";
      }
    }
    if (host.empty()) return "missing host";
    if (looksNumeric(host)) {
      if (!isIpv4Literal(std::string(host))) return "invalid IPv4 address " + quoted(host);
    } else if (!isDnsName(host)) {
      return "invalid host name " + quoted(host);
    }
  }
  uint16_t port = default_port;
  if (has_port) {
    const auto parsed = parsePort(port_text);
    if (!parsed || *parsed == 0) return "invalid port " + quoted(port_text) + " (expected 1 to 65535)";
    port = *parsed;
  }

  std::string base_path(path);
  while (!base_path.empty() && base_path.back() == '/') base_path.pop_back();

  origin.scheme = scheme;
  origin.host = lowercase(host);
  origin.port = port;
  origin.base_path = std::move(base_path);
  return "";
}

// A virtual-host name as matched against Host and SNI: "*", "*.example.com", "example.com", an
// IPv4 literal or a bracketed IPv6 literal, without a port. Returns an error message or "".
std::string checkHostname(const std::string& name) {
  if (name == "*") return "";
  if (name.empty()) return "empty hostname";
  if (name.front() == '[') {
    if (name.back() == ']' && isIpv6Literal(name.substr(1, name.size() - 2))) return "";
    return "invalid IPv6 hostname " + quoted(name);
  }
  std::string_view rest = name;
  if (rest.starts_with("*.")) rest.remove_prefix(2);
  if (rest.find(':') != std::string_view::npos) {
    return "hostname " + quoted(name) + " must not contain a port (hosts match on any port)";
  }
  if (rest.find('*') != std::string_view::npos) {
    return "invalid hostname " + quoted(name) + ": '*' is only allowed as \"*\" or \"*.domain\"";
  }
  if (!isDnsName(rest)) return "invalid hostname " + quoted(name);
  return "";
}

// ----------------------------------------------------------------------------------------------
// Sections

constexpr int kMaxWorkers = 256;

void readServer(TableReader& r, ServerConfig& server) {
  r.integer("workers", server.workers, 0, kMaxWorkers);
  const bool header_set = r.byteSize("max_header_bytes", server.max_header_bytes, 1024);
  const bool uri_set = r.byteSize("max_uri_bytes", server.max_uri_bytes, 64);
  // The request target is part of the head, so its limit cannot exceed the head's. Only an
  // explicit contradiction is an error; a lowered head limit quietly lowers the default.
  if (server.max_uri_bytes > server.max_header_bytes) {
    if (uri_set) {
      r.error("max_uri_bytes", *r.get("max_uri_bytes"),
              "must not exceed server.max_header_bytes (" +
                  formatByteSize(server.max_header_bytes) + ")");
    } else if (header_set) {
      server.max_uri_bytes = server.max_header_bytes;
    }
  }
  r.integer("max_connections", server.max_connections, 1, 10'000'000);
  r.duration("header_timeout", server.header_timeout, false);
  r.duration("idle_timeout", server.idle_timeout, false);
  r.duration("send_timeout", server.send_timeout, false);
  r.duration("drain_timeout", server.drain_timeout, true);
  if (r.string("upgrade_binary", server.upgrade_binary) && !server.upgrade_binary.empty() &&
      server.upgrade_binary.front() != '/') {
    // Relative to what? The working directory of a daemon is nobody's business: refuse it.
    r.error("upgrade_binary", *r.get("upgrade_binary"),
            "must be an absolute path, got " + quoted(server.upgrade_binary));
  }
  if (r.duration("upgrade_timeout", server.upgrade_timeout, false) &&
      (server.upgrade_timeout < Millis(1000) || server.upgrade_timeout > Millis(3'600'000))) {
    r.error("upgrade_timeout", *r.get("upgrade_timeout"), "must be between 1s and 1h");
  }
  int streams = static_cast<int>(server.http2_max_concurrent_streams);
  if (r.integer("http2_max_concurrent_streams", streams, 1, 10'000)) {
    server.http2_max_concurrent_streams = static_cast<uint32_t>(streams);
  }
  // RFC 9113 §6.9.1: a window is at most 2^31-1; below the initial 65535 there is no point.
  constexpr uint64_t kMaxWindow = (1ull << 31) - 1;
  if (r.byteSize("http2_stream_window", server.http2_stream_window_bytes, 65535) &&
      server.http2_stream_window_bytes > kMaxWindow) {
    r.error("http2_stream_window", *r.get("http2_stream_window"),
            "must not exceed 2147483647 bytes (RFC 9113 §6.9.1)");
  }
  if (r.byteSize("http2_connection_window", server.http2_connection_window_bytes, 65535) &&
      server.http2_connection_window_bytes > kMaxWindow) {
    r.error("http2_connection_window", *r.get("http2_connection_window"),
            "must not exceed 2147483647 bytes (RFC 9113 §6.9.1)");
  }
  if (r.duration("http2_abuse_interval", server.http2_abuse_interval, false) &&
      (server.http2_abuse_interval < Millis(100) || server.http2_abuse_interval > Millis(3'600'000))) {
    r.error("http2_abuse_interval", *r.get("http2_abuse_interval"), "must be between 100ms and 1h");
  }
  const auto frameBudget = [&r](std::string_view key, uint32_t& out, int min) {
    int v = static_cast<int>(out);
    if (r.integer(key, v, min, 1'000'000)) out = static_cast<uint32_t>(v);
  };
  frameBudget("http2_max_resets", server.http2_max_resets, 1);
  frameBudget("http2_max_settings", server.http2_max_settings, 1);
  frameBudget("http2_max_pings", server.http2_max_pings, 1);
  frameBudget("http2_max_priority", server.http2_max_priority, 1);
  frameBudget("http2_max_window_updates", server.http2_max_window_updates, 1);
  frameBudget("http2_max_empty_data", server.http2_max_empty_data, 1);
  int continuations = static_cast<int>(server.http2_max_continuations);
  if (r.integer("http2_max_continuations", continuations, 0, 1000)) {
    server.http2_max_continuations = static_cast<uint32_t>(continuations);
  }
  if (r.byteSize("http2_max_header_block", server.http2_max_header_block_bytes, 1024) &&
      server.http2_max_header_block_bytes > (64ull << 20)) {
    r.error("http2_max_header_block", *r.get("http2_max_header_block"),
            "must not exceed 64MiB");
  }
  if (r.duration("http2_zero_window_timeout", server.http2_zero_window_timeout, false) &&
      server.http2_zero_window_timeout < Millis(100)) {
    r.error("http2_zero_window_timeout", *r.get("http2_zero_window_timeout"),
            "must be at least 100ms");
  }
  if (r.string("user", server.user) && !server.user.empty()) {
    // Checked here so that `-t` catches a typo before a start as root fails on it.
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    const int rc = ::getpwnam_r(server.user.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc != 0 || found == nullptr) {
      r.error("user", *r.get("user"),
              "no such user " + quoted(server.user) +
                  (rc != 0 ? std::string(" (") + std::strerror(rc) + ")" : std::string()));
    } else if (pw.pw_uid == 0) {
      r.error("user", *r.get("user"), quoted(server.user) + " is root; leave user empty to stay root");
    }
  }
  r.finish();
}

void readDns(TableReader& r, DnsConfig& dns) {
  if (r.stringList("nameservers", dns.nameservers)) {
    const toml::array& array = *r.get("nameservers")->as_array();
    for (size_t i = 0; i < dns.nameservers.size(); ++i) {
      const std::string& ns = dns.nameservers[i];
      std::string host;
      uint16_t port = 0;
      if (isIpv4Literal(ns) || isIpv6Literal(ns)) continue;
      const std::string err = parseListenAddress(ns, host, port);
      if (!err.empty() || port == 0) {
        r.diag().error(lineOf(*array.get(i)), indexPath(r.path("nameservers"), i),
                       "invalid nameserver " + quoted(ns) +
                           ": expected an IP address, \"ip:port\" or \"[ipv6]:port\"");
      }
    }
  }
  r.string("hosts_file", dns.hosts_file);
  r.finish();
}

void readAdminToken(TableReader& r, AdminTokenConfig& token) {
  if (!r.string("name", token.name)) {
    if (!r.has("name")) r.missing("name");
  } else if (token.name.empty() || hasSpaceOrControl(token.name) || token.name.size() > 64) {
    r.error("name", *r.get("name"),
            "must be 1 to 64 characters without spaces or control characters (it names the "
            "token in the audit log)");
  }
  if (!r.string("sha256", token.sha256)) {
    if (!r.has("sha256")) r.missing("sha256");
  } else {
    bool hex = token.sha256.size() == 64;
    for (char& c : token.sha256) {
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) hex = false;
    }
    if (!hex) {
      r.error("sha256", *r.get("sha256"),
              "expected the token's SHA-256 as 64 hex digits (`streamedge hash-token` prints "
              "it; never the token itself)");
    }
  }
  std::vector<std::string> scopes;
  if (r.stringList("scopes", scopes)) {
    for (size_t i = 0; i < scopes.size(); ++i) {
      const std::string& s = scopes[i];
      if (s == "metrics") {
        token.scopes |= kAdminScopeMetrics;
      } else if (s == "status") {
        token.scopes |= kAdminScopeStatus;
      } else if (s == "purge") {
        token.scopes |= kAdminScopePurge;
      } else if (s == "debug") {
        token.scopes |= kAdminScopeDebug;
      } else if (s == "all") {
        token.scopes |= kAdminScopeAll;
      } else {
        r.diag().error(lineOf(*r.get("scopes")->as_array()->get(i)),
                       indexPath(r.path("scopes"), i),
                       "expected \"metrics\", \"status\", \"purge\", \"debug\" or \"all\", got " +
                           quoted(s));
      }
    }
    if (scopes.empty()) r.error("scopes", *r.get("scopes"), "must name at least one scope");
  } else if (!r.has("scopes")) {
    r.missing("scopes");
  }
  r.finish();
}

void readCertificate(TableReader& r, CertificateConfig& cert);

void readAdmin(TableReader& r, AdminConfig& admin) {
  if (r.string("bearer_token", admin.bearer_token)) {
    if (hasSpaceOrControl(admin.bearer_token)) {
      r.error("bearer_token", *r.get("bearer_token"),
              "must not contain spaces or control characters");
    } else if (!admin.bearer_token.empty()) {
      r.diag().warn(lineOf(*r.get("bearer_token")), r.path("bearer_token"),
                    "deprecated: a token in clear with every scope; use [[admin.token]] with "
                    "its sha256 and scopes instead");
    }
  }
  forEachTable(r.tableArray("token"), r.path("token"),
               [&](const toml::table& t, const std::string& path, size_t) {
                 TableReader tr(r.diag(), t, path);
                 admin.tokens.emplace_back();
                 readAdminToken(tr, admin.tokens.back());
                 for (size_t i = 0; i + 1 < admin.tokens.size(); ++i) {
                   const AdminTokenConfig& mine = admin.tokens.back();
                   if (!mine.name.empty() && admin.tokens[i].name == mine.name) {
                     r.diag().error(lineOf(t), path + ".name",
                                    "duplicate token name " + quoted(mine.name));
                   } else if (!mine.sha256.empty() && admin.tokens[i].sha256 == mine.sha256) {
                     r.diag().error(lineOf(t), path + ".sha256",
                                    "the same token hash as " + quoted(admin.tokens[i].name));
                   }
                 }
               });
  forEachTable(r.tableArray("certificate"), r.path("certificate"),
               [&](const toml::table& t, const std::string& path, size_t) {
                 TableReader cr(r.diag(), t, path);
                 admin.certificates.emplace_back();
                 readCertificate(cr, admin.certificates.back());
               });
  // The file is only recorded here; tls/ reads and checks it when it builds the context.
  if (r.string("client_ca", admin.client_ca) && !admin.client_ca.empty() &&
      admin.certificates.empty()) {
    r.error("client_ca", *r.get("client_ca"),
            "a client certificate is asked for in a TLS handshake: needs [[admin.certificate]]");
  }
  if (r.string("address", admin.address) && !admin.address.empty()) {
    std::string host;
    uint16_t port = 0;
    const std::string err = parseListenAddress(admin.address, host, port);
    if (!err.empty()) {
      r.error("address", *r.get("address"), err);
    } else if (!isLoopback(host) && admin.bearer_token.empty() && !r.has("token") &&
               admin.client_ca.empty()) {
      r.diag().warn(lineOf(*r.get("address")), r.path("address"),
                    "admin listener on a non-loopback address without [[admin.token]] or "
                    "client_ca: anyone who can reach it can purge the cache");
    } else if (!isLoopback(host) && admin.certificates.empty()) {
      r.diag().warn(lineOf(*r.get("address")), r.path("address"),
                    "admin listener on a non-loopback address without [[admin.certificate]]: "
                    "bearer tokens cross the network in clear");
    }
  }
  r.duration("health_stall_bound", admin.health_stall_bound, false);
  r.boolean("debug_endpoints", admin.debug_endpoints);
  r.finish();
}

void readCertificate(TableReader& r, CertificateConfig& cert) {
  // Files are only recorded here; tls/ opens and checks them when it builds the context.
  if (!r.string("cert", cert.cert)) {
    if (!r.has("cert")) r.missing("cert");
  } else if (cert.cert.empty()) {
    r.error("cert", *r.get("cert"), "must not be empty");
  }
  if (!r.string("key", cert.key)) {
    if (!r.has("key")) r.missing("key");
  } else if (cert.key.empty()) {
    r.error("key", *r.get("key"), "must not be empty");
  }
  r.finish();
}

void readListener(TableReader& r, ListenerConfig& listener) {
  if (r.string("address", listener.address)) {
    const std::string err = parseListenAddress(listener.address, listener.host, listener.port);
    if (!err.empty()) r.error("address", *r.get("address"), err);
  } else if (!r.has("address")) {
    r.missing("address");
  }
  r.integer("backlog", listener.backlog, 1, 65535);
  forEachTable(r.tableArray("certificate"), r.path("certificate"),
               [&](const toml::table& t, const std::string& path, size_t) {
                 TableReader cr(r.diag(), t, path);
                 listener.certificates.emplace_back();
                 readCertificate(cr, listener.certificates.back());
               });
  // TLS settings; the cipher strings are checked by tls/ when it builds the context.
  if (r.string("tls_min_version", listener.tls_min_version) &&
      listener.tls_min_version != "1.2" && listener.tls_min_version != "1.3") {
    r.error("tls_min_version", *r.get("tls_min_version"),
            "expected \"1.2\" or \"1.3\" (older versions are never offered), got " +
                quoted(listener.tls_min_version));
  }
  if (r.string("tls_ciphers", listener.tls_ciphers) && listener.tls_ciphers.empty()) {
    r.error("tls_ciphers", *r.get("tls_ciphers"), "must not be empty");
  }
  if (r.string("tls_ciphersuites", listener.tls_ciphersuites) && listener.tls_ciphersuites.empty()) {
    r.error("tls_ciphersuites", *r.get("tls_ciphersuites"), "must not be empty");
  }
  r.boolean("tls_session_tickets", listener.tls_session_tickets);
  if (r.boolean("http2", listener.http2) && listener.http2 && listener.certificates.empty()) {
    r.error("http2", *r.get("http2"),
            "HTTP/2 is offered on TLS listeners only (by ALPN); this one has no certificate");
  }
  if (r.boolean("h2c", listener.h2c) && listener.h2c && !listener.certificates.empty()) {
    r.error("h2c", *r.get("h2c"),
            "cleartext HTTP/2 is for plain listeners; TLS listeners offer h2 by ALPN (http2)");
  }
  r.string("tls_ticket_key_file", listener.tls_ticket_key_file);
  if (r.seconds("tls_ticket_rotation", listener.tls_ticket_rotation) &&
      listener.tls_ticket_rotation.count() < 60) {
    r.error("tls_ticket_rotation", *r.get("tls_ticket_rotation"), "must be at least 60s");
  }
  r.integer("tls_session_cache_size", listener.tls_session_cache_size, 0, 10'000'000);
  if (r.seconds("tls_session_timeout", listener.tls_session_timeout) &&
      listener.tls_session_timeout.count() == 0) {
    r.error("tls_session_timeout", *r.get("tls_session_timeout"), "must be greater than zero");
  }
  r.boolean("redirect_https", listener.redirect_https);
  int https_port = 0;
  if (r.integer("https_port", https_port, 1, 65535)) listener.https_port = static_cast<uint16_t>(https_port);
  if (listener.redirect_https && !listener.certificates.empty()) {
    r.error("redirect_https", *r.get("redirect_https"),
            "only a plain HTTP listener redirects to HTTPS; this one has certificates");
  }
  r.finish();
}

void readRamCache(TableReader& r, RamCacheConfig& ram) {
  const bool size_set = r.byteSize("size", ram.size_bytes, 1);
  const bool max_set = r.byteSize("max_object_size", ram.max_object_bytes, 1);
  if (ram.max_object_bytes > ram.size_bytes) {
    if (max_set) {
      r.error("max_object_size", *r.get("max_object_size"),
              "must not exceed cache.ram.size (" + formatByteSize(ram.size_bytes) + ")");
    } else if (size_set) {
      ram.max_object_bytes = ram.size_bytes;
    }
  }
  r.byteSize("fill_window", ram.fill_window_bytes, 512 * 1024);
  r.byteSize("fill_memory", ram.fill_memory_bytes, 1 << 20);
  r.duration("fill_stall_timeout", ram.fill_stall_timeout, /*allow_zero=*/true);
  r.boolean("sendfile", ram.sendfile);
  int max_variants = 0;
  if (r.integer("max_variants", max_variants, 1, 1024)) {
    ram.max_variants = static_cast<uint32_t>(max_variants);
  }
  int max_vary_urls = 0;
  if (r.integer("max_vary_urls", max_vary_urls, 64, 1 << 26)) {
    ram.max_vary_urls = static_cast<uint32_t>(max_vary_urls);
  }
  r.finish();
}

void readSsdCache(TableReader& r, SsdCacheConfig& ssd) {
  ssd.enabled = true;
  if (r.string("path", ssd.path)) {
    if (ssd.path.empty()) r.error("path", *r.get("path"), "must not be empty");
  } else if (!r.has("path")) {
    r.missing("path");
  }
  const bool size_set = r.byteSize("size", ssd.size_bytes, 1);
  if (!size_set && !r.has("size")) r.missing("size");
  // 4 KiB: the O_DIRECT alignment of every device we expect; 1 GiB: offsets inside a region
  // are 32-bit on disk.
  constexpr uint64_t kAlign = 4096;
  if (r.byteSize("region_size", ssd.region_bytes, 16 * 1024)) {
    if (ssd.region_bytes % kAlign != 0) {
      r.error("region_size", *r.get("region_size"), "must be a multiple of 4KiB");
    } else if (ssd.region_bytes > (1ull << 30)) {
      r.error("region_size", *r.get("region_size"), "must be at most 1GiB");
    }
  }
  // One region is being filled, one may be being written: fewer than three leaves nothing to
  // keep.
  if (size_set && ssd.size_bytes / ssd.region_bytes < 3) {
    r.error("size", *r.get("size"),
            "must hold at least 3 regions of cache.ssd.region_size (" +
                formatByteSize(ssd.region_bytes) + ")");
  }
  r.boolean("encrypt", ssd.encrypt);
  if (r.string("key_file", ssd.key_file)) {
    if (ssd.key_file.empty()) {
      r.error("key_file", *r.get("key_file"),
              "must not be empty (leave it out for an ephemeral key)");
    } else if (!ssd.encrypt) {
      r.diag().warn(lineOf(*r.get("key_file")), r.path("key_file"),
                    "ignored: encrypt = false");
    }
  }
  r.choice("admission", ssd.admission, {{"evict", SsdAdmission::kEvict}, {"fill", SsdAdmission::kFill}});
  r.choice("io_backend", ssd.io_backend,
           {{"auto", IoBackend::kAuto}, {"io_uring", IoBackend::kIoUring}, {"threads", IoBackend::kThreads}});
  r.boolean("direct_io", ssd.direct_io);
  r.choice("reclaim", ssd.reclaim, {{"fifo", SsdReclaim::kFifo}, {"reinsert", SsdReclaim::kReinsert}});
  r.byteSize("write_queue", ssd.write_queue_bytes, 1 << 20);
  r.duration("sync_interval", ssd.sync_interval, /*allow_zero=*/true);
  r.choice("rebuild", ssd.background_rebuild, {{"background", true}, {"before_start", false}});
  if (!r.string("checkpoint", ssd.checkpoint) && !ssd.path.empty() &&
      ssd.path.rfind("/dev/", 0) != 0) {
    ssd.checkpoint = ssd.path + ".checkpoint";
  }
  if (!ssd.checkpoint.empty() && ssd.checkpoint == ssd.path) {
    r.error("checkpoint", *r.get("checkpoint"), "must not be the store itself");
  }
  r.duration("checkpoint_interval", ssd.checkpoint_interval, /*allow_zero=*/true);
  const bool block_device = ssd.path.rfind("/dev/", 0) == 0;
  if (r.string("keyring", ssd.keyring)) {
    if (!ssd.keyring.empty() && (ssd.keyring == ssd.path || ssd.keyring == ssd.checkpoint)) {
      r.error("keyring", *r.get("keyring"), "must be a file of its own (not the store or its checkpoint)");
    }
  } else if (!ssd.path.empty() && !block_device) {
    ssd.keyring = ssd.path + ".keys";
  } else if (block_device && ssd.encrypt && !ssd.key_file.empty()) {
    r.diag().warn(r.line(), r.path("keyring"),
                  "not set for a block device: every object is sealed with the store key, so a "
                  "purge of a whole vhost cannot destroy a data key (set keyring to a file)");
  }
  r.finish();
}

// A field name (RFC 9110 §5.1: a token) that the origin may send for this edge alone. Not one
// of the fields whose meaning is fixed elsewhere, nor one the proxy writes itself.
bool isValidOwnTargetName(std::string_view name, std::string& why) {
  auto tchar = [](unsigned char c) {
    return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                                  std::string_view::npos;
  };
  if (!std::all_of(name.begin(), name.end(), [&](char c) { return tchar(static_cast<unsigned char>(c)); })) {
    why = "must be a field name (letters, digits and !#$%&'*+-.^_`|~)";
    return false;
  }
  for (std::string_view reserved :
       {"Cache-Control", "CDN-Cache-Control", "Surrogate-Control", "Expires", "Pragma", "Age",
        "Date", "Vary", "Via", "X-Cache", "Cache-Status", "Connection", "Content-Length",
        "Transfer-Encoding"}) {
    if (name.size() == reserved.size() &&
        std::equal(name.begin(), name.end(), reserved.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) ==
                 std::tolower(static_cast<unsigned char>(b));
        })) {
      why = "must not be " + std::string(reserved) + " (a field with its own meaning)";
      return false;
    }
  }
  return true;
}

void readCache(TableReader& r, CacheConfig& cache) {
  if (r.string("cache_control_target", cache.cache_control_target)) {
    std::string why;
    if (!cache.cache_control_target.empty() &&
        !isValidOwnTargetName(cache.cache_control_target, why)) {
      r.error("cache_control_target", *r.get("cache_control_target"), why);
    }
  }
  r.boolean("surrogate_control", cache.surrogate_control);
  if (const toml::table* t = r.table("ram")) {
    TableReader rr(r.diag(), *t, r.path("ram"));
    readRamCache(rr, cache.ram);
  }
  if (const toml::table* t = r.table("ssd")) {
    TableReader sr(r.diag(), *t, r.path("ssd"));
    readSsdCache(sr, cache.ssd);
  }
  r.finish();
}

// TLS-to-origin keys, readable on an origin group (defaults for its origins) and on an origin.
void readOriginTls(TableReader& r, OriginConfig& origin) {
  r.boolean("tls_verify", origin.tls_verify);
  r.string("ca_file", origin.ca_file);
  r.string("client_cert", origin.client_cert);
  r.string("client_key", origin.client_key);
  r.string("tls_server_name", origin.tls_server_name);
}

void checkOriginTls(TableReader& r, const OriginConfig& origin) {
  if (origin.client_cert.empty() != origin.client_key.empty()) {
    const char* given = origin.client_cert.empty() ? "client_key" : "client_cert";
    if (const toml::node* at = r.get(given)) {
      r.error(given, *at, "client_cert and client_key go together (mTLS)");
    }
  }
}

// Origin protection keys, readable on an origin group (defaults for its origins) and on an
// origin.
void readOriginLimits(TableReader& r, OriginConfig& origin) {
  r.integer("max_concurrent_requests", origin.max_concurrent_requests, 0, 1'000'000);
  r.integer("max_connections", origin.max_connections, 0, 1'000'000);
  r.integer("queue_size", origin.queue_size, 0, 1'000'000);
  r.duration("queue_timeout", origin.queue_timeout, false);
  r.duration("dns_cache_time", origin.dns_cache_time, true);
}

void readOrigin(TableReader& r, OriginConfig& origin) {
  readOriginTls(r, origin);
  checkOriginTls(r, origin);
  readOriginLimits(r, origin);
  if (r.string("url", origin.url)) {
    const std::string err = parseOriginUrl(origin.url, origin);
    if (!err.empty()) r.error("url", *r.get("url"), err);
  } else if (!r.has("url")) {
    r.missing("url");
  }
  if (r.string("name", origin.name) && origin.name.empty()) {
    r.error("name", *r.get("name"), "must not be empty (leave it out for the default host:port)");
  }
  if (origin.name.empty() && !origin.host.empty()) {
    const bool v6 = origin.host.find(':') != std::string::npos;
    origin.name = (v6 ? "[" + origin.host + "]" : origin.host) + ":" + std::to_string(origin.port);
  }
  r.string("dc", origin.dc);
  r.integer("priority", origin.priority, 0, 1'000'000);
  r.integer("weight", origin.weight, 1, 10'000);
  r.duration("connect_timeout", origin.connect_timeout, false);
  r.duration("first_byte_timeout", origin.first_byte_timeout, false);
  r.duration("read_timeout", origin.read_timeout, false);
  r.duration("idle_timeout", origin.idle_timeout, true);
  r.integer("max_idle_per_worker", origin.max_idle_per_worker, 0, 100'000);
  r.finish();
}

// "200", "2xx" or "200-399" (or a bare integer): the statuses a health check accepts.
bool parseExpectedStatus(std::string_view text, int& min, int& max) {
  auto number = [](std::string_view s, int& out) {
    if (s.size() != 3 || !isDigit(s[0]) || !isDigit(s[1]) || !isDigit(s[2])) return false;
    out = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    return out >= 100 && out <= 599;
  };
  if (text.size() == 3 && isDigit(text[0]) && text.substr(1) == "xx") {
    const int cls = text[0] - '0';
    if (cls < 1 || cls > 5) return false;
    min = cls * 100;
    max = cls * 100 + 99;
    return true;
  }
  const size_t dash = text.find('-');
  if (dash == std::string_view::npos) {
    if (!number(text, min)) return false;
    max = min;
    return true;
  }
  return number(text.substr(0, dash), min) && number(text.substr(dash + 1), max) && min <= max;
}

void readHealthCheck(TableReader& r, HealthCheckConfig& check) {
  check.enabled = true;
  if (r.string("path", check.path)) {
    if (check.path.empty() || check.path.front() != '/' || hasSpaceOrControl(check.path) ||
        check.path.find('#') != std::string::npos) {
      r.error("path", *r.get("path"),
              "must be an origin-form path like \"/health\" (starting with '/', no spaces, "
              "control characters or fragment), got " + quoted(check.path));
    }
  } else if (!r.has("path")) {
    r.missing("path");
  }
  const bool interval_set = r.duration("interval", check.interval, false);
  const bool timeout_set = r.duration("timeout", check.timeout, false);
  if (!timeout_set && interval_set && check.timeout > check.interval) {
    check.timeout = check.interval;  // the default timeout shrinks with a short interval
  }
  if (timeout_set && check.timeout > check.interval) {
    r.error("timeout", *r.get("timeout"),
            "must not exceed interval (" + std::to_string(check.interval.count()) +
                " ms): a check never overlaps the next one");
  }
  if (const toml::node* node = r.get("expected_status")) {
    std::string text;
    if (const auto* i = node->as_integer()) {
      text = std::to_string(i->get());
    } else if (const auto* s = node->as_string()) {
      text = s->get();
    }
    if (!parseExpectedStatus(text, check.expected_status_min, check.expected_status_max)) {
      r.error("expected_status", *node,
              "expected a status (200), a class (\"2xx\") or a range (\"200-399\") within "
              "100..599, got " + (text.empty() ? std::string(typeName(node->type())) : quoted(text)));
    }
  }
  r.integer("fall", check.fall, 1, 100);
  r.integer("rise", check.rise, 1, 100);
  if (r.string("host", check.host) && (hasSpaceOrControl(check.host) ||
                                       check.host.find_first_of("/?#@") != std::string::npos)) {
    r.error("host", *r.get("host"), "must be a host[:port] for the Host field, got " +
                                        quoted(check.host));
  }
  r.finish();
}

void readOutlierDetection(TableReader& r, OutlierDetectionConfig& outlier) {
  r.integer("consecutive_failures", outlier.consecutive_failures, 0, 1000);
  r.duration("base_ejection_time", outlier.base_ejection_time, false);
  const bool max_set = r.duration("max_ejection_time", outlier.max_ejection_time, false);
  if (outlier.max_ejection_time < outlier.base_ejection_time) {
    if (max_set) {
      r.error("max_ejection_time", *r.get("max_ejection_time"),
              "must be at least base_ejection_time (" +
                  std::to_string(outlier.base_ejection_time.count()) + " ms)");
    } else {
      outlier.max_ejection_time = outlier.base_ejection_time;
    }
  }
  r.integer("max_ejected_percent", outlier.max_ejected_percent, 0, 100);
  r.duration("backoff_reset", outlier.backoff_reset, false);
  r.finish();
}

void readOriginGroup(TableReader& r, OriginGroupConfig& group) {
  if (r.string("name", group.name)) {
    if (group.name.empty()) r.error("name", *r.get("name"), "must not be empty");
  } else if (!r.has("name")) {
    r.missing("name");
  }
  r.integer("retries", group.retries, 0, 16);
  r.duration("retry_deadline", group.retry_deadline, true);
  r.number("retry_budget", group.retry_budget, 0.0, 1.0);
  r.integer("retry_budget_min", group.retry_budget_min, 0, 1'000'000);
  r.number("client_miss_rate", group.client_miss_rate, 0.0, 1e6);
  r.number("client_miss_burst", group.client_miss_burst, 0.0, 1e6);
  r.integer("resume_attempts", group.resume_attempts, 0, 16);
  r.duration("resume_deadline", group.resume_deadline, false);
  r.byteSize("min_rate", group.min_rate, 0);
  r.duration("min_rate_window", group.min_rate_window, false);
  r.duration("slow_start", group.slow_start, true);
  if (const toml::table* t = r.table("health_check")) {
    TableReader hr(r.diag(), *t, r.path("health_check"));
    readHealthCheck(hr, group.health_check);
  }
  if (const toml::table* t = r.table("outlier_detection")) {
    TableReader orr(r.diag(), *t, r.path("outlier_detection"));
    readOutlierDetection(orr, group.outlier);
  }
  OriginConfig tls_defaults;  // the group's TLS and protection keys, inherited by every origin
  readOriginTls(r, tls_defaults);
  checkOriginTls(r, tls_defaults);
  readOriginLimits(r, tls_defaults);
  const toml::array* origins = r.tableArray("origin");
  std::map<std::string, int> names;  // origin name → line of its first use
  forEachTable(origins, r.path("origin"), [&](const toml::table& t, const std::string& path, size_t) {
    TableReader orr(r.diag(), t, path);
    group.origins.emplace_back();
    OriginConfig& origin = group.origins.back();
    origin.tls_verify = tls_defaults.tls_verify;
    origin.ca_file = tls_defaults.ca_file;
    origin.client_cert = tls_defaults.client_cert;
    origin.client_key = tls_defaults.client_key;
    origin.tls_server_name = tls_defaults.tls_server_name;
    origin.max_concurrent_requests = tls_defaults.max_concurrent_requests;
    origin.max_connections = tls_defaults.max_connections;
    origin.queue_size = tls_defaults.queue_size;
    origin.queue_timeout = tls_defaults.queue_timeout;
    origin.dns_cache_time = tls_defaults.dns_cache_time;
    readOrigin(orr, origin);
    if (origin.name.empty()) return;
    // Origin names label metrics and logs; two origins with one name would share a series.
    const auto [it, inserted] = names.emplace(origin.name, orr.line().line);
    if (!inserted) {
      const toml::node* at = t.get("name") ? t.get("name") : t.get("url");
      r.diag().error(at ? lineOf(*at) : orr.line(), orr.path(t.get("name") ? "name" : "url"),
                     "duplicate origin name " + quoted(origin.name) + " in this group (first on line " +
                         std::to_string(it->second) + "); set name to tell them apart");
    }
  });
  if (group.origins.empty() && (origins ? origins->empty() : !r.has("origin"))) {
    r.diag().error(r.line(), r.path("origin"),
                   "origin group has no origins: add at least one [[origin_group.origin]]");
  }
  // Lower priority is preferred; equal priorities keep their file order (weights share them).
  std::stable_sort(group.origins.begin(), group.origins.end(),
                   [](const OriginConfig& a, const OriginConfig& b) { return a.priority < b.priority; });
  r.finish();
}

// The key policy of a route. A route's drop_params ADD to the built-in list (tokens, CMCD,
// session ids), so a route can never forget to drop them; a parameter named in keep_params is
// removed from the drop list, which is the one way to key on a built-in name such as "sid".
void readKeyPolicy(TableReader& r, KeyPolicy& key) {
  const bool ignore_set = r.boolean("ignore_query", key.ignore_query);
  std::vector<std::string> keep;
  std::vector<std::string> drop;
  const bool keep_set = r.stringList("keep_params", keep);
  const bool drop_set = r.stringList("drop_params", drop);
  bool ok = true;
  auto checkNames = [&](const char* name, const std::vector<std::string>& list) {
    const toml::array& array = *r.get(name)->as_array();
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i].empty() || hasSpaceOrControl(list[i]) ||
          list[i].find_first_of("&=#") != std::string::npos) {
        r.diag().error(lineOf(*array.get(i)), indexPath(r.path(name), i),
                       "invalid query parameter name " + quoted(list[i]));
        ok = false;
      }
    }
  };
  if (keep_set) checkNames("keep_params", keep);
  if (drop_set) checkNames("drop_params", drop);
  if (ignore_set && key.ignore_query && keep_set && !keep.empty()) {
    r.error("keep_params", *r.get("keep_params"),
            "contradicts ignore_query = true (no query parameter enters the key)");
    ok = false;
  }
  if (keep_set && drop_set) {
    const toml::array& array = *r.get("drop_params")->as_array();
    for (size_t i = 0; i < drop.size(); ++i) {
      if (std::find(keep.begin(), keep.end(), drop[i]) != keep.end()) {
        r.diag().error(lineOf(*array.get(i)), indexPath(r.path("drop_params"), i),
                       quoted(drop[i]) + " is in both keep_params and drop_params");
        ok = false;
      }
    }
  }
  if (!ok) return;
  key.keep_params = keep;
  std::vector<std::string> effective;
  for (const std::string& p : key.drop_params) {
    if (std::find(keep.begin(), keep.end(), p) == keep.end()) effective.push_back(p);
  }
  for (const std::string& p : drop) {
    if (std::find(effective.begin(), effective.end(), p) == effective.end()) effective.push_back(p);
  }
  key.drop_params = std::move(effective);
}

// Which of a viewer's request fields go to the origin (proxy/request_fields.h). The lists only
// narrow what the rules let through, so naming a field that is never forwarded in forward_headers
// is a mistake worth reporting (the operator expects it to arrive).
void readFieldPolicy(TableReader& r, RequestFieldPolicy& fields) {
  std::vector<std::string> forward;
  std::vector<std::string> strip;
  const bool forward_set = r.stringList("forward_headers", forward);
  const bool strip_set = r.stringList("strip_headers", strip);
  bool ok = true;
  auto check = [&](const char* key, const std::vector<std::string>& list, bool is_allow_list) {
    const toml::array& array = *r.get(key)->as_array();
    for (size_t i = 0; i < list.size(); ++i) {
      const Where line = lineOf(*array.get(i));
      const std::string at = indexPath(r.path(key), i);
      if (!isFieldName(list[i])) {
        r.diag().error(line, at, "invalid field name " + quoted(list[i]));
        ok = false;
        continue;
      }
      for (size_t j = 0; j < i; ++j) {
        if (fieldNameEquals(list[j], list[i])) {
          r.diag().error(line, at, quoted(list[i]) + " is listed twice");
          ok = false;
          break;
        }
      }
      if (!is_allow_list) continue;
      switch (requestFieldClass(list[i])) {
        case RequestFieldClass::kHopByHop:
          r.diag().error(line, at, quoted(list[i]) +
                                       " is hop-by-hop and never forwarded (RFC 9110 §7.6.1)");
          ok = false;
          break;
        case RequestFieldClass::kProxyWritten:
          r.diag().error(line, at, quoted(list[i]) + " is written by the proxy itself, never forwarded");
          ok = false;
          break;
        case RequestFieldClass::kAddressClaim:
          r.diag().error(line, at, quoted(list[i]) +
                                       " is never taken from the viewer; set forward_client_address "
                                       "to send the client address");
          ok = false;
          break;
        default:
          break;
      }
    }
  };
  if (forward_set) check("forward_headers", forward, true);
  if (strip_set) check("strip_headers", strip, false);
  if (forward_set && strip_set) {
    const toml::array& array = *r.get("strip_headers")->as_array();
    for (size_t i = 0; i < strip.size(); ++i) {
      for (const std::string& f : forward) {
        if (fieldNameEquals(f, strip[i])) {
          r.diag().error(lineOf(*array.get(i)), indexPath(r.path("strip_headers"), i),
                         quoted(strip[i]) + " is in both forward_headers and strip_headers");
          ok = false;
          break;
        }
      }
    }
  }
  if (ok) {
    fields.forward_headers = std::move(forward);
    fields.strip_headers = std::move(strip);
  }
  r.boolean("forward_cookie", fields.forward_cookie);
  r.boolean("forward_cmcd", fields.forward_cmcd);
  r.choice("forward_client_address", fields.forward_client_address,
           {{"none", ClientAddressForwarding::kNone},
            {"x-forwarded-for", ClientAddressForwarding::kXForwardedFor},
            {"forwarded", ClientAddressForwarding::kForwarded}});
  r.choice("forwarded_address", fields.forwarded_address,
           {{"truncate", AddressAnonymization::kTruncate}, {"full", AddressAnonymization::kFull}});
}

// Compression of text answers: which codings, in the route's order of preference (empty = off),
// and the sizes worth encoding.
void readCompression(TableReader& r, CompressionPolicy& policy) {
  std::vector<std::string> names;
  if (r.stringList("compress", names)) {
    const toml::array& array = *r.get("compress")->as_array();
    std::vector<ContentCoding> codings;
    bool ok = true;
    for (size_t i = 0; i < names.size(); ++i) {
      ContentCoding coding;
      if (names[i] == "gzip") {
        coding = ContentCoding::kGzip;
      } else if (names[i] == "br") {
        coding = ContentCoding::kBrotli;
      } else {
        r.diag().error(lineOf(*array.get(i)), indexPath(r.path("compress"), i),
                       "unknown content coding " + quoted(names[i]) +
                           ": expected \"br\" or \"gzip\" (an empty list turns compression off)");
        ok = false;
        continue;
      }
      if (std::find(codings.begin(), codings.end(), coding) != codings.end()) {
        r.diag().error(lineOf(*array.get(i)), indexPath(r.path("compress"), i),
                       quoted(names[i]) + " is listed twice");
        ok = false;
        continue;
      }
      codings.push_back(coding);
    }
    if (ok) policy.codings = std::move(codings);
  }
  r.byteSize("compress_min_size", policy.min_size, 0);
  // Encoding runs on the worker that serves the viewer (a few ms per MiB): keep it bounded.
  constexpr uint64_t kMaxEncodedBytes = 64ull << 20;
  if (r.byteSize("compress_max_size", policy.max_size, 1) && policy.max_size > kMaxEncodedBytes) {
    r.error("compress_max_size", *r.get("compress_max_size"),
            "must be at most " + formatByteSize(kMaxEncodedBytes) +
                " (answers are encoded on the worker thread that serves them)");
    policy.max_size = CompressionPolicy{}.max_size;
  }
  if (policy.min_size > policy.max_size) {  // at least one of them was set
    const char* key = r.has("compress_min_size") ? "compress_min_size" : "compress_max_size";
    r.error(key, *r.get(key),
            "compress_min_size (" + formatByteSize(policy.min_size) +
                ") is larger than compress_max_size (" + formatByteSize(policy.max_size) + ")");
  }
}

// A token key id: what a token names its key by ([A-Za-z0-9_-], at most 32 characters).
bool isTokenKeyId(std::string_view id) {
  if (id.empty() || id.size() > 32) return false;
  for (char c : id) {
    if (!isAlnum(c) && c != '-' && c != '_') return false;
  }
  return true;
}

// [vhost.route.token_auth] with its [[vhost.route.token_auth.key]] tables. The key files are
// read here, so that `-t` finds a missing or unreadable key and a reload picks up a rotated one.
// The token's query parameter is added to the route's drop_params: it never enters the key,
// the access log or a fill.
void readTokenAuth(TableReader& r, TokenAuthConfig& auth, KeyPolicy& key) {
  auth.enabled = true;
  std::vector<std::string> names;
  if (r.stringList("accept", names)) {
    const toml::array& array = *r.get("accept")->as_array();
    std::vector<TokenSource> sources;
    bool ok = true;
    for (size_t i = 0; i < names.size(); ++i) {
      TokenSource source;
      if (names[i] == "query") {
        source = TokenSource::kQuery;
      } else if (names[i] == "cookie") {
        source = TokenSource::kCookie;
      } else if (names[i] == "path") {
        source = TokenSource::kPath;
      } else {
        r.diag().error(lineOf(*array.get(i)), indexPath(r.path("accept"), i),
                       "expected \"query\", \"cookie\" or \"path\", got " + quoted(names[i]));
        ok = false;
        continue;
      }
      if (std::find(sources.begin(), sources.end(), source) != sources.end()) {
        r.diag().error(lineOf(*array.get(i)), indexPath(r.path("accept"), i),
                       quoted(names[i]) + " is listed twice");
        ok = false;
        continue;
      }
      sources.push_back(source);
    }
    if (ok && sources.empty()) {
      r.error("accept", array, "must name at least one of \"query\", \"cookie\", \"path\"");
      ok = false;
    }
    if (ok) auth.accept = std::move(sources);
  }
  const bool param_set = r.string("query_param", auth.query_param);
  if (param_set && (auth.query_param.empty() || hasSpaceOrControl(auth.query_param) ||
                    auth.query_param.find_first_of("&=#+%") != std::string::npos)) {
    r.error("query_param", *r.get("query_param"),
            "invalid query parameter name " + quoted(auth.query_param));
  } else if (std::find(key.keep_params.begin(), key.keep_params.end(), auth.query_param) !=
             key.keep_params.end()) {
    r.diag().error(param_set ? lineOf(*r.get("query_param")) : r.line(), r.path("query_param"),
                   quoted(auth.query_param) +
                       " is in the route's keep_params: a token must never enter the cache key");
  }
  if (std::find(key.drop_params.begin(), key.drop_params.end(), auth.query_param) ==
      key.drop_params.end()) {
    key.drop_params.push_back(auth.query_param);
  }
  if (r.string("cookie", auth.cookie) && !isFieldName(auth.cookie)) {
    r.error("cookie", *r.get("cookie"), "invalid cookie name " + quoted(auth.cookie));
  }
  if (r.string("path_segment", auth.path_segment)) {
    bool ok = !auth.path_segment.empty() && auth.path_segment != "." && auth.path_segment != "..";
    for (char c : auth.path_segment) {
      if (!isAlnum(c) && c != '-' && c != '_' && c != '.' && c != '~') ok = false;
    }
    if (!ok) {
      r.error("path_segment", *r.get("path_segment"),
              "expected a path segment of letters, digits, '-', '_', '.' or '~' (like \"t\"), "
              "got " + quoted(auth.path_segment));
    }
  }
  r.boolean("require_client", auth.require_client);

  constexpr size_t kMaxKeys = 8;  // a token that names no key is checked against each
  const toml::array* keys = r.tableArray("key");
  std::map<std::string, int> ids;  // id → line of its first use
  forEachTable(keys, r.path("key"), [&](const toml::table& t, const std::string& path, size_t) {
    TableReader kr(r.diag(), t, path);
    TokenKeyConfig k;
    if (kr.string("id", k.id) && !isTokenKeyId(k.id)) {
      kr.error("id", *kr.get("id"),
               "expected 1 to 32 letters, digits, '-' or '_', got " + quoted(k.id));
    } else if (!k.id.empty()) {
      const int line = lineOf(*kr.get("id")).line;
      const auto [it, inserted] = ids.emplace(k.id, line);
      if (!inserted) {
        kr.error("id", *kr.get("id"),
                 "duplicate key id " + quoted(k.id) + " (first on line " +
                     std::to_string(it->second) + ")");
      }
    }
    if (kr.string("key_file", k.key_file)) {
      std::string error;
      if (k.key_file.empty()) {
        kr.error("key_file", *kr.get("key_file"), "must not be empty");
      } else if (!readTokenKeyFile(k.key_file, k.secret, error)) {
        kr.error("key_file", *kr.get("key_file"), quoted(k.key_file) + " " + error);
      }
    } else if (!kr.has("key_file")) {
      kr.missing("key_file");
    }
    kr.finish();
    auth.keys.push_back(std::move(k));
  });
  if (!keys || keys->empty()) {
    r.diag().error(r.line(), r.path("key"),
                   "token_auth needs at least one [[...token_auth.key]] with a key_file");
  } else if (auth.keys.size() > kMaxKeys) {
    r.diag().error(lineOf(*keys->get(kMaxKeys)), indexPath(r.path("key"), kMaxKeys),
                   "at most 8 keys per route (rotation needs two or three)");
  }
  r.finish();
}

void readRoute(TableReader& r, RouteConfig& route,
               const std::map<std::string, size_t>& group_index, bool have_groups) {
  if (r.string("prefix", route.prefix)) {
    const toml::node& at = *r.get("prefix");
    if (route.prefix.empty() || route.prefix.front() != '/') {
      r.error("prefix", at, "must start with \"/\", got " + quoted(route.prefix));
    } else if (hasSpaceOrControl(route.prefix) ||
               route.prefix.find_first_of("?#") != std::string::npos) {
      r.error("prefix", at, "must be a plain path (no spaces, '?' or '#')");
    }
  } else if (!r.has("prefix")) {
    r.missing("prefix");
  }
  if (r.string("origin_group", route.origin_group)) {
    const auto it = group_index.find(route.origin_group);
    if (it != group_index.end()) {
      route.origin_group_index = it->second;
    } else if (have_groups) {
      r.error("origin_group", *r.get("origin_group"),
              "unknown origin group " + quoted(route.origin_group));
    }
  } else if (!r.has("origin_group")) {
    r.missing("origin_group");
  }

  r.choice("storage", route.storage, {{"ram", StoragePolicy::kRam}, {"ram+ssd", StoragePolicy::kRamAndSsd}});
  r.choice("cache", route.cache.mode, {{"on", CacheMode::kCache}, {"pass", CacheMode::kPass}});
  CachePolicy& cache = route.cache;
  r.seconds("playlist_ttl", cache.playlist_ttl);
  r.seconds("ended_playlist_ttl", cache.ended_playlist_ttl);
  r.seconds("segment_ttl", cache.segment_ttl);
  r.seconds("default_ttl", cache.default_ttl);
  r.seconds("stale_while_revalidate", cache.stale_while_revalidate);
  r.seconds("stale_if_error", cache.stale_if_error);
  r.seconds("playlist_stale_if_error", cache.playlist_stale_if_error);
  r.boolean("cache_authorized", cache.cache_authorized);
  r.boolean("cache_set_cookie", cache.cache_set_cookie);
  r.boolean("forward_other_methods", cache.forward_other_methods);
  r.duration("hedge_after", route.hedge_after, true);
  r.boolean("prefetch", route.prefetch);
  r.integer("prefetch_segments", route.prefetch_segments, 1, 32);
  r.integer("prefetch_concurrency", route.prefetch_concurrency, 1, 64);
  readKeyPolicy(r, route.key);
  readFieldPolicy(r, route.fields);
  readCompression(r, route.compress);
  if (const toml::table* t = r.table("token_auth")) {
    TableReader tr(r.diag(), *t, r.path("token_auth"));
    readTokenAuth(tr, route.token_auth, route.key);
  }
  r.finish();
}

// Where each accepted hostname was first declared, to report duplicates across vhosts.
struct HostnameSeen {
  size_t vhost;
  Where line;
};

void readVhost(TableReader& r, VhostConfig& vhost, size_t vhost_index,
               std::map<std::string, HostnameSeen>& hostnames,
               const std::map<std::string, size_t>& group_index, bool have_groups) {
  std::vector<std::string> names;
  if (r.stringList("hostnames", names)) {
    const toml::array& array = *r.get("hostnames")->as_array();
    if (names.empty()) {
      r.error("hostnames", array, "at least one hostname is required (\"*\" matches any host)");
    }
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string name = lowercase(names[i]);
      const Where line = lineOf(*array.get(i));
      const std::string path = indexPath(r.path("hostnames"), i);
      const std::string err = checkHostname(name);
      if (!err.empty()) {
        r.diag().error(line, path, err);
        continue;
      }
      const auto [it, inserted] = hostnames.emplace(name, HostnameSeen{vhost_index, line});
      if (!inserted) {
        if (it->second.vhost == vhost_index) {
          r.diag().warn(line, path, "hostname " + quoted(name) + " is listed twice");
          continue;
        }
        r.diag().error(line, path,
                       "hostname " + quoted(name) + " already belongs to vhost[" +
                           std::to_string(it->second.vhost) + "] (" +
                           it->second.line.describe(r.diag().file()) + ")");
        continue;
      }
      vhost.hostnames.push_back(name);
    }
  } else if (!r.has("hostnames")) {
    r.missing("hostnames");
  }

  if (r.string("name", vhost.name) && vhost.name.empty()) {
    r.error("name", *r.get("name"), "must not be empty (leave it out for the first hostname)");
  }
  if (vhost.name.empty() && !vhost.hostnames.empty()) vhost.name = vhost.hostnames.front();
  r.duration("retention", vhost.retention, /*allow_zero=*/true);
  r.boolean("cmsd", vhost.cmsd);
  if (r.string("hsts", vhost.hsts) &&
      (vhost.hsts.rfind("max-age=", 0) != 0 ||
       std::any_of(vhost.hsts.begin(), vhost.hsts.end(),
                   [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))) {
    r.error("hsts", *r.get("hsts"),
            "expected a Strict-Transport-Security value like \"max-age=31536000\", got " +
                quoted(vhost.hsts));
  }

  const toml::array* routes = r.tableArray("route");
  std::map<std::string, int> prefixes;  // prefix → line of its first declaration
  forEachTable(routes, r.path("route"), [&](const toml::table& t, const std::string& path, size_t) {
    TableReader rr(r.diag(), t, path);
    vhost.routes.emplace_back();
    readRoute(rr, vhost.routes.back(), group_index, have_groups);
    if (const toml::node* at = t.get("prefix"); at && at->is_string()) {
      const auto [it, inserted] = prefixes.emplace(vhost.routes.back().prefix, lineOf(*at).line);
      if (!inserted) {
        r.diag().error(lineOf(*at), rr.path("prefix"),
                       "duplicate route prefix " + quoted(it->first) + " (first on line " +
                           std::to_string(it->second) + ")");
      }
    }
  });
  if (!routes || routes->empty()) {
    r.diag().error(r.line(), r.path("route"),
                   "vhost has no routes: add at least one [[vhost.route]] (prefix = \"/\" "
                   "matches everything)");
  }
  // Longest prefix first, so the first route whose prefix matches is the most specific one.
  std::stable_sort(vhost.routes.begin(), vhost.routes.end(),
                   [](const RouteConfig& a, const RouteConfig& b) {
                     return a.prefix.size() > b.prefix.size();
                   });
  for (const RouteConfig& route : vhost.routes) {
    const TokenAuthConfig& auth = route.token_auth;
    if (!auth.enabled ||
        std::find(auth.accept.begin(), auth.accept.end(), TokenSource::kPath) == auth.accept.end()) {
      continue;
    }
    auto& names = vhost.token_path_segments;
    if (std::find(names.begin(), names.end(), auth.path_segment) == names.end()) {
      names.push_back(auth.path_segment);
    }
  }
  r.finish();
}

bool readClientAddress(TableReader& r, AddressAnonymization& out) {
  return r.choice("client_address", out,
                  {{"truncate", AddressAnonymization::kTruncate},
                   {"full", AddressAnonymization::kFull},
                   {"none", AddressAnonymization::kNone}});
}

// [privacy]: client_address (the deprecated [log] client_address is the same key; [privacy]
// wins when both are set) and log_retention.
void readPrivacy(TableReader& r, PrivacyConfig& privacy, LogConfig& log) {
  readClientAddress(r, log.client_address);
  r.duration("log_retention", privacy.log_retention, /*allow_zero=*/true);
  r.finish();
}

void readLog(TableReader& r, LogConfig& log) {
  if (r.string("access_log", log.access_log) && log.access_log.empty()) {
    r.error("access_log", *r.get("access_log"),
            "must not be empty (use \"off\" to disable the access log)");
  }
  if (readClientAddress(r, log.client_address)) {
    r.diag().warn(lineOf(*r.get("client_address")), r.path("client_address"),
                  "deprecated: use [privacy] client_address");
  }
  if (r.string("security_log", log.security_log) && log.security_log.empty()) {
    r.error("security_log", *r.get("security_log"),
            "must not be empty (use \"off\" to disable the security log)");
  }
  r.choice("level", log.level,
           {{"error", std::string("error")}, {"warn", std::string("warn")},
            {"info", std::string("info")}, {"debug", std::string("debug")}});
  if (r.string("audit", log.audit_log) &&
      (log.audit_log == "stderr" || log.audit_log == "stdout" || log.audit_log == "off")) {
    r.error("audit", *r.get("audit"),
            "expected a file path (the audit log is a file of its own; \"\" = off), got " +
                quoted(log.audit_log));
  }
  r.finish();
}

// Two listeners (or a listener and the admin listener) on one address cannot both bind.
// "host:port", "[v6]:port" or "name:port" of a peer's viewer listener: its canonical form
// (lower-case name) in `out`, or an error sentence.
std::string parsePeerAddress(std::string_view text, std::string& out) {
  std::string host;
  uint16_t port = 0;
  if (!text.empty() && text.front() == '[') {
    const std::string error = parseListenAddress(text, host, port);
    if (!error.empty()) return error;
    out = "[" + lowercase(host) + "]:" + std::to_string(port);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return "expected host:port, like \"10.0.0.2:8080\"";
    }
    const std::string_view h = text.substr(0, colon);
    if (h.find(':') != std::string_view::npos) {
      return "IPv6 addresses must be in brackets, like \"[fd00::2]:8080\"";
    }
    if (!isIpv4Literal(std::string(h)) && !isDnsName(h)) {
      return "host " + quoted(h) + " is neither an IPv4 address nor a DNS name";
    }
    const auto p = parsePort(text.substr(colon + 1));
    if (!p) return "invalid port " + quoted(text.substr(colon + 1)) + " (expected 1 to 65535)";
    port = *p;
    out = lowercase(h) + ":" + std::to_string(port);
  }
  if (port == 0) return "port 0 is not a peer's port";
  return "";
}

// [cluster] dns, dns_port, dns_interval, dns_server: membership from DNS.
void readClusterDns(TableReader& r, ClusterConfig& cluster) {
  std::string name;
  bool name_ok = true;
  if (r.string("dns", name)) {
    cluster.dns = lowercase(name);
    if (!cluster.dns.empty() && cluster.dns.back() == '.') cluster.dns.pop_back();
    if (!isDnsName(cluster.dns)) {
      r.error("dns", *r.get("dns"), quoted(name) + " is not a DNS name");
      name_ok = false;  // no follow-on error about dns_port
    }
    cluster.dns_srv = !cluster.dns.empty() && cluster.dns.front() == '_';
  }
  int port = 0;
  if (r.integer("dns_port", port, 1, 65535)) cluster.dns_port = static_cast<uint16_t>(port);
  if (r.has("dns_port") && cluster.dns.empty()) {
    r.error("dns_port", *r.get("dns_port"), "needs cluster.dns");
  } else if (name_ok && !cluster.dns.empty() && !cluster.dns_srv && !r.has("dns_port")) {
    r.diag().error(lineOf(*r.get("dns")), r.path("dns_port"),
                   "missing: " + quoted(cluster.dns) +
                       " is asked for A/AAAA records, which carry no port (an SRV name starts "
                       "with '_', like \"_http._tcp.edge.ns.svc.cluster.local\")");
  } else if (cluster.dns_srv && r.has("dns_port")) {
    r.error("dns_port", *r.get("dns_port"), "not used with an SRV name: the records give ports");
  }
  if (r.duration("dns_interval", cluster.dns_interval, false) && cluster.dns.empty()) {
    r.error("dns_interval", *r.get("dns_interval"), "needs cluster.dns");
  }
  if (r.string("dns_server", cluster.dns_server)) {
    const std::string& ns = cluster.dns_server;
    std::string host;
    uint16_t p = 0;
    if (cluster.dns.empty()) {
      r.error("dns_server", *r.get("dns_server"), "needs cluster.dns");
    } else if (!isIpv4Literal(ns) && !isIpv6Literal(ns) &&
               (!parseListenAddress(ns, host, p).empty() || p == 0)) {
      r.error("dns_server", *r.get("dns_server"),
              "invalid nameserver " + quoted(ns) +
                  ": expected an IP address, \"ip:port\" or \"[ipv6]:port\"");
    }
  }
}

// With DNS membership and no static `peers`: this server is its one listener with an address
// (a wildcard listener needs cluster.self, the address peers reach it at).
void selfFromListener(TableReader& r, Config& config, bool& self_found) {
  ClusterConfig& cluster = config.cluster;
  std::vector<std::string> candidates;
  for (const ListenerConfig& l : config.listeners) {
    if (l.host == "0.0.0.0" || l.host == "::" || l.port == 0) continue;
    std::string canonical;
    const std::string text =
        l.host.find(':') != std::string::npos ? "[" + l.host + "]:" + std::to_string(l.port)
                                              : l.host + ":" + std::to_string(l.port);
    if (parsePeerAddress(text, canonical).empty()) candidates.push_back(canonical);
  }
  if (candidates.size() == 1) {
    cluster.peers.push_back(candidates.front());
    cluster.self_index = 0;
    self_found = true;
  } else {
    r.diag().error(lineOf(*r.get("dns")), r.path("self"),
                   "missing: with membership from DNS and no cluster.peers, name the address "
                   "peers reach this server at with cluster.self (needed unless exactly one "
                   "[[listener]] has a non-wildcard address)");
  }
}

// The [[listener]] that serves `peer` ("host:port", canonical): the one with its address, else a
// wildcard one on its port. Null when none does.
const ListenerConfig* listenerOfPeer(const Config& config, const std::string& peer) {
  const size_t colon = peer.rfind(':');
  if (colon == std::string::npos) return nullptr;
  const std::string host = peer.front() == '[' ? peer.substr(1, colon - 2) : peer.substr(0, colon);
  const int port = std::atoi(peer.c_str() + colon + 1);
  const ListenerConfig* wildcard = nullptr;
  for (const ListenerConfig& l : config.listeners) {
    if (l.port != port) continue;
    if (lowercase(l.host) == host) return &l;
    if (l.host == "0.0.0.0" || l.host == "::") wildcard = &l;
  }
  return wildcard;
}

// [cluster] tls, ca_file, tls_server_name: peers over HTTPS. On by default when this server's
// own peer listener is a TLS listener (the peers share the layout).
void readClusterTls(TableReader& r, Config& config, bool self_found) {
  ClusterConfig& cluster = config.cluster;
  const ListenerConfig* own = self_found ? listenerOfPeer(config, cluster.self) : nullptr;
  const bool own_tls = own && !own->certificates.empty();
  if (r.boolean("tls", cluster.tls)) {
    if (own && own_tls != cluster.tls) {
      r.error("tls", *r.get("tls"),
              std::string("this server's peer listener ") + quoted(cluster.self) +
                  (own_tls ? " is a TLS listener: peers must be asked over HTTPS"
                           : " is a plain listener: peers cannot be asked over HTTPS"));
    }
  } else if (!r.has("tls")) {
    cluster.tls = own_tls;
  }
  for (const char* key : {"ca_file", "tls_server_name"}) {
    std::string value;
    if (!r.string(key, value)) continue;
    if (!cluster.tls && config.admin.certificates.empty()) {
      r.error(key, *r.get(key),
              "needs cluster.tls or a TLS admin listener (peers asked over HTTPS)");
    } else if (std::string_view(key) == "ca_file") {
      cluster.ca_file = std::move(value);
    } else {
      cluster.tls_server_name = std::move(value);
    }
  }
}

// [cluster]; after the listeners and origin groups (the peers' groups are appended to them).
void readCluster(TableReader& r, Config& config) {
  ClusterConfig& cluster = config.cluster;
  cluster.enabled = true;
  constexpr size_t kMaxPeers = 256;  // proxy/peer_ring.h
  std::vector<std::string> texts;
  if (r.stringList("peers", texts)) {
    const toml::array& array = *r.get("peers")->as_array();
    std::map<std::string, size_t> seen;
    for (size_t i = 0; i < texts.size(); ++i) {
      std::string canonical;
      const std::string error = parsePeerAddress(texts[i], canonical);
      if (!error.empty()) {
        r.diag().error(lineOf(*array.get(i)), indexPath(r.path("peers"), i), error);
        continue;
      }
      const auto [it, inserted] = seen.emplace(canonical, i);
      if (!inserted) {
        r.diag().error(lineOf(*array.get(i)), indexPath(r.path("peers"), i),
                       quoted(texts[i]) + " is listed twice (also peers[" +
                           std::to_string(it->second) + "])");
        continue;
      }
      cluster.peers.push_back(std::move(canonical));
    }
    if (texts.empty()) {
      r.error("peers", array, "must list every peer's viewer listener, this server's included");
    } else if (texts.size() > kMaxPeers) {
      r.error("peers", array, "at most 256 peers");
    }
  } else if (!r.has("peers") && !r.has("dns")) {
    r.missing("peers");
  }
  readClusterDns(r, cluster);
  if (r.string("secret_file", cluster.secret_file)) {
    std::string error;
    if (cluster.secret_file.empty()) {
      r.error("secret_file", *r.get("secret_file"), "must not be empty");
    } else if (!readTokenKeyFile(cluster.secret_file, cluster.secret, error)) {
      r.error("secret_file", *r.get("secret_file"), quoted(cluster.secret_file) + " " + error);
    }
  } else if (!r.has("secret_file")) {
    r.missing("secret_file");
  }
  r.choice("mode", cluster.mode,
           {{"stay-small", ClusterMode::kStaySmall}, {"replicate-hot", ClusterMode::kReplicateHot}});
  r.duration("connect_timeout", cluster.connect_timeout, false);
  r.duration("timeout", cluster.timeout, false);
  r.duration("health_interval", cluster.health_interval, false);
  r.duration("max_clock_skew", cluster.max_clock_skew, false);
  r.number("load_factor", cluster.load_factor, 1.01, 10.0);
  if (r.duration("purge_timeout", cluster.purge_timeout, false) &&
      cluster.purge_timeout > Millis(9'000)) {
    // The admin listener drops a connection after 10 s without progress (server.cc).
    r.error("purge_timeout", *r.get("purge_timeout"), "must be at most 9s");
  }
  if (int port = 0; r.integer("admin_port", port, 1, 65535)) {
    cluster.admin_port = static_cast<uint16_t>(port);
  }

  // Which peer is this server: `self`, or the one peer that one of its listeners names.
  bool self_found = false;
  std::string self_text;
  if (r.string("self", self_text)) {
    std::string canonical;
    const std::string error = parsePeerAddress(self_text, canonical);
    const auto it = std::find(cluster.peers.begin(), cluster.peers.end(), canonical);
    if (!error.empty()) {
      r.error("self", *r.get("self"), error);
    } else if (it == cluster.peers.end() && !cluster.dns.empty()) {
      // With DNS the static list is only the fallback: this server is a member anyway.
      cluster.peers.push_back(canonical);
      cluster.self_index = cluster.peers.size() - 1;
      self_found = true;
    } else if (it == cluster.peers.end()) {
      r.error("self", *r.get("self"), quoted(self_text) + " is not among the peers");
    } else {
      cluster.self_index = static_cast<size_t>(it - cluster.peers.begin());
      self_found = true;
    }
  } else if (cluster.peers.empty() && !cluster.dns.empty()) {
    selfFromListener(r, config, self_found);
  } else if (!cluster.peers.empty()) {
    std::vector<size_t> matches;
    for (size_t i = 0; i < cluster.peers.size(); ++i) {
      std::string host;
      uint16_t port = 0;
      const std::string& p = cluster.peers[i];
      const size_t colon = p.rfind(':');
      host = p.front() == '[' ? p.substr(1, colon - 2) : p.substr(0, colon);
      port = static_cast<uint16_t>(std::stoi(p.substr(colon + 1)));
      for (const ListenerConfig& l : config.listeners) {
        if (l.port == port && lowercase(l.host) == host) {
          matches.push_back(i);
          break;
        }
      }
    }
    if (matches.size() == 1) {
      cluster.self_index = matches.front();
      self_found = true;
    } else if (matches.empty()) {
      r.diag().error(lineOf(*r.get("peers")), r.path("peers"),
                     "none of the peers is one of this server's [[listener]] addresses: list "
                     "this server among them, or name it with cluster.self (needed when the "
                     "listener is a wildcard like 0.0.0.0)");
    } else {
      r.diag().error(lineOf(*r.get("peers")), r.path("peers"),
                     "several peers are listeners of this server: name the one peers reach "
                     "with cluster.self");
    }
  }
  if (self_found) cluster.self = cluster.peers[cluster.self_index];
  readClusterTls(r, config, self_found);

  for (const OriginGroupConfig& g : config.origin_groups) {
    if (g.name.rfind(kPeerGroupPrefix, 0) == 0) {
      r.diag().error(r.line(), "origin_group",
                     "origin group name " + quoted(g.name) +
                         " is reserved: names starting with \"peer:\" are the cluster's peers");
    }
  }
  if (self_found) {
    std::vector<std::string> peers = std::move(cluster.peers);
    setClusterPeers(config, std::move(peers));
  }
  r.finish();
}

}  // namespace

OriginConfig clusterPeerTlsOrigin(const ClusterConfig& cluster) {
  OriginConfig o;
  o.scheme = "https";
  o.name = "cluster peers";
  o.dc = "peer";
  o.tls_verify = true;
  o.ca_file = cluster.ca_file;
  o.tls_server_name = cluster.tls_server_name;
  return o;
}

bool clusterUsesTls(const Config& config) {
  return config.cluster.enabled && (config.cluster.tls || !config.admin.certificates.empty());
}

void setClusterPeers(Config& config, std::vector<std::string> peers) {
  ClusterConfig& cluster = config.cluster;
  // The previous membership's groups go (they are the last ones, never named by a route).
  std::erase_if(config.origin_groups, [](const OriginGroupConfig& g) {
    return g.name.rfind(kPeerGroupPrefix, 0) == 0;
  });
  auto self = std::find(peers.begin(), peers.end(), cluster.self);
  if (self == peers.end()) {
    peers.push_back(cluster.self);
    self = peers.end() - 1;
  }
  cluster.self_index = static_cast<size_t>(self - peers.begin());
  cluster.peers = std::move(peers);
  // Every other peer becomes an origin group of one origin: the same client, pools, timeouts,
  // health checks and metrics as the origins. Never named by a route.
  cluster.peer_group.assign(cluster.peers.size(), SIZE_MAX);
  for (size_t i = 0; i < cluster.peers.size(); ++i) {
    if (i == cluster.self_index) continue;
    OriginGroupConfig g;
    g.name = std::string(kPeerGroupPrefix) + cluster.peers[i];
    OriginConfig o;
    const std::string error =
        parseOriginUrl(std::string(cluster.tls ? "https://" : "http://") + cluster.peers[i], o);
    if (!error.empty()) continue;  // parsePeerAddress accepted it: cannot happen
    o.name = "peer " + cluster.peers[i];
    o.dc = "peer";
    o.ca_file = cluster.ca_file;
    o.tls_server_name = cluster.tls_server_name;
    o.connect_timeout = cluster.connect_timeout;
    o.first_byte_timeout = cluster.timeout;
    o.read_timeout = cluster.timeout;
    o.max_concurrent_requests = 0;  // the owner protects its origin; peers are not capped here
    o.max_connections = 0;
    o.queue_size = 0;
    g.origins.push_back(std::move(o));
    g.retries = 0;            // a failed peer is skipped by the fill, which goes on elsewhere
    g.retry_budget = 0;
    g.resume_attempts = 0;    // a broken body goes on from the route's origins (FillJob)
    g.health_check.enabled = true;
    g.health_check.path = kPeerHealthPath;
    g.health_check.interval = cluster.health_interval;
    g.health_check.timeout = std::min(cluster.health_interval, cluster.timeout);
    g.health_check.fall = 1;
    g.health_check.rise = 1;
    g.outlier.consecutive_failures = 0;  // the peer tier marks a failed peer down itself
    cluster.peer_group[i] = config.origin_groups.size();
    config.origin_groups.push_back(std::move(g));
  }
}

namespace {

void checkListenAddressesUnique(const toml::table& root, const Config& config, Diagnostics& diag) {
  std::map<std::pair<std::string, uint16_t>, std::string> seen;  // → path of first user
  if (!config.admin.address.empty()) {
    std::string host;
    uint16_t port = 0;
    if (parseListenAddress(config.admin.address, host, port).empty() && port != 0) {
      seen.emplace(std::make_pair(host, port), "admin.address");
    }
  }
  const toml::array* listeners = root.get("listener") ? root.get("listener")->as_array() : nullptr;
  if (!listeners) return;
  size_t config_index = 0;
  for (size_t i = 0; i < listeners->size(); ++i) {
    const toml::table* t = listeners->get(i)->as_table();
    if (!t) continue;
    const ListenerConfig& l = config.listeners[config_index++];
    const toml::node* at = t->get("address");
    if (!at || !at->is_string() || l.host.empty() || l.port == 0) continue;
    const std::string path = indexPath("listener", i) + ".address";
    const auto [it, inserted] = seen.emplace(std::make_pair(l.host, l.port), path);
    if (!inserted) {
      diag.error(lineOf(*at), path, "address " + quoted(l.address) + " is already used by " + it->second);
    }
  }
}

ConfigPtr buildConfig(const toml::table& root, const std::string& name, Diagnostics& diag) {
  auto config = std::make_shared<Config>();
  config->source = name;
  TableReader top(diag, root, "");

  if (const toml::table* t = top.table("server")) {
    TableReader r(diag, *t, "server");
    readServer(r, config->server);
  }
  if (const toml::table* t = top.table("admin")) {
    TableReader r(diag, *t, "admin");
    readAdmin(r, config->admin);
  }
  if (const toml::table* t = top.table("dns")) {
    TableReader r(diag, *t, "dns");
    readDns(r, config->dns);
  }
  const toml::array* listeners = top.tableArray("listener");
  forEachTable(listeners, "listener", [&](const toml::table& t, const std::string& path, size_t) {
    TableReader r(diag, t, path);
    config->listeners.emplace_back();
    readListener(r, config->listeners.back());
  });
  if (!listeners || listeners->empty()) {
    diag.error(0, "listener", "no [[listener]]: at least one listener is required");
  }
  checkListenAddressesUnique(root, *config, diag);
  {
    // A redirect needs an HTTPS port to point at.
    uint16_t first_tls_port = 0;
    for (const ListenerConfig& l : config->listeners) {
      if (!l.certificates.empty() && first_tls_port == 0) first_tls_port = l.port;
    }
    for (size_t i = 0; i < config->listeners.size(); ++i) {
      ListenerConfig& l = config->listeners[i];
      if (!l.redirect_https || l.https_port != 0) continue;
      if (first_tls_port == 0) {
        diag.error(0, indexPath("listener", i) + ".redirect_https",
                   "no TLS listener to redirect to: set https_port");
      }
      l.https_port = first_tls_port;
    }
  }
  if (const toml::table* t = top.table("cache")) {
    TableReader r(diag, *t, "cache");
    readCache(r, config->cache);
  }

  // Origin groups before vhosts: routes refer to groups by name.
  std::map<std::string, size_t> group_index;
  const toml::array* groups = top.tableArray("origin_group");
  forEachTable(groups, "origin_group", [&](const toml::table& t, const std::string& path, size_t) {
    TableReader r(diag, t, path);
    config->origin_groups.emplace_back();
    OriginGroupConfig& group = config->origin_groups.back();
    readOriginGroup(r, group);
    if (group.name.empty()) return;
    const auto [it, inserted] = group_index.emplace(group.name, config->origin_groups.size() - 1);
    if (!inserted) {
      diag.error(lineOf(*t.get("name")), r.path("name"),
                 "duplicate origin group name " + quoted(group.name) + " (first in " +
                     indexPath("origin_group", it->second) + ")");
    }
  });
  const bool have_groups = groups && !groups->empty();
  if (!have_groups) {
    diag.error(0, "origin_group", "no [[origin_group]]: at least one origin group is required");
  }

  std::map<std::string, HostnameSeen> hostnames;
  const toml::array* vhosts = top.tableArray("vhost");
  forEachTable(vhosts, "vhost", [&](const toml::table& t, const std::string& path, size_t) {
    TableReader r(diag, t, path);
    config->vhosts.emplace_back();
    readVhost(r, config->vhosts.back(), config->vhosts.size() - 1, hostnames, group_index,
              have_groups);
  });
  if (!vhosts || vhosts->empty()) {
    diag.error(0, "vhost", "no [[vhost]]: at least one virtual host is required");
  }
  {
    std::map<std::string, size_t> vhost_names;
    for (size_t i = 0; i < config->vhosts.size(); ++i) {
      const std::string& n = config->vhosts[i].name;
      if (n.empty()) continue;
      const auto [it, inserted] = vhost_names.emplace(n, i);
      if (!inserted) {
        const toml::table* t = vhosts->get(i) ? vhosts->get(i)->as_table() : nullptr;
        const toml::node* at = t ? t->get("name") : nullptr;
        diag.error(at ? lineOf(*at) : (t ? lineOf(*t) : 0), indexPath("vhost", i) + ".name",
                   "duplicate vhost name " + quoted(n) + " (also vhost[" +
                       std::to_string(it->second) + "])");
      }
    }
  }

  if (const toml::table* t = top.table("log")) {
    TableReader r(diag, *t, "log");
    readLog(r, config->log);
  }
  if (const toml::table* t = top.table("privacy")) {
    TableReader r(diag, *t, "privacy");
    if (root.get("log") && root.get("log")->as_table() &&
        root.get("log")->as_table()->get("client_address") && t->get("client_address")) {
      diag.warn(lineOf(*root.get("log")->as_table()->get("client_address")), "log.client_address",
                "ignored: [privacy] client_address is set too");
    }
    readPrivacy(r, config->privacy, config->log);
  }
  if (const toml::table* t = top.table("cluster")) {
    TableReader r(diag, *t, "cluster");
    readCluster(r, *config);
  }
  top.finish();
  if (diag.hasErrors()) return nullptr;
  return config;
}

// The whole file at `path`; false with `error` set when it cannot be opened or read.
bool readWholeFile(const std::string& path, std::string& text, std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    error = std::string("cannot open: ") + std::strerror(errno);
    return false;
  }
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) error = std::string("cannot read: ") + std::strerror(err);
  return !failed;
}

bool hasGlobCharacter(std::string_view pattern) {
  return pattern.find_first_of("*?[") != std::string_view::npos;
}

// `include = ["conf.d/*.toml"]` (or one string) in the main file: the [[vhost]],
// [[origin_group]] and [[listener]] tables of every matching file (paths relative to the main
// file's directory, each pattern's matches in byte order, a file matched twice read once) are
// appended to the main file's, after its own. Their nodes keep their own file name, so every
// later error names the included file and its line. A pattern without wildcards must name an
// existing file; one with wildcards may match nothing (an empty conf.d). Included files may not
// include others.
void mergeIncludes(toml::table& root, const std::string& main_file, Diagnostics& diag) {
  const toml::node* include = root.get("include");
  if (!include) return;
  std::vector<std::pair<std::string, Where>> patterns;
  if (const auto* one = include->as_string()) {
    patterns.emplace_back(one->get(), lineOf(*include));
  } else if (const auto* list = include->as_array()) {
    for (size_t i = 0; i < list->size(); ++i) {
      const toml::node& element = *list->get(i);
      if (const auto* str = element.as_string()) {
        patterns.emplace_back(str->get(), lineOf(element));
      } else {
        diag.error(lineOf(element), indexPath("include", i), expected("a string", element));
      }
    }
  } else {
    diag.error(lineOf(*include), "include", expected("a string or an array of strings", *include));
  }
  root.erase("include");

  const size_t slash = main_file.rfind('/');
  const std::string base = slash == std::string::npos ? "." : main_file.substr(0, slash);
  constexpr size_t kMaxIncludedFiles = 10000;
  std::set<std::string> read;
  for (const auto& [pattern, where] : patterns) {
    if (pattern.empty()) {
      diag.error(where, "include", "empty path");
      continue;
    }
    const std::string full = pattern.front() == '/' ? pattern : base + "/" + pattern;
    glob_t matches{};
    // A directory that does not exist matches nothing; one that cannot be read is an error.
    const int rc = ::glob(full.c_str(), 0,
                          [](const char*, int err) { return err == ENOENT ? 0 : 1; }, &matches);
    std::vector<std::string> files;
    for (size_t i = 0; rc == 0 && i < matches.gl_pathc; ++i) files.emplace_back(matches.gl_pathv[i]);
    ::globfree(&matches);
    if (rc == GLOB_NOMATCH && !hasGlobCharacter(pattern)) {
      diag.error(where, "include", "no such file: " + quoted(full));
      continue;
    }
    if (rc != 0 && rc != GLOB_NOMATCH) {
      diag.error(where, "include", "cannot list " + quoted(full));
      continue;
    }
    std::sort(files.begin(), files.end());  // byte order, whatever the locale
    for (const std::string& file : files) {
      if (!read.insert(file).second) continue;
      if (read.size() > kMaxIncludedFiles) {
        diag.error(where, "include", "more than 10000 included files");
        return;
      }
      auto file_name = std::make_shared<const std::string>(file);
      std::string text, error;
      if (!readWholeFile(file, text, error)) {
        diag.error(Where(0, file_name), "", error);
        continue;
      }
      toml::table included;
      try {
        included = toml::parse(text, std::string_view(file));
      } catch (const toml::parse_error& e) {
        diag.error(Where(lineOf(e.source()).line, file_name), "", std::string(e.description()));
        continue;
      }
      for (auto&& [key, node] : included) {
        const std::string name(key.str());
        toml::array* tables = node.as_array();
        const bool allowed = name == "vhost" || name == "origin_group" || name == "listener";
        if (!allowed || !tables || !tables->is_array_of_tables()) {
          diag.error(lineOf(key.source()), name,
                     name == "include" ? "include is read from the main config file only"
                                       : "an included file may hold only [[vhost]], "
                                         "[[origin_group]] and [[listener]] tables");
          continue;
        }
        toml::node* mine = root.get(name);
        if (!mine) mine = root.insert(name, toml::array{}).first->second.as_array();
        toml::array* into = mine ? mine->as_array() : nullptr;
        if (!into) {
          diag.error(lineOf(key.source()), name,
                     "the main config's " + name + " is not an array of tables");
          continue;
        }
        // Moved, not copied: a toml++ copy drops the source (file and line) of every node.
        for (toml::node& element : *tables) into->push_back(std::move(*element.as_table()));
      }
    }
  }
}

LoadResult finishResult(ConfigPtr config, Diagnostics& diag) {
  LoadResult result;
  result.errors = diag.takeErrors();
  result.warnings = diag.takeWarnings();
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

}  // namespace

std::string ConfigError::toString() const {
  // "file:line: key: message"; the line is left out when unknown (0) and the key when empty
  // (a TOML syntax error), so that no part of the message is a placeholder.
  std::string out = file;
  if (line > 0) {
    out += ':';
    out += std::to_string(line);
  }
  out += ": ";
  if (!key.empty()) {
    out += key;
    out += ": ";
  }
  out += message;
  return out;
}

LoadResult loadConfigText(std::string_view text, const std::string& name) {
  Diagnostics diag(name);
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(name));
  } catch (const toml::parse_error& e) {
    // toml++ stops at the first syntax error, so this is the only error reported.
    diag.error(lineOf(e.source()), "", std::string(e.description()));
    return finishResult(nullptr, diag);
  }
  mergeIncludes(root, name, diag);
  ConfigPtr config = buildConfig(root, name, diag);
  return finishResult(std::move(config), diag);
}

LoadResult loadConfigFile(const std::string& path) {
  std::string text, error;
  if (!readWholeFile(path, text, error)) {
    Diagnostics diag(path);
    diag.error(0, "", error);
    return finishResult(nullptr, diag);
  }
  return loadConfigText(text, path);
}

}  // namespace streamedge::conf

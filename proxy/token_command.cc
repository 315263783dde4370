#include "proxy/token_command.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "conf/key_file.h"
#include "conf/units.h"
#include "proxy/url_token.h"

namespace streamedge::proxy {
namespace {

void printTokenHelp() {
  std::printf(
      "usage: streamedge token --key-file FILE --prefix PATH --ttl SECONDS\n"
      "                        [--key-id ID] [--client ADDR[/LEN]]\n"
      "\n"
      "Prints a signed-URL token for a route with [vhost.route.token_auth]:\n"
      "  --key-file FILE  the route's key (32 raw bytes or 64 hex digits, mode 0600 or 0640)\n"
      "  --prefix PATH    the path prefix the token opens, e.g. /live/channel1/ (normalised)\n"
      "  --ttl SECONDS    valid from now for this long (also \"90s\", \"2h\", \"1d\")\n"
      "  --key-id ID      the key's id in the route's config (without it the proxy tries each\n"
      "                   key of the route)\n"
      "  --client ADDR    only this client address or network may use it (203.0.113.7,\n"
      "                   2001:db8:1:2::/64)\n"
      "Give it to viewers as ?token=<token>, as a cookie, or as a path segment\n"
      "(/t/<token>/live/channel1/index.m3u8), as the route accepts.\n");
}

}  // namespace

int runTokenCommand(int argc, char** argv) {
  std::string key_file, prefix, ttl_text;
  MintRequest request;
  for (int i = 0; i < argc; ++i) {
    const char* arg = argv[i];
    if (std::strcmp(arg, "-h") == 0 || std::strcmp(arg, "--help") == 0) {
      printTokenHelp();
      return 0;
    }
    std::string* out = nullptr;
    if (std::strcmp(arg, "--key-file") == 0) {
      out = &key_file;
    } else if (std::strcmp(arg, "--prefix") == 0) {
      out = &request.prefix;
    } else if (std::strcmp(arg, "--ttl") == 0) {
      out = &ttl_text;
    } else if (std::strcmp(arg, "--key-id") == 0) {
      out = &request.key_id;
    } else if (std::strcmp(arg, "--client") == 0) {
      out = &request.client;
    } else {
      std::fprintf(stderr, "streamedge token: unknown argument %s (see streamedge token --help)\n",
                   arg);
      return 1;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "streamedge token: %s needs a value\n", arg);
      return 1;
    }
    *out = argv[++i];
  }
  if (key_file.empty() || request.prefix.empty() || ttl_text.empty()) {
    std::fprintf(stderr,
                 "streamedge token: --key-file, --prefix and --ttl are required (see streamedge "
                 "token --help)\n");
    return 1;
  }
  // A plain number is seconds; a duration with a unit is read like the config's.
  int64_t ttl_seconds = -1;
  if (ttl_text.find_first_not_of("0123456789") == std::string::npos && ttl_text.size() <= 11) {
    ttl_seconds = std::stoll(ttl_text);
  } else if (auto d = parseDuration(ttl_text); d && d->count() % 1000 == 0) {
    ttl_seconds = d->count() / 1000;
  }
  if (ttl_seconds <= 0) {
    std::fprintf(stderr,
                 "streamedge token: --ttl must be a positive number of seconds (or \"2h\"), got "
                 "%s\n",
                 ttl_text.c_str());
    return 1;
  }
  std::string secret, error;
  if (!conf::readTokenKeyFile(key_file, secret, error)) {
    std::fprintf(stderr, "streamedge token: key file %s %s\n", key_file.c_str(), error.c_str());
    return 1;
  }
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  request.expires_unix = now + ttl_seconds;
  std::string token;
  const bool ok = mintToken(request, secret, token, error);
  std::fill(secret.begin(), secret.end(), '\0');
  if (!ok) {
    std::fprintf(stderr, "streamedge token: %s\n", error.c_str());
    return 1;
  }
  std::printf("%s\n", token.c_str());
  return 0;
}

}  // namespace streamedge::proxy

// herd: N clients connect, are released at once, GET one URL each and report timing.
//   herd --url http://127.0.0.1:PORT/path --clients 200 [--host H] [--expect-sim-body PATH:SIZE]
//        [--timeout-ms N] [--expect-status N] [--header "Name: value"]...
// Prints the summary as the last stdout line; exit 0 only when every client got a complete,
// expected response (1 otherwise, 2 on usage errors). Details of failures go to stderr.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/support/herd.h"

namespace {

void usage() {
  std::fputs(
      "usage: herd --url http://HOST:PORT/PATH [--clients N] [--host HOST] [--expect-sim-body PATH:SIZE]\n"
      "            [--timeout-ms N] [--expect-status N] [--header 'Name: value']...\n",
      stderr);
}

bool parseNumber(const std::string& s, long min, long max, long* out) {
  char* end = nullptr;
  long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace streamedge::testsupport;
  HerdOptions options;
  std::string url;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg == "--help" || arg == "-h") {
      usage();
      return 0;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "herd: missing value for %s\n", arg.c_str());
      usage();
      return 2;
    }
    long n = 0;
    if (arg == "--url") {
      url = value;
    } else if (arg == "--clients" && parseNumber(value, 1, 10000, &n)) {
      options.clients = static_cast<int>(n);
    } else if (arg == "--host") {
      options.host_header = value;
    } else if (arg == "--timeout-ms" && parseNumber(value, 1, 3600000, &n)) {
      options.timeout = std::chrono::milliseconds(n);
    } else if (arg == "--expect-status" && parseNumber(value, 100, 999, &n)) {
      options.expect_status = static_cast<int>(n);
    } else if (arg == "--header" && value.find(':') != std::string::npos) {
      size_t colon = value.find(':');
      size_t start = value.find_first_not_of(' ', colon + 1);
      options.headers.emplace_back(value.substr(0, colon), start == std::string::npos ? "" : value.substr(start));
    } else if (arg == "--expect-sim-body" && value.rfind(':') != std::string::npos &&
               parseNumber(value.substr(value.rfind(':') + 1), 0, 1L << 32, &n)) {
      options.expect_body_path = value.substr(0, value.rfind(':'));
      options.expect_body_size = static_cast<size_t>(n);
    } else {
      std::fprintf(stderr, "herd: bad argument %s %s\n", arg.c_str(), value.c_str());
      usage();
      return 2;
    }
  }
  if (url.empty() || !parseHttpUrl(url, &options.address, &options.port, &options.target)) {
    std::fprintf(stderr, "herd: need --url http://HOST:PORT/PATH\n");
    usage();
    return 2;
  }
  HerdResult result = runHerd(options);
  if (result.bad > 0) {
    int shown = 0;
    for (size_t i = 0; i < result.results.size() && shown < 5; ++i) {
      if (result.results[i].ok) continue;
      std::fprintf(stderr, "herd: client %zu: %s\n", i, result.results[i].error.c_str());
      ++shown;
    }
  }
  std::string caches;
  for (const auto& [value, count] : result.x_cache) {
    caches += " " + (value.empty() ? std::string("-") : value) + "=" + std::to_string(count);
  }
  std::fprintf(stderr, "herd: x_cache%s\n", caches.c_str());
  std::printf("%s\n", result.summary().c_str());
  std::fflush(stdout);
  return result.ok == result.clients ? 0 : 1;
}

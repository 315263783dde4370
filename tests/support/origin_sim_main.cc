// origin_sim: the origin simulator as a process (see tests/support/origin_sim.h for the content,
// the query knobs and the /_sim/ control endpoints). Prints exactly one line on start,
// "origin_sim listening HOST:PORT", and exits 0 on SIGTERM/SIGINT.
#include <cstdio>
#include <cstring>
#include <string>

#include "tests/support/origin_sim.h"

int main(int argc, char** argv) {
  using streamedge::testsupport::OriginSim;
  using streamedge::testsupport::OriginSimOptions;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::fputs(streamedge::testsupport::originSimUsage().c_str(), stdout);
      return 0;
    }
  }
  OriginSimOptions options;
  std::string error;
  if (!streamedge::testsupport::parseOriginSimArgs(argc - 1, argv + 1, &options, &error)) {
    std::fprintf(stderr, "origin_sim: %s\n%s", error.c_str(), streamedge::testsupport::originSimUsage().c_str());
    return 2;
  }
  OriginSim sim(options);
  if (!sim.bind(&error)) {
    std::fprintf(stderr, "origin_sim: %s\n", error.c_str());
    return 1;
  }
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  if (host.empty()) host = "0.0.0.0";
  std::printf("origin_sim listening %s:%u\n", host.c_str(), static_cast<unsigned>(sim.port()));
  std::fflush(stdout);
  return sim.run(/*handle_signals=*/true);
}

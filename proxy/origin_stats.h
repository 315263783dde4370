// OriginStats: one worker's origin accounting — requests (attempts), errors, retries, failovers
// and response-head latency per (group, origin, dc), and mid-body resumes per (group, from dc,
// to dc, outcome). The worker's OriginClient writes it (a miss
// path, never a hit); the admin thread reads it at scrape time and sums the workers. Series are
// keyed by the config names, not indices, so they stay right across a reload that reorders
// origins; an origin removed by a reload keeps its counters (Prometheus counters never go back).
//
// Thread-safety: every method takes mu_, which only a scrape contends for.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "conf/config.h"
#include "metrics/exposition.h"
#include "metrics/latency_histogram.h"
#include "proxy/origin_resume.h"

namespace streamedge::proxy {

class OriginStats {
 public:
  struct Series {
    uint64_t requests = 0;
    metrics::OriginErrorCounts errors{};  // by metrics::OriginErrorReason
    uint64_t retries = 0;
    uint64_t failovers = 0;
    metrics::HistogramSnapshot latency;
  };
  using Key = std::tuple<std::string, std::string, std::string>;  // group, origin, dc

  void attempt(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin);
  void error(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin,
             metrics::OriginErrorReason reason);
  void retry(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin);
  void failover(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin);
  void latency(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin,
               std::chrono::nanoseconds head_after);

  // A resume attempt (or a break that could not be resumed: `to` null) of a body that broke
  // off at `from`. The dc labels are the origins' dc, or their name when they have none.
  using ResumeKey = std::tuple<std::string, std::string, std::string, std::string>;  // group, from_dc, to_dc, outcome
  void resume(const conf::OriginGroupConfig& group, const conf::OriginConfig& from,
              const conf::OriginConfig* to, ResumeOutcome outcome);

  // Adds this worker's series into `out`.
  void addTo(std::map<Key, Series>& out) const;
  void addResumesTo(std::map<ResumeKey, uint64_t>& out) const;

 private:
  Series& series(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin);

  mutable std::mutex mu_;
  std::map<Key, Series> series_;  // guarded by mu_
  std::map<ResumeKey, uint64_t> resumes_;  // guarded by mu_
};

}  // namespace streamedge::proxy

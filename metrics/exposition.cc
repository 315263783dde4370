#include "metrics/exposition.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <sstream>

namespace streamedge::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void addCounter(MetricFamily& f, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = value;
  f.metric.push_back(std::move(m));
}

void addGauge(MetricFamily& f, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

}  // namespace

std::string renderPrometheus(const Snapshot& s) {
  std::vector<MetricFamily> families;

  auto requests = family("streamedge_requests_total", "Viewer requests by cache result.",
                         MetricType::Counter);
  for (const auto& [result, n] : s.requests_by_result) {
    addCounter(requests, static_cast<double>(n), {{"result", result}});
  }
  families.push_back(std::move(requests));

  auto responses = family("streamedge_responses_total", "Viewer responses by status class.",
                          MetricType::Counter);
  for (const auto& [cls, n] : s.responses_by_class) {
    addCounter(responses, static_cast<double>(n), {{"status_class", cls}});
  }
  families.push_back(std::move(responses));

  auto bytes = family("streamedge_response_body_bytes_total", "Body bytes sent to viewers.",
                      MetricType::Counter);
  addCounter(bytes, static_cast<double>(s.response_bytes));
  families.push_back(std::move(bytes));

  auto bad = family("streamedge_bad_requests_total", "Requests refused as malformed.",
                    MetricType::Counter);
  addCounter(bad, static_cast<double>(s.bad_requests));
  families.push_back(std::move(bad));

  auto fetches = family("streamedge_origin_fetches_total", "Fetches started towards origins.",
                        MetricType::Counter);
  addCounter(fetches, static_cast<double>(s.origin_fetches));
  families.push_back(std::move(fetches));

  auto failures = family("streamedge_origin_fetch_failures_total",
                         "Origin fetches that failed after all attempts.", MetricType::Counter);
  addCounter(failures, static_cast<double>(s.origin_failures));
  families.push_back(std::move(failures));

  auto up = family("streamedge_origin_up", "1 when the origin is considered up.",
                   MetricType::Gauge);
  for (const OriginState& o : s.origins) {
    addGauge(up, o.up ? 1 : 0, {{"group", o.group}, {"origin", o.origin}, {"dc", o.dc}});
  }
  families.push_back(std::move(up));

  auto accepted = family("streamedge_connections_accepted_total", "Viewer connections accepted.",
                         MetricType::Counter);
  addCounter(accepted, static_cast<double>(s.connections_accepted));
  families.push_back(std::move(accepted));

  auto active = family("streamedge_connections_active", "Viewer connections open now.",
                       MetricType::Gauge);
  addGauge(active, static_cast<double>(s.connections_active));
  families.push_back(std::move(active));

  auto objects = family("streamedge_cache_objects", "Objects in a cache tier.", MetricType::Gauge);
  addGauge(objects, static_cast<double>(s.cache_objects), {{"tier", "ram"}});
  families.push_back(std::move(objects));

  auto cbytes = family("streamedge_cache_bytes", "Bytes used in a cache tier.", MetricType::Gauge);
  addGauge(cbytes, static_cast<double>(s.cache_bytes), {{"tier", "ram"}});
  families.push_back(std::move(cbytes));

  auto capacity = family("streamedge_cache_capacity_bytes", "Byte budget of a cache tier.",
                         MetricType::Gauge);
  addGauge(capacity, static_cast<double>(s.cache_capacity_bytes), {{"tier", "ram"}});
  families.push_back(std::move(capacity));

  auto evictions = family("streamedge_cache_evictions_total", "Objects evicted from a tier.",
                          MetricType::Counter);
  addCounter(evictions, static_cast<double>(s.cache_evictions), {{"tier", "ram"}});
  families.push_back(std::move(evictions));

  auto admissions = family("streamedge_cache_admissions_total", "Objects admitted to a tier.",
                           MetricType::Counter);
  addCounter(admissions, static_cast<double>(s.cache_admissions), {{"tier", "ram"}});
  families.push_back(std::move(admissions));

  auto reloads = family("streamedge_config_reloads_total", "Config reloads by result.",
                        MetricType::Counter);
  addCounter(reloads, static_cast<double>(s.reloads_ok), {{"result", "ok"}});
  addCounter(reloads, static_cast<double>(s.reloads_failed), {{"result", "failed"}});
  families.push_back(std::move(reloads));

  auto build = family("streamedge_build_info", "Version and commit of this binary.",
                      MetricType::Gauge);
  addGauge(build, 1, {{"version", STREAMEDGE_VERSION}, {"commit", STREAMEDGE_GIT_COMMIT}});
  families.push_back(std::move(build));

  auto start = family("process_start_time_seconds", "Start time of the process, Unix seconds.",
                      MetricType::Gauge);
  addGauge(start, s.start_time_unix_seconds);
  families.push_back(std::move(start));

  const double now = std::chrono::duration<double>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
  auto uptime = family("streamedge_uptime_seconds", "Seconds since the process started.",
                       MetricType::Gauge);
  addGauge(uptime, now - s.start_time_unix_seconds);
  families.push_back(std::move(uptime));

  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace streamedge::metrics

#include "proxy/shared_state.h"

#include <cstring>

namespace streamedge::proxy {

const char* http2AbuseName(Http2Abuse k) {
  switch (k) {
    case Http2Abuse::kRapidReset: return "rapid_reset";
    case Http2Abuse::kContinuation: return "continuation";
    case Http2Abuse::kHeaderList: return "header_list";
    case Http2Abuse::kSettingsFlood: return "settings_flood";
    case Http2Abuse::kPingFlood: return "ping_flood";
    case Http2Abuse::kPriorityFlood: return "priority_flood";
    case Http2Abuse::kWindowUpdateFlood: return "window_update_flood";
    case Http2Abuse::kEmptyData: return "empty_data";
    case Http2Abuse::kZeroWindow: return "zero_window";
    case Http2Abuse::kHeaderTimeout: return "header_timeout";
    case Http2Abuse::kCount: break;
  }
  return "other";
}

const char* tlsVersionLabel(TlsVersionSlot v) {
  switch (v) {
    case TlsVersionSlot::kTls12: return "1.2";
    case TlsVersionSlot::kTls13: return "1.3";
    case TlsVersionSlot::kOther: return "other";
    case TlsVersionSlot::kUnknown:
    case TlsVersionSlot::kCount: break;
  }
  return "unknown";
}

const char* handshakeResultLabel(HandshakeResult r) {
  return r == HandshakeResult::kOk ? "ok" : "failed";
}

TlsVersionSlot tlsVersionSlot(const char* ssl_version) {
  if (ssl_version == nullptr || *ssl_version == '\0') return TlsVersionSlot::kUnknown;
  if (std::strcmp(ssl_version, "TLSv1.3") == 0) return TlsVersionSlot::kTls13;
  if (std::strcmp(ssl_version, "TLSv1.2") == 0) return TlsVersionSlot::kTls12;
  if (std::strcmp(ssl_version, "unknown") == 0) return TlsVersionSlot::kUnknown;
  return TlsVersionSlot::kOther;
}

uint8_t VhostSlots::slotFor(std::string_view name) {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 1; i < names_.size(); ++i) {
    if (names_[i] == name) return static_cast<uint8_t>(i);
  }
  if (names_.size() < kOther) {
    names_.emplace_back(name);
    return static_cast<uint8_t>(names_.size() - 1);
  }
  other_used_ = true;
  return kOther;
}

std::vector<std::string> VhostSlots::names() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out = names_;
  if (other_used_) {
    out.resize(kVhostSlots);
    out[kOther] = "other";
  }
  return out;
}

uint8_t WorkerCounters::vhostSlot(VhostSlots& registry, const conf::ConfigPtr& config,
                                  const conf::VhostConfig* vhost) {
  if (vhost == nullptr || !config) return VhostSlots::kUnrouted;
  if (slots_config_ != config) {
    // A new snapshot (start or reload): map its vhosts once, then index by position.
    slots_config_ = config;
    slots_.clear();
    for (const conf::VhostConfig& v : config->vhosts) slots_.push_back(registry.slotFor(v.name));
  }
  const auto position = static_cast<size_t>(vhost - config->vhosts.data());
  return position < slots_.size() ? slots_[position] : VhostSlots::kOther;
}

namespace {
thread_local WorkerCounters* t_worker_counters = nullptr;
}  // namespace

WorkerCounters* currentWorkerCounters() { return t_worker_counters; }
void setCurrentWorkerCounters(WorkerCounters* counters) { t_worker_counters = counters; }

}  // namespace streamedge::proxy

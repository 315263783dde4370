#include "conf/status.h"

namespace streamedge {

const char* codeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalid: return "invalid";
    case Code::kTooLarge: return "too large";
    case Code::kNotFound: return "not found";
    case Code::kTimeout: return "timeout";
    case Code::kConnect: return "connect failed";
    case Code::kClosed: return "closed";
    case Code::kIo: return "i/o error";
    case Code::kCorrupt: return "corrupt";
    case Code::kUnavailable: return "unavailable";
    case Code::kBusy: return "busy";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

const char* sourceName(Source source) {
  switch (source) {
    case Source::kNone: return "none";
    case Source::kDownstream: return "downstream";
    case Source::kUpstream: return "upstream";
    case Source::kStorage: return "storage";
    case Source::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::toString() const {
  if (isOk()) return "ok";
  std::string out = sourceName(source_);
  out += ' ';
  out += codeName(code_);
  if (detail_ && *detail_) {
    out += ": ";
    out += detail_;
  }
  return out;
}

}  // namespace streamedge

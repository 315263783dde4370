// libFuzzer target: the CMCD (CTA-5004) reader. Whatever the bytes, it accepts or refuses
// (never a crash, never unbounded work), and a refused list leaves what was read before intact.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "streaming/cmcd.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace streamedge::streaming;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CmcdData list;
  const bool ok = parseCmcdList(text, list);
  check(ok == list.any);
  if (ok) check(text.size() <= kMaxCmcdBytes);
  // A refused list changes nothing already read.
  CmcdData before;
  check(parseCmcdList("br=800,bs", before));
  CmcdData after = before;
  if (!parseCmcdList(text, after)) check(after.br_kbps == before.br_kbps && after.bs && after.any);
  CmcdData query;
  parseCmcdQuery(text, query);
  (void)isCmcdField(text);
  return 0;
}

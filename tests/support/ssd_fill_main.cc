// ssd_fill: fills an SSD store file the way the proxy would have, for the warm-restart
// benchmark (scripts/bench/warm_restart.sh): `count` objects of `object-kib` under the keys the
// proxy computes for GET <prefix><i>.ts on virtual host `vhost` (no query), fresh for a day,
// each with its purge labels and sealed with the vhost's data key (keyring <store>.keys),
// through the real SsdStore (real file, real I/O engine, AES-256-GCM with the key file). The
// store is closed gracefully at the end, so its index checkpoint is written like a proxy's at
// SIGTERM (unless --no-checkpoint).
//
//   ssd_fill --store PATH --key-file FILE --size-mib N [--region-mib 16] [--object-kib 2048]
//            [--vhost NAME] [--prefix /obj/warm/] [--no-checkpoint]
//
// Prints one line: objects=N bytes=N seconds=S checkpoint_seconds=S.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cache/cache_key.h"
#include "cache/purge_labels.h"
#include "cache/ssd_store.h"

namespace {

using namespace streamedge;
using namespace streamedge::cache;

int usage() {
  std::fprintf(stderr,
               "usage: ssd_fill --store PATH --key-file FILE --size-mib N [--region-mib 16]\n"
               "                [--object-kib 2048] [--vhost NAME] [--prefix /obj/warm/]\n"
               "                [--no-checkpoint]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string store_path, key_file, vhost = "default", prefix = "/obj/warm/";
  uint64_t size_mib = 0, region_mib = 16, object_kib = 2048;
  bool checkpoint = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--no-checkpoint") {
      checkpoint = false;
    } else if (a == "--store" && (v = next())) {
      store_path = v;
    } else if (a == "--key-file" && (v = next())) {
      key_file = v;
    } else if (a == "--size-mib" && (v = next())) {
      size_mib = std::strtoull(v, nullptr, 10);
    } else if (a == "--region-mib" && (v = next())) {
      region_mib = std::strtoull(v, nullptr, 10);
    } else if (a == "--object-kib" && (v = next())) {
      object_kib = std::strtoull(v, nullptr, 10);
    } else if (a == "--vhost" && (v = next())) {
      vhost = v;
    } else if (a == "--prefix" && (v = next())) {
      prefix = v;
    } else {
      return usage();
    }
  }
  if (store_path.empty() || key_file.empty() || size_mib == 0 || region_mib == 0 ||
      object_kib == 0) {
    return usage();
  }
  std::remove(store_path.c_str());
  conf::SsdCacheConfig sc;
  sc.enabled = true;
  sc.path = store_path;
  sc.size_bytes = size_mib << 20;
  sc.region_bytes = region_mib << 20;
  sc.encrypt = true;
  sc.key_file = key_file;
  sc.sync_interval = conf::Millis(0);
  sc.background_rebuild = false;
  sc.checkpoint = checkpoint ? store_path + ".checkpoint" : "";
  sc.checkpoint_interval = conf::Millis(0);
  sc.keyring = store_path + ".keys";  // the proxy's default for a store file
  std::remove(sc.keyring.c_str());
  std::remove(sc.checkpoint.c_str());
  std::string error;
  auto store = openSsdStore(sc, SystemClock::instance(), nullptr, &error);
  if (!store.isOk()) {
    std::fprintf(stderr, "ssd_fill: cannot open the store: %s\n", error.c_str());
    return 1;
  }
  const uint64_t object_bytes = object_kib << 10;
  // Objects fill the store to 90 %: none is reclaimed, every one stays findable.
  const uint64_t count = (sc.size_bytes / sc.region_bytes) * (sc.region_bytes / (object_bytes + 4096)) * 9 / 10;
  auto body = Ref<Body>::make(std::optional<uint64_t>(object_bytes));
  {
    const std::vector<uint8_t> payload(object_bytes, 0x5a);
    body->append(payload.data(), payload.size());
    body->freeze();
  }
  Freshness f;
  f.response_time = SystemClock::instance().wallNow();
  f.lifetime = conf::Seconds(86400);
  f.explicit_lifetime = true;
  const auto started = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < count; ++i) {
    const std::string path = prefix + std::to_string(i) + ".ts";
    const CacheKey key = makeKey(vhost, path, "");
    // Each object's own head with its purge labels (:vhost, :path), as a proxy's fill stores
    // it: the index and the checkpoint carry them, and the vhost's data key seals it.
    auto head = std::make_shared<ResponseHead>();
    head->status = 200;
    head->reason = "OK";
    head->headers = {{"Content-Type", "video/mp2t"},
                     {"Cache-Control", "max-age=86400"},
                     {"ETag", "\"warm\""}};
    addPurgeLabels(head->headers, vhost, path);
    head->content_length = object_bytes;
    head->buildWire();
    // The write queue bounds what is pending: wait for the writer when it is full.
    for (int tries = 0; !(*store)->insert(key, head, f, body); ++tries) {
      if (tries > 10000) {
        std::fprintf(stderr, "ssd_fill: the store refuses object %llu\n",
                     static_cast<unsigned long long>(i));
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  (void)(*store)->flush();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const SsdStats s = (*store)->stats();
  store->reset();  // graceful close: the open region, then the checkpoint
  const double total =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("objects=%llu bytes=%llu seconds=%.1f close_seconds=%.2f\n",
              static_cast<unsigned long long>(s.objects),
              static_cast<unsigned long long>(s.indexed_bytes), seconds, total - seconds);
  return 0;
}

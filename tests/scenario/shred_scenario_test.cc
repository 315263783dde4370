// Crypto-shredding with the real binary: an encrypted SSD store with per-vhost data keys, two
// vhosts whose objects carry a marker string, a hard purge of one whole vhost, a restart. Then
// the store file is read with the project's own format and crypto code: no marker anywhere, no
// entry of the purged vhost opens with the store key or any key left in the keyring (while its
// entries are still there, and the other vhost's open and show their marker), and the purged
// vhost's objects are misses while the other's are still SSD hits.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cache/ssd_crypto.h"
#include "cache/ssd_format.h"
#include "cache/ssd_keyring.h"
#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kRegionBytes = 1 << 20;
constexpr int kObjects = 6;  // per vhost

class ShredScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(sim_) << error;
    dir_.emplace("streamedge-shred");
    store_ = dir_->file("store");
    keyring_ = store_ + ".keys";  // the default place
    key_file_ = dir_->file("store.key");
    ASSERT_TRUE(testsupport::writeFile(
        key_file_, "5f0c2a9d31e47b68c0aa1d2e3f405162738495a6b7c8d9eaf0b1c2d3e4f50617\n"));
  }
  void TearDown() override {
    if (proxy_ && proxy_->process.running()) {
      EXPECT_EQ(proxy_->process.stop(15s), 0) << proxy_->process.logTail(80);
    }
  }

  std::string config() const {
    return "[server]\nworkers = 2\n\n"
           "[admin]\naddress = \"127.0.0.1:0\"\n\n"
           "[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
           "[cache.ram]\nsize = \"64MiB\"\n\n"
           "[log]\naccess_log = \"off\"\n\n"
           "[cache.ssd]\npath = \"" + store_ + "\"\nsize = \"16MiB\"\nregion_size = \"1MiB\"\n"
           "encrypt = true\nkey_file = \"" + key_file_ + "\"\nadmission = \"fill\"\n\n"
           "[[origin_group]]\nname = \"main\"\n"
           "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" + std::to_string(sim_->port) +
           "\"\n  dc = \"dc-a\"\n\n"
           "[[vhost]]\nname = \"tv\"\nhostnames = [\"tv.example\"]\n"
           "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n\n"
           "[[vhost]]\nname = \"radio\"\nhostnames = [\"radio.example\"]\n"
           "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
  }

  void startProxy() {
    proxy_.reset();
    std::string error;
    proxy_ = testsupport::startStreamedge(config(), &error);
    ASSERT_TRUE(proxy_) << error;
    std::string status;
    for (int attempt = 0; attempt < 200; ++attempt) {  // ≤ 10 s for the index rebuild
      status = admin("GET", "/status").body;
      if (status.find("\"rebuilding\":false") != std::string::npos) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "the SSD index was not rebuilt within 10 s: " << status;
  }

  HttpResponse admin(const std::string& method, const std::string& target) {
    return testsupport::httpRequest(proxy_->admin_port, method, target, {}, 15s);
  }
  HttpResponse getOn(const std::string& host, const std::string& target) {
    return testsupport::httpGet(proxy_->http_port, target, {{"Host", host}}, 15s);
  }
  static std::string path(const std::string& vhost, int i) {
    return "/obj/shred/" + vhost + "/seg" + std::to_string(i) + ".ts";
  }
  static std::string target(const std::string& vhost, int i) {
    return path(vhost, i) + "?size=20000";
  }
  long originCount(const std::string& p) const { return testsupport::simCount(sim_->port, p); }

  cache::StoreKey storeKey() const {
    auto key = cache::loadStoreKey(key_file_);
    EXPECT_TRUE(key.isOk());
    return key.isOk() ? *key : cache::StoreKey{};
  }
  std::vector<cache::ssd::KeyringRecord> keyring() const {
    std::vector<cache::ssd::KeyringRecord> records;
    uint32_t next_id = 0;
    const char* why = "";
    const std::string bytes = testsupport::readFile(keyring_);
    EXPECT_TRUE(cache::ssd::decodeKeyring(std::vector<uint8_t>(bytes.begin(), bytes.end()),
                                          storeKey(), &records, &next_id, &why))
        << why;
    return records;
  }

  std::string store_, keyring_, key_file_;
  std::optional<testsupport::TempDir> dir_;
  std::optional<testsupport::OriginSimProcess> sim_;
  std::optional<testsupport::StreamedgeProcess> proxy_;
};

// One entry of the store file, as the format describes it.
struct Entry {
  uint32_t key_id = 0;
  bool tombstone = false;
  bool opened = false;     // some key opened it
  std::string plaintext;   // what it opened to (EntryMeta + head + body)
};

// Every entry of every valid region, each tried with every cipher (AES-256-GCM, header as AAD).
std::vector<Entry> decryptStore(const std::string& file,
                                const std::vector<const cache::EntryCipher*>& ciphers) {
  namespace ssd = cache::ssd;
  std::vector<Entry> out;
  for (uint64_t off = 0; off + kRegionBytes <= file.size(); off += kRegionBytes) {
    ssd::RegionHeader h;
    std::memcpy(&h, file.data() + off, sizeof(h));
    if (h.magic != ssd::kRegionMagic || h.checksum != ssd::regionHeaderChecksum(h) ||
        h.used_bytes > kRegionBytes) {
      continue;
    }
    size_t at = sizeof(h);
    for (uint32_t n = 0; n < h.entry_count && at + sizeof(ssd::EntryHeader) <= h.used_bytes; ++n) {
      ssd::EntryHeader e;
      std::memcpy(&e, file.data() + off + at, sizeof(e));
      if (e.magic != ssd::kEntryMagic || e.entry_bytes == 0 || at + e.entry_bytes > h.used_bytes) break;
      Entry entry;
      entry.key_id = e.key_id;
      entry.tombstone = (e.flags & ssd::kEntryFlagTombstone) != 0;
      for (const cache::EntryCipher* c : ciphers) {
        if (e.flags & ssd::kEntryFlagChunked) {
          // Format version 3: EntryMeta + head sealed whole, the body chunk by chunk; opened
          // only when every part opens.
          std::string bytes = file.substr(off + at, e.entry_bytes);
          auto* p = reinterpret_cast<uint8_t*>(bytes.data());
          ssd::ChunkedView view;
          const char* why = "";
          bool all = ssd::openChunkedEntry(p, bytes.size(), c, &view, &why);
          for (uint32_t i = 0; all && i < view.layout.chunks; ++i) {
            all = ssd::openChunk(p, view, i, c);
          }
          if (all) {
            entry.opened = true;
            entry.plaintext = bytes.substr(sizeof(e), e.sealed_bytes) +
                              bytes.substr(view.layout.body_at, view.meta.body_bytes);
            break;
          }
          continue;
        }
        std::string sealed = file.substr(off + at + sizeof(e), e.sealed_bytes);
        const auto* tag = reinterpret_cast<const uint8_t*>(file.data() + off + at + sizeof(e) +
                                                           e.sealed_bytes);
        if (c->open(e.nonce, reinterpret_cast<const uint8_t*>(&e), sizeof(e),
                    reinterpret_cast<uint8_t*>(sealed.data()), sealed.size(), tag)) {
          entry.opened = true;
          entry.plaintext = std::move(sealed);
          break;
        }
      }
      out.push_back(std::move(entry));
      at += e.entry_bytes;
    }
  }
  return out;
}

TEST_F(ShredScenarioTest, AVhostPurgeDestroysItsKeySoItsBytesCannotBeReadAfterARestart) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  for (int i = 0; i < kObjects; ++i) {
    for (const std::string vhost : {"tv", "radio"}) {
      const HttpResponse r = getOn(vhost + ".example", target(vhost, i));
      ASSERT_EQ(r.status, 200) << r.error;
      ASSERT_NE(r.body.find("SIMDATA:/obj/shred/" + vhost + "/"), std::string::npos);
    }
  }
  // admission "fill": every object goes to the SSD; wait until the index holds them all.
  double on_ssd = 0;
  for (int i = 0; i < 100 && on_ssd < 2 * kObjects; ++i) {
    on_ssd = metricValue(admin("GET", "/metrics").body, "streamedge_cache_objects", "tier=\"ssd\"");
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_GE(on_ssd, 2 * kObjects) << proxy_->process.logTail(40);
  // Each vhost has its own data key in the keyring beside the store.
  uint32_t tv_id = 0, radio_id = 0;
  for (const auto& r : keyring()) (r.vhost == "tv" ? tv_id : radio_id) = r.id;
  ASSERT_NE(tv_id, 0u);
  ASSERT_NE(radio_id, 0u);
  ASSERT_NE(tv_id, radio_id);

  const HttpResponse p = admin("POST", "/purge?host=tv");
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_NE(p.body.find("\"objects\":" + std::to_string(kObjects) + ","), std::string::npos) << p.body;
  EXPECT_NE(p.body.find("\"data_key_destroyed\":true"), std::string::npos) << p.body;
  // Out of the keyring file when the purge answered.
  for (const auto& r : keyring()) EXPECT_NE(r.vhost, "tv");
  const std::string status = admin("GET", "/status").body;
  EXPECT_NE(status.find("\"data_keys_destroyed\":1"), std::string::npos) << status;
  EXPECT_NE(status.find("\"vhost_keys\":true"), std::string::npos) << status;

  std::this_thread::sleep_for(1500ms);  // the writer's idle sync puts the tombstones on the device
  ASSERT_EQ(proxy_->process.stop(15s), 0) << proxy_->process.logTail(40);
  const std::string log = proxy_->process.log();
  EXPECT_NE(log.find("destroyed the data key of vhost \"tv\""), std::string::npos) << log;

  // (a) The marker of either vhost is nowhere in the store file (nor in the keyring).
  const std::string file = testsupport::readFile(store_);
  ASSERT_GE(file.size(), 16 * kRegionBytes);
  EXPECT_EQ(file.find("SIMDATA:"), std::string::npos);
  EXPECT_EQ(testsupport::readFile(keyring_).find("SIMDATA:"), std::string::npos);

  // (b) With the store key and every key left in the keyring, no entry sealed with tv's key
  // opens, though they are all still on the device; radio's all open, to their marker.
  const std::vector<cache::ssd::KeyringRecord> left = keyring();
  std::vector<std::unique_ptr<cache::EntryCipher>> owned;
  owned.push_back(std::make_unique<cache::EntryCipher>(storeKey()));
  for (const auto& r : left) {
    EXPECT_NE(r.id, tv_id);
    owned.push_back(std::make_unique<cache::EntryCipher>(r.key));
  }
  std::vector<const cache::EntryCipher*> ciphers;
  for (const auto& c : owned) ciphers.push_back(c.get());
  int tv_entries = 0, radio_entries = 0;
  for (const Entry& e : decryptStore(file, ciphers)) {
    if (e.key_id == tv_id) {
      ++tv_entries;
      EXPECT_FALSE(e.opened) << "an entry of the purged vhost was decrypted";
    } else if (e.key_id == radio_id) {
      ++radio_entries;
      EXPECT_TRUE(e.opened);
      EXPECT_NE(e.plaintext.find("SIMDATA:/obj/shred/radio/"), std::string::npos);
    } else {
      EXPECT_EQ(e.key_id, 0u);  // the store key: tombstones here
      EXPECT_TRUE(e.opened);
      EXPECT_EQ(e.plaintext.find("SIMDATA:/obj/shred/tv/"), std::string::npos);
    }
  }
  EXPECT_GE(tv_entries, kObjects) << "the test needs tv's ciphertext on the device";
  EXPECT_GE(radio_entries, kObjects);

  // (c) After the restart: tv's objects are misses (fetched again), radio's still SSD hits.
  ASSERT_NO_FATAL_FAILURE(startProxy());
  for (int i = 0; i < kObjects; ++i) {
    const long tv_before = originCount(path("tv", i));
    const long radio_before = originCount(path("radio", i));
    const HttpResponse tv = getOn("tv.example", target("tv", i));
    ASSERT_EQ(tv.status, 200) << tv.error;
    EXPECT_EQ(tv.header("X-Cache"), "MISS") << "a shredded object came back: " << i;
    EXPECT_EQ(originCount(path("tv", i)), tv_before + 1);
    const HttpResponse radio = getOn("radio.example", target("radio", i));
    ASSERT_EQ(radio.status, 200) << radio.error;
    EXPECT_EQ(radio.header("X-Cache"), "HIT") << "radio " << i;
    EXPECT_EQ(originCount(path("radio", i)), radio_before);
    EXPECT_NE(radio.body.find("SIMDATA:/obj/shred/radio/"), std::string::npos);
  }
  const std::string m = admin("GET", "/metrics").body;
  EXPECT_GE(metricValue(m, "streamedge_ssd_hits_total", ""), kObjects) << m;
  // tv got a fresh key for its new objects.
  bool tv_again = false;
  for (const auto& r : keyring()) {
    if (r.vhost == "tv") {
      tv_again = true;
      EXPECT_NE(r.id, tv_id);
    }
  }
  EXPECT_TRUE(tv_again);
}

}  // namespace
}  // namespace streamedge::scenario

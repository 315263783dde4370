// NameResolver against a real DNS server on 127.0.0.1 (tests/support/dns_server.h) and real
// hosts files: TTLs honoured and capped, A and AAAA both asked, lookups of one name shared,
// the hosts file first, cancellation.
#include "proxy/name_resolver.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/dns_server.h"

namespace streamedge::proxy {
namespace {

std::string text(const SockAddr& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.storage.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a.storage)->sin_addr, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a.storage)->sin6_addr, buf,
              sizeof buf);
  }
  return std::string(buf) + "/" + std::to_string(a.port());
}

std::vector<std::string> texts(const std::vector<SockAddr>& addrs) {
  std::vector<std::string> out;
  for (const SockAddr& a : addrs) out.push_back(text(a));
  return out;
}

class NameResolverTest : public ::testing::Test {
 protected:
  void SetUp() override { base_ = event_base_new(); }
  void TearDown() override {
    resolver_.reset();
    // Cancelled queries free themselves on the loop.
    event_base_loop(base_, EVLOOP_NONBLOCK);
    event_base_free(base_);
  }

  NameResolver& make(std::string hosts_file = "") {
    resolver_ = std::make_unique<NameResolver>(
        base_, ResolverOptions{{dns_.address()}, std::move(hosts_file)});
    return *resolver_;
  }

  bool runUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  // Resolves `host`, waiting for the answer when it is not known at once.
  std::vector<std::string> resolve(const std::string& host, Millis max_ttl, bool* at_once = nullptr) {
    std::vector<SockAddr> out;
    bool done = false;
    const uint64_t ticket = resolver_->resolve(host, 8080, max_ttl, out,
                                               [&](std::vector<SockAddr> a, const char*) {
                                                 out = std::move(a);
                                                 done = true;
                                               });
    if (at_once) *at_once = ticket == 0;
    if (ticket != 0) {
      EXPECT_TRUE(runUntil([&] { return done; }));
    }
    return texts(out);
  }

  test::DnsServer dns_;
  event_base* base_ = nullptr;
  std::unique_ptr<NameResolver> resolver_;
};

TEST_F(NameResolverTest, LiteralsAnswerAtOnceWithoutAQuestion) {
  make();
  bool at_once = false;
  EXPECT_EQ(resolve("127.0.0.1", Millis(30'000), &at_once), std::vector<std::string>{"127.0.0.1/8080"});
  EXPECT_TRUE(at_once);
  EXPECT_EQ(resolve("::1", Millis(30'000), &at_once), std::vector<std::string>{"::1/8080"});
  EXPECT_TRUE(at_once);
  EXPECT_EQ(resolver_->queriesSent(), 0u);
}

TEST_F(NameResolverTest, AsksAAndAaaaAndInterleavesTheAnswers) {
  dns_.set("both.test", {"127.0.0.1", "127.0.0.2", "::1"}, 60);
  make();
  EXPECT_EQ(resolve("both.test", Millis(30'000)),
            (std::vector<std::string>{"::1/8080", "127.0.0.1/8080", "127.0.0.2/8080"}));
  EXPECT_EQ(dns_.questions("both.test", "A"), 1);
  EXPECT_EQ(dns_.questions("both.test", "AAAA"), 1);
}

TEST_F(NameResolverTest, AnAnswerIsReusedForItsTtlThenAskedAgain) {
  dns_.set("ttl.test", {"127.0.0.1"}, 1);
  make();
  EXPECT_EQ(resolve("ttl.test", Millis(30'000)), std::vector<std::string>{"127.0.0.1/8080"});
  dns_.set("ttl.test", {"::1"}, 1);  // the name moves; the cached answer is still young
  bool at_once = false;
  EXPECT_EQ(resolve("ttl.test", Millis(30'000), &at_once), std::vector<std::string>{"127.0.0.1/8080"});
  EXPECT_TRUE(at_once);
  EXPECT_EQ(dns_.questions("ttl.test", "A"), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past the 1 s TTL
  EXPECT_EQ(resolve("ttl.test", Millis(30'000), &at_once), std::vector<std::string>{"::1/8080"});
  EXPECT_FALSE(at_once);
  EXPECT_EQ(dns_.questions("ttl.test", "A"), 2);
}

TEST_F(NameResolverTest, MaxTtlCapsALongTtlAndZeroDisablesTheCache) {
  dns_.set("long.test", {"127.0.0.1"}, 3600);
  make();
  resolve("long.test", Millis(200));
  bool at_once = false;
  resolve("long.test", Millis(200), &at_once);
  EXPECT_TRUE(at_once);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  resolve("long.test", Millis(200), &at_once);
  EXPECT_FALSE(at_once);
  EXPECT_EQ(dns_.questions("long.test", "A"), 2);
  resolve("long.test", Millis(0), &at_once);  // "0s": every new connection asks
  EXPECT_FALSE(at_once);
  EXPECT_EQ(dns_.questions("long.test", "A"), 3);
}

TEST_F(NameResolverTest, ATtlOfZeroIsNotCached) {
  dns_.set("zero.test", {"127.0.0.1"}, 0);
  make();
  resolve("zero.test", Millis(30'000));
  bool at_once = true;
  EXPECT_EQ(resolve("zero.test", Millis(30'000), &at_once), std::vector<std::string>{"127.0.0.1/8080"});
  EXPECT_FALSE(at_once);
  EXPECT_EQ(dns_.questions("zero.test", "A"), 2);
}

TEST_F(NameResolverTest, LookupsOfOneNameShareOneQuery) {
  dns_.set("shared.test", {"127.0.0.1"}, 60);
  make();
  int answers = 0;
  std::vector<SockAddr> out;
  for (uint16_t port = 1; port <= 20; ++port) {
    const uint64_t ticket = resolver_->resolve(
        "shared.test", port, Millis(30'000), out, [&, port](std::vector<SockAddr> a, const char*) {
          ASSERT_EQ(a.size(), 1u);
          EXPECT_EQ(a[0].port(), port);  // each caller gets its own port
          ++answers;
        });
    ASSERT_NE(ticket, 0u);
  }
  ASSERT_TRUE(runUntil([&] { return answers == 20; }));
  EXPECT_EQ(dns_.questions("shared.test", "A"), 1);
  EXPECT_EQ(dns_.questions("shared.test", "AAAA"), 1);
}

TEST_F(NameResolverTest, ACancelledLookupNeverCallsBackButItsAnswerIsKept) {
  dns_.set("cancel.test", {"127.0.0.1"}, 60);
  make();
  bool called = false;
  std::vector<SockAddr> out;
  const uint64_t ticket = resolver_->resolve("cancel.test", 80, Millis(30'000), out,
                                             [&](std::vector<SockAddr>, const char*) { called = true; });
  resolver_->cancel(ticket);
  ASSERT_TRUE(runUntil([&] { return dns_.questions("cancel.test", "AAAA") == 1; }));
  bool at_once = false;
  for (int i = 0; i < 200 && !at_once; ++i) {  // the answer lands in the cache
    event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    at_once = resolver_->resolve("cancel.test", 80, Millis(30'000), out,
                                 [](std::vector<SockAddr>, const char*) {}) == 0;
  }
  EXPECT_TRUE(at_once);
  EXPECT_FALSE(called);
}

TEST_F(NameResolverTest, AnUnknownNameResolvesToNothing) {
  make();
  bool at_once = true;
  EXPECT_TRUE(resolve("missing.test", Millis(30'000), &at_once).empty());
  EXPECT_FALSE(at_once);
}

TEST_F(NameResolverTest, TheHostsFileComesFirstAndAsksNoServer) {
  char path[] = "/tmp/streamedge-hosts-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string body = "127.0.0.1 local.test\n::1 local.test\n";
  ASSERT_EQ(::write(fd, body.data(), body.size()), static_cast<ssize_t>(body.size()));
  ::close(fd);
  dns_.set("local.test", {"127.0.0.9"}, 60);
  make(path);
  bool at_once = false;
  const auto addrs = resolve("local.test", Millis(30'000), &at_once);
  EXPECT_TRUE(at_once);
  EXPECT_EQ(addrs, (std::vector<std::string>{"127.0.0.1/8080", "::1/8080"}));
  EXPECT_EQ(dns_.questions("local.test", "A"), 0);
  ::unlink(path);
}

TEST_F(NameResolverTest, DestroyingTheResolverWithALookupInFlightIsSafe) {
  dns_.set("slow.test", {"127.0.0.1"}, 60);
  make();
  std::vector<SockAddr> out;
  bool called = false;
  ASSERT_NE(resolver_->resolve("slow.test", 80, Millis(30'000), out,
                               [&](std::vector<SockAddr>, const char*) { called = true; }),
            0u);
  resolver_.reset();
  for (int i = 0; i < 20; ++i) {
    event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace streamedge::proxy

#include "proxy/access_log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.h"

namespace streamedge::proxy {
namespace {

std::string anonymize(const char* text, conf::AddressAnonymization mode) {
  sockaddr_storage ss{};
  if (inet_pton(AF_INET, text, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr) == 1) {
    ss.ss_family = AF_INET;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, text, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr), 1);
    ss.ss_family = AF_INET6;
  }
  std::string out;
  anonymizeAddress(reinterpret_cast<const sockaddr*>(&ss), mode, out);
  return out;
}

TEST(AccessLog, Ipv4IsTruncatedToSlash24ByDefault) {
  EXPECT_EQ(anonymize("203.0.113.77", conf::AddressAnonymization::kTruncate), "203.0.113.0");
  EXPECT_EQ(anonymize("203.0.113.77", conf::AddressAnonymization::kFull), "203.0.113.77");
  EXPECT_EQ(anonymize("203.0.113.77", conf::AddressAnonymization::kNone), "-");
}

TEST(AccessLog, Ipv6IsTruncatedToSlash48) {
  EXPECT_EQ(anonymize("2001:db8:abcd:1234:5678::1", conf::AddressAnonymization::kTruncate),
            "2001:db8:abcd::");
  EXPECT_EQ(anonymize("::ffff:198.51.100.9", conf::AddressAnonymization::kTruncate),
            "198.51.100.0");
}

TEST(AccessLog, LineIsOneJsonObjectWithEscapedFields) {
  AccessLogEntry e;
  e.time_unix_ms = 1700000000123;
  e.vhost = "live";
  e.client = "203.0.113.0";
  e.method = "GET";
  e.path = "/live/\"evil\"\n.m3u8";
  e.query = "bitrate=3";
  e.status = 200;
  e.bytes = 2048;
  e.duration_ms = 1.5;
  e.ttfb_ms = 0.25;
  e.cache = "HIT";
  std::string line;
  formatAccessLogLine(e, line);
  EXPECT_EQ(line,
            "{\"time\":\"2023-11-14T22:13:20.123Z\",\"vhost\":\"live\",\"client\":\"203.0.113.0\","
            "\"method\":\"GET\",\"path\":\"/live/\\\"evil\\\"\\n.m3u8\",\"query\":\"bitrate=3\","
            "\"status\":200,\"bytes\":2048,\"duration_ms\":1.500,\"ttfb_ms\":0.250,"
            "\"cache\":\"HIT\",\"origin\":\"-\",\"dc\":\"-\",\"tls\":\"-\"}\n");
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "exactly one line";
}

TEST(AccessLog, LineNamesTheOriginDataCenterAndTlsVersionUsed) {
  AccessLogEntry e;
  e.time_unix_ms = 1700000000000;
  e.vhost = "vod";
  e.client = "2001:db8:abcd::";
  e.method = "GET";
  e.path = "/vod/a/seg_1.ts";
  e.status = 200;
  e.bytes = 1;
  e.cache = "MISS";
  e.origin = "origin-fra";
  e.dc = "fra1";
  e.tls = "1.3";
  std::string line;
  formatAccessLogLine(e, line);
  EXPECT_NE(line.find("\"query\":\"\",\"status\":200"), std::string::npos) << line;
  EXPECT_NE(line.find("\"cache\":\"MISS\",\"origin\":\"origin-fra\",\"dc\":\"fra1\",\"tls\":\"1.3\"}"),
            std::string::npos)
      << line;
}

TEST(AccessLog, LineHasExactlyTheDocumentedFieldsAndNothingPersonal) {
  AccessLogEntry e;
  std::string line;
  formatAccessLogLine(e, line);
  // Field names in order; no User-Agent, Referer, cookie or authorization ever.
  size_t pos = 0;
  for (const char* key : {"time", "vhost", "client", "method", "path", "query", "status", "bytes",
                          "duration_ms", "ttfb_ms", "cache", "origin", "dc", "tls"}) {
    const size_t at = line.find(std::string("\"") + key + "\":", pos);
    ASSERT_NE(at, std::string::npos) << key << " in " << line;
    pos = at + 1;
  }
  for (const char* absent : {"agent", "referer", "cookie", "authorization"}) {
    EXPECT_EQ(line.find(absent), std::string::npos) << absent;
  }
  // Empty values become "-" rather than "" where a value is expected.
  EXPECT_NE(line.find("\"vhost\":\"-\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"origin\":\"-\",\"dc\":\"-\",\"tls\":\"-\""), std::string::npos) << line;
}

TEST(AccessLog, TimesAndDurationsAreFormattedExactly) {
  // The per-second time prefix is cached per thread: alternate seconds to exercise it.
  auto line = [](int64_t unix_ms, double duration_ms) {
    AccessLogEntry e;
    e.time_unix_ms = unix_ms;
    e.duration_ms = duration_ms;
    std::string out;
    formatAccessLogLine(e, out);
    return out;
  };
  EXPECT_NE(line(1700000000999, 0).find("\"time\":\"2023-11-14T22:13:20.999Z\""), std::string::npos);
  EXPECT_NE(line(1700000001000, 0).find("\"time\":\"2023-11-14T22:13:21.000Z\""), std::string::npos);
  EXPECT_NE(line(1700000000005, 0).find("\"time\":\"2023-11-14T22:13:20.005Z\""), std::string::npos);
  EXPECT_NE(line(0, 0).find("\"time\":\"1970-01-01T00:00:00.000Z\""), std::string::npos);
  EXPECT_NE(line(0, 0).find("\"duration_ms\":0.000,"), std::string::npos);
  EXPECT_NE(line(0, -3).find("\"duration_ms\":0.000,"), std::string::npos);
  EXPECT_NE(line(0, 1.0005).find("\"duration_ms\":1.001,"), std::string::npos);
  EXPECT_NE(line(0, 0.0424).find("\"duration_ms\":0.042,"), std::string::npos);
  EXPECT_NE(line(0, 12345.678).find("\"duration_ms\":12345.678,"), std::string::npos);
}

TEST(AccessLog, ControlCharactersAreEscapedAsUnicode) {
  AccessLogEntry e;
  e.path = "/a\x01" "b\x7f" "\\c";
  std::string out;
  formatAccessLogLine(e, out);
  EXPECT_NE(out.find("\"path\":\"/a\\u0001b\\u007f\\\\c\""), std::string::npos) << out;
}

TEST(AccessLog, EscapingIsTheSameForEveryByteAtEveryOffset) {
  // The formatter copies 8 plain bytes at a time; check it against a byte-by-byte reference for
  // each byte value at each position of strings of every length up to 24.
  auto reference = [](std::string_view s) {
    std::string out;
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += ch;
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '\r') {
        out += "\\r";
      } else if (c == '\t') {
        out += "\\t";
      } else if (c < 0x20 || c == 0x7f) {
        char esc[8];
        std::snprintf(esc, sizeof esc, "\\u%04x", c);
        out += esc;
      } else {
        out += ch;
      }
    }
    return out;
  };
  std::string line;
  for (size_t len = 1; len <= 24; ++len) {
    for (size_t at = 0; at < len; ++at) {
      for (int b = 0; b < 256; ++b) {
        std::string path(len, 'a');
        path[at] = static_cast<char>(b);
        AccessLogEntry e;
        e.path = path;
        line.clear();
        formatAccessLogLine(e, line);
        const std::string expected = "\"path\":\"" + reference(path) + "\",";
        ASSERT_NE(line.find(expected), std::string::npos)
            << "byte " << b << " at " << at << " of " << len << ": " << line;
      }
    }
  }
}

TEST(AccessLog, AnonymiserHandlesEdgeAddressesAndNull) {
  EXPECT_EQ(anonymize("0.0.0.0", conf::AddressAnonymization::kTruncate), "0.0.0.0");
  EXPECT_EQ(anonymize("255.255.255.255", conf::AddressAnonymization::kTruncate), "255.255.255.0");
  EXPECT_EQ(anonymize("::1", conf::AddressAnonymization::kTruncate), "::");
  EXPECT_EQ(anonymize("2001:db8:abcd:ffff:ffff:ffff:ffff:ffff", conf::AddressAnonymization::kTruncate),
            "2001:db8:abcd::");
  EXPECT_EQ(anonymize("2001:db8::1", conf::AddressAnonymization::kFull), "2001:db8::1");
  EXPECT_EQ(anonymize("2001:db8::1", conf::AddressAnonymization::kNone), "-");
  std::string out = "stale";
  anonymizeAddress(nullptr, conf::AddressAnonymization::kFull, out);
  EXPECT_EQ(out, "-");
}

// --- the writer thread: real files in a temp dir --------------------------------------------

using namespace std::chrono_literals;

std::vector<std::string> linesOf(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(AccessLogWriter, LinesOfEachWorkerKeepTheirOrderAndNoneIsLost) {
  testsupport::TempDir dir("se-access-log");
  const std::string path = dir.file("access.log");
  AccessLog log(path);
  ASSERT_TRUE(log.open());
  constexpr int kWorkers = 4;
  constexpr int kBatches = 200;
  constexpr int kLinesPerBatch = 25;
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&log, w] {
      std::string batch;
      int seq = 0;
      for (int b = 0; b < kBatches; ++b) {
        batch.clear();
        for (int l = 0; l < kLinesPerBatch; ++l) {
          batch += "w" + std::to_string(w) + " " + std::to_string(seq++) + "\n";
        }
        log.append(batch);
      }
    });
  }
  for (std::thread& t : workers) t.join();
  log.flush();
  std::map<int, int> next;  // worker → next expected sequence number
  const std::vector<std::string> lines = linesOf(testsupport::readFile(path));
  ASSERT_EQ(lines.size(), static_cast<size_t>(kWorkers * kBatches * kLinesPerBatch));
  for (const std::string& line : lines) {
    int w = -1;
    int seq = -1;
    ASSERT_EQ(std::sscanf(line.c_str(), "w%d %d", &w, &seq), 2) << line;
    ASSERT_EQ(seq, next[w]) << "worker " << w;
    next[w] = seq + 1;
  }
  EXPECT_EQ(log.droppedLines(), 0u);
}

TEST(AccessLogWriter, ALineAppearsWithoutFlushAtLowTraffic) {
  testsupport::TempDir dir("se-access-log");
  const std::string path = dir.file("access.log");
  AccessLog log(path);
  ASSERT_TRUE(log.open());
  log.append("lonely\n");
  std::string text;
  for (int i = 0; i < 100 && text.empty(); ++i) {
    std::this_thread::sleep_for(10ms);
    text = testsupport::readFile(path);
  }
  EXPECT_EQ(text, "lonely\n");
}

TEST(AccessLogWriter, ReopenSendsLaterLinesToTheNewFileAndEarlierOnesToTheRotatedOne) {
  testsupport::TempDir dir("se-access-log");
  const std::string path = dir.file("access.log");
  const std::string rotated = dir.file("access.log.1");
  AccessLog log(path);
  ASSERT_TRUE(log.open());
  log.append("before 1\n");
  log.flush();
  // logrotate: rename, then SIGUSR1. A batch appended after the rename but before the reopen
  // still belongs to the old file.
  ASSERT_EQ(std::rename(path.c_str(), rotated.c_str()), 0);
  log.append("before 2\n");
  log.reopen();
  log.append("after\n");
  log.flush();
  EXPECT_EQ(testsupport::readFile(rotated), "before 1\nbefore 2\n");
  EXPECT_EQ(testsupport::readFile(path), "after\n");
  struct stat st{};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
}

TEST(AccessLogWriter, AFailedReopenKeepsWritingToTheOldFile) {
  testsupport::TempDir dir("se-access-log");
  const std::string sub = dir.file("logs");
  ASSERT_EQ(::mkdir(sub.c_str(), 0700), 0);
  const std::string path = sub + "/access.log";
  const std::string moved = dir.file("access.log.old");
  AccessLog log(path);
  ASSERT_TRUE(log.open());
  ASSERT_EQ(std::rename(path.c_str(), moved.c_str()), 0);
  ASSERT_EQ(::rmdir(sub.c_str()), 0);  // the path cannot be created again
  log.reopen();
  log.append("kept\n");
  log.flush();
  EXPECT_EQ(testsupport::readFile(moved), "kept\n");
  EXPECT_EQ(log.droppedLines(), 0u);
}

TEST(AccessLogWriter, PastTheBoundWholeBatchesAreDroppedAndTheirLinesCounted) {
  // A FIFO nobody reads stands for a stalled disk: the writer blocks once the pipe is full.
  std::signal(SIGPIPE, SIG_IGN);  // should the test fail early: the writer gets EPIPE, not a signal
  testsupport::TempDir dir("se-access-log");
  const std::string fifo = dir.file("stalled");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  ::fcntl(reader, F_SETPIPE_SZ, 4096);
  constexpr size_t kBound = 16 << 10;
  uint64_t appended = 0;
  std::string received;
  {
    AccessLog log(fifo, kBound);
    ASSERT_TRUE(log.open());
    // Declared after `log`, so closed first if an assertion returns early: the writer then
    // fails with EPIPE instead of blocking the destructor forever.
    struct CloseReader {
      int& fd;
      ~CloseReader() {
        if (fd >= 0) ::close(fd);
        fd = -1;
      }
    } close_reader{reader};
    const std::string line(63, 'x');
    std::string batch;
    for (int l = 0; l < 16; ++l) batch += line + "\n";  // 1 KiB, 16 lines
    // The pipe fills, then the queue up to the bound; then batches drop. Stuck for sure once
    // 20 appends a millisecond apart all dropped.
    int dropped_in_a_row = 0;
    for (int i = 0; i < 5000 && dropped_in_a_row < 20; ++i) {
      const uint64_t before = log.droppedLines();
      log.append(batch);
      appended += 16;
      dropped_in_a_row = log.droppedLines() > before ? dropped_in_a_row + 1 : 0;
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_EQ(dropped_in_a_row, 20);
    EXPECT_EQ(log.droppedLines() % 16, 0u) << "batches are dropped whole";
    EXPECT_LE((appended - log.droppedLines()) * 64, kBound + 64 * 1024) << "bounded memory";
    const uint64_t before = log.droppedLines();
    for (int i = 0; i < 10; ++i) log.append(batch);
    appended += 160;
    EXPECT_EQ(log.droppedLines(), before + 160);
    // The disk comes back: everything that was not dropped arrives, whole lines only.
    const uint64_t expected = appended - log.droppedLines();
    char buf[65536];
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (static_cast<uint64_t>(std::count(received.begin(), received.end(), '\n')) < expected &&
           std::chrono::steady_clock::now() < deadline) {
      pollfd p{reader, POLLIN, 0};
      ::poll(&p, 1, 100);
      const ssize_t n = ::read(reader, buf, sizeof buf);
      if (n > 0) received.append(buf, static_cast<size_t>(n));
    }
    log.flush();
    EXPECT_EQ(static_cast<uint64_t>(std::count(received.begin(), received.end(), '\n')), expected);
    EXPECT_EQ(log.droppedLines(), appended - expected);
  }
  for (const std::string& l : linesOf(received)) ASSERT_EQ(l, std::string(63, 'x'));
}

TEST(AccessLogWriter, DestructionWritesEverythingStillQueued) {
  testsupport::TempDir dir("se-access-log");
  const std::string path = dir.file("access.log");
  {
    AccessLog log(path);
    ASSERT_TRUE(log.open());
    for (int i = 0; i < 1000; ++i) log.append("line " + std::to_string(i) + "\n");
  }  // no flush(): the destructor drains the queue
  const std::vector<std::string> lines = linesOf(testsupport::readFile(path));
  ASSERT_EQ(lines.size(), 1000u);
  EXPECT_EQ(lines.front(), "line 0");
  EXPECT_EQ(lines.back(), "line 999");
}

TEST(AccessLogWriter, OffAndUnopenedLogsWriteNothing) {
  AccessLog off("off");
  EXPECT_FALSE(off.enabled());
  EXPECT_TRUE(off.open());
  off.append("x\n");
  off.flush();
  off.reopen();
  testsupport::TempDir dir("se-access-log");
  AccessLog unopened(dir.file("never.log"));
  unopened.append("a\nb\n");  // before open(): nowhere to go, counted
  unopened.flush();
  EXPECT_EQ(unopened.droppedLines(), 2u);
  EXPECT_EQ(::access(dir.file("never.log").c_str(), F_OK), -1);
  AccessLog bad(dir.file("no/such/dir/access.log"));
  EXPECT_FALSE(bad.open());
}

}  // namespace
}  // namespace streamedge::proxy

// Hot upgrade helpers: which binary a SIGUSR2 starts (the path as started, never the deleted
// file a package upgrade leaves behind), the socket list handed over in the environment,
// taking sockets by address and occurrence, the control messages, and adopting inherited
// sockets for any number of workers without closing one of them.
#include "proxy/hot_upgrade.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "proxy/listen_socket.h"
#include "tests/support/process.h"

namespace streamedge::proxy {
namespace {

using namespace std::chrono_literals;

TEST(StartedExecutable, AnAbsolutePathIsKeptAsGiven) {
  EXPECT_EQ(startedExecutable("/usr/sbin/streamedge", "/", "/bin"), "/usr/sbin/streamedge");
}

TEST(StartedExecutable, ARelativePathIsMadeAbsoluteAgainstTheDirectoryAtStart) {
  EXPECT_EQ(startedExecutable("build/release/streamedge", "/src/se", ""),
            "/src/se/build/release/streamedge");
  EXPECT_EQ(startedExecutable("./streamedge", "/opt/se/", ""), "/opt/se/streamedge");
}

TEST(StartedExecutable, ABareNameIsLookedUpInPathLikeTheShellDid) {
  testsupport::TempDir dir("hot-upgrade");
  const std::string bin = dir.file("bin");
  ASSERT_EQ(::mkdir(bin.c_str(), 0755), 0);
  const std::string exe = bin + "/streamedge-test-exe";
  ASSERT_TRUE(testsupport::writeFile(exe, "#!/bin/sh\nexit 0\n"));
  ASSERT_EQ(::chmod(exe.c_str(), 0755), 0);
  EXPECT_EQ(startedExecutable("streamedge-test-exe", "/", "/nonexistent:" + bin), exe);
  EXPECT_EQ(startedExecutable("streamedge-test-exe", "/", "/nonexistent"), "");
  EXPECT_EQ(startedExecutable("", "/", bin), "");
}

// After a package upgrade the running binary's file is replaced: /proc/self/exe then names the
// deleted old file, while the path as started names the new one.
TEST(StartedExecutable, FollowsTheFileAtThePathNotTheRunningInode) {
  testsupport::TempDir dir("hot-upgrade");
  const std::string exe = dir.file("streamedge");
  ASSERT_TRUE(testsupport::writeFile(exe, "#!/bin/sh\necho old\n"));
  ASSERT_EQ(::chmod(exe.c_str(), 0755), 0);
  const std::string started = startedExecutable(exe.c_str());
  // A package manager installs a new file and renames it over the old one.
  ASSERT_TRUE(testsupport::writeFile(exe + ".new", "#!/bin/sh\necho new\n"));
  ASSERT_EQ(::chmod((exe + ".new").c_str(), 0755), 0);
  ASSERT_EQ(::rename((exe + ".new").c_str(), exe.c_str()), 0);
  EXPECT_EQ(started, exe);
  EXPECT_EQ(testsupport::readFile(started), "#!/bin/sh\necho new\n");
}

TEST(SocketGroups, RoundTripInConfigOrder) {
  const std::vector<SocketGroup> groups{{"127.0.0.1:0", {5, 6}}, {"[::1]:8443", {7, 8}},
                                        {"127.0.0.1:0", {9}}};
  const std::string text = formatSocketGroups(groups);
  EXPECT_EQ(text, "127.0.0.1:0=5,6;[::1]:8443=7,8;127.0.0.1:0=9");
  std::vector<SocketGroup> back;
  std::string why;
  ASSERT_TRUE(parseSocketGroups(text, back, &why)) << why;
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[1].key, "[::1]:8443");
  EXPECT_EQ(back[1].fds, (std::vector<int>{7, 8}));
  EXPECT_EQ(back[2].fds, (std::vector<int>{9}));
}

TEST(SocketGroups, AnythingMalformedUsesNoGroupAtAll) {
  std::vector<SocketGroup> out;
  for (const char* bad : {"127.0.0.1:80", "=5", "127.0.0.1:80=", "127.0.0.1:80=5,", "a=5;b=x",
                          "a=-1", "a=99999999999"}) {
    std::string why;
    EXPECT_FALSE(parseSocketGroups(bad, out, &why)) << bad;
    EXPECT_TRUE(out.empty()) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
  EXPECT_TRUE(parseSocketGroups("", out, nullptr));
  EXPECT_TRUE(out.empty());
}

// A listening TCP socket on 127.0.0.1, port 0 (the kernel picks).
int listeningSocket() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  EXPECT_EQ(::listen(fd, 16), 0);
  return fd;
}

bool isOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(Inheritance, ARepeatedAddressIsTakenByOccurrenceAndWhatNobodyTakesIsClosed) {
  const int a1 = listeningSocket(), a2 = listeningSocket(), b = listeningSocket(),
            admin = listeningSocket();
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  {
    Inheritance in = Inheritance::forTest(
        pair[0], {{"127.0.0.1:0", {a1}}, {"127.0.0.1:0", {a2}}, {"127.0.0.2:80", {b}}},
        SocketGroup{"127.0.0.1:9901", {admin}});
    EXPECT_TRUE(in.upgrading());
    EXPECT_EQ(in.takeListener("127.0.0.1:0"), std::vector<int>{a1});
    EXPECT_EQ(in.takeListener("127.0.0.1:0"), std::vector<int>{a2});
    EXPECT_TRUE(in.takeListener("127.0.0.1:0").empty());
    EXPECT_EQ(in.takeAdmin("127.0.0.1:9902"), -1);
    EXPECT_EQ(in.closeUntaken(), (std::vector<std::string>{"127.0.0.2:80", "admin 127.0.0.1:9901"}));
    EXPECT_FALSE(isOpen(b));
    EXPECT_FALSE(isOpen(admin));
    EXPECT_TRUE(isOpen(a1));  // taken: the caller's
  }
  EXPECT_FALSE(isOpen(pair[0])) << "the control socket goes with the inheritance";
  ::close(a1);
  ::close(a2);
  ::close(pair[1]);
}

TEST(Inheritance, ReadFromTheEnvironmentKeepsOnlyListeningSocketsAndClearsTheVariables) {
  const int listening = listeningSocket();
  const int not_listening = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair), 0);  // inherited: no CLOEXEC
  const std::string groups = "127.0.0.1:0=" + std::to_string(listening) + "," +
                             std::to_string(not_listening);
  ASSERT_EQ(::setenv(kListenFdsEnv, groups.c_str(), 1), 0);
  ASSERT_EQ(::setenv(kUpgradeFdEnv, std::to_string(pair[1]).c_str(), 1), 0);
  std::vector<std::string> warnings;
  Inheritance in = Inheritance::fromEnvironment(&warnings);
  EXPECT_EQ(std::getenv(kListenFdsEnv), nullptr);
  EXPECT_EQ(std::getenv(kUpgradeFdEnv), nullptr);
  ASSERT_TRUE(in.upgrading());
  EXPECT_EQ(in.controlFd(), pair[1]);
  EXPECT_EQ(::fcntl(pair[1], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC) << "not passed on to other children";
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("not a listening socket"), std::string::npos) << warnings[0];
  EXPECT_EQ(in.takeListener("127.0.0.1:0"), std::vector<int>{listening});
  ::close(listening);
  ::close(pair[0]);
}

TEST(Inheritance, SocketsWithoutAControlSocketAreNotTaken) {
  const int listening = listeningSocket();
  ASSERT_EQ(::setenv(kListenFdsEnv, ("127.0.0.1:0=" + std::to_string(listening)).c_str(), 1), 0);
  ::unsetenv(kUpgradeFdEnv);
  Inheritance in = Inheritance::fromEnvironment(nullptr);
  EXPECT_FALSE(in.upgrading());
  EXPECT_TRUE(in.takeListener("127.0.0.1:0").empty());
  EXPECT_TRUE(isOpen(listening)) << "someone else's descriptor is left alone";
  EXPECT_EQ(std::getenv(kListenFdsEnv), nullptr);
  ::close(listening);
}

TEST(ControlMessages, EncodeAndDecode) {
  EXPECT_EQ(encodeControlMessage(UpgradeMessage::kStore), "store");
  EXPECT_EQ(encodeControlMessage(UpgradeMessage::kReady, "4242"), "ready 4242");
  const ControlMessage m = decodeControlMessage("failed test.toml:3: server.workers: bad value");
  EXPECT_EQ(m.type, UpgradeMessage::kFailed);
  EXPECT_EQ(m.detail, "test.toml:3: server.workers: bad value");
  EXPECT_EQ(decodeControlMessage("go").type, UpgradeMessage::kGo);
  EXPECT_EQ(decodeControlMessage("store-free").type, UpgradeMessage::kStoreFree);
  EXPECT_EQ(decodeControlMessage("abort timeout").type, UpgradeMessage::kAbort);
  EXPECT_EQ(decodeControlMessage("gogo").type, UpgradeMessage::kInvalid);
  EXPECT_EQ(decodeControlMessage("").type, UpgradeMessage::kInvalid);
  // A long reason is cut to one datagram, never refused.
  EXPECT_EQ(encodeControlMessage(UpgradeMessage::kFailed, std::string(10000, 'x')).size(),
            kMaxControlMessage);
}

TEST(ControlMessages, TravelOverASeqpacketPairAndEofIsReported) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  ASSERT_TRUE(sendControlMessage(pair[0], UpgradeMessage::kStore));
  ASSERT_TRUE(sendControlMessage(pair[0], UpgradeMessage::kReady, "77"));
  std::string why;
  auto first = receiveControlMessage(pair[1], 1s, &why);
  ASSERT_TRUE(first) << why;
  EXPECT_EQ(first->type, UpgradeMessage::kStore);
  auto second = receiveControlMessage(pair[1], 1s, &why);
  ASSERT_TRUE(second) << why;
  EXPECT_EQ(second->detail, "77");
  const auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(receiveControlMessage(pair[1], 100ms, &why));
  EXPECT_NE(why.find("no answer within"), std::string::npos) << why;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  ::close(pair[0]);
  EXPECT_FALSE(receiveControlMessage(pair[1], 1s, &why));
  EXPECT_NE(why.find("closed"), std::string::npos) << why;
  EXPECT_FALSE(sendControlMessage(pair[1], UpgradeMessage::kGo));
  ::close(pair[1]);
}

TEST(SpawnProcess, InheritsExactlyTheNamedDescriptors) {
  testsupport::TempDir dir("hot-upgrade");
  const int named = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const int other = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const std::string out = dir.file("fds");
  const std::string script = "[ -e /proc/self/fd/" + std::to_string(named) + " ] && echo named; [ -e /proc/self/fd/" +
                             std::to_string(other) + " ] && echo other; echo \"$HOT_UPGRADE_TEST\"";
  std::string why;
  const pid_t pid = spawnProcess("/bin/sh", {"sh", "-c", "{ " + script + "; } > " + out},
                                 {"HOT_UPGRADE_TEST=passed on"}, {named}, &why);
  ASSERT_GT(pid, 0) << why;
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(describeExit(status), "exited with status 0");
  EXPECT_EQ(testsupport::readFile(out), "named\npassed on\n");
  EXPECT_EQ(::fcntl(named, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC) << "the parent's stays close-on-exec";
  ::close(named);
  ::close(other);
}

TEST(SpawnProcess, AMissingBinaryIsReportedAtOnce) {
  std::string why;
  EXPECT_EQ(spawnProcess("/nonexistent/streamedge", {"streamedge"}, {}, {}, &why), -1);
  EXPECT_NE(why.find("No such file"), std::string::npos) << why;
}

TEST(DescribeExit, SaysHowTheProcessEnded) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(pid, 0);
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_NE(describeExit(status).find("killed by signal 9"), std::string::npos) << describeExit(status);
}

uint16_t portOf(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

TEST(AdoptListenSockets, MoreWorkersThanSocketsShareThemThroughDuplicates) {
  const int s0 = listeningSocket();
  const int s1 = listeningSocket();
  BoundSockets bound;
  std::string why;
  ASSERT_TRUE(adoptListenSockets({s0, s1}, 64, 4, bound, &why)) << why;
  ASSERT_EQ(bound.fds.size(), 4u);
  EXPECT_EQ(bound.fds[0], s0);
  EXPECT_EQ(bound.fds[1], s1);
  EXPECT_EQ(portOf(bound.fds[2]), portOf(s0));  // worker 2 shares socket 0
  EXPECT_EQ(portOf(bound.fds[3]), portOf(s1));
  EXPECT_EQ(bound.bound, "127.0.0.1:" + std::to_string(portOf(s0)));
  for (int w = 0; w < 4; ++w) EXPECT_EQ(socketsOfWorker(bound.fds, 4, w).size(), 1u);
  closeSockets(bound.fds);
}

TEST(AdoptListenSockets, FewerWorkersKeepEverySocketOpen) {
  const int s0 = listeningSocket(), s1 = listeningSocket(), s2 = listeningSocket();
  BoundSockets bound;
  std::string why;
  ASSERT_TRUE(adoptListenSockets({s0, s1, s2}, 64, 2, bound, &why)) << why;
  EXPECT_EQ(socketsOfWorker(bound.fds, 2, 0), (std::vector<int>{s0, s2}));
  EXPECT_EQ(socketsOfWorker(bound.fds, 2, 1), (std::vector<int>{s1}));
  for (int fd : {s0, s1, s2}) EXPECT_TRUE(isOpen(fd));
  closeSockets(bound.fds);
}

}  // namespace
}  // namespace streamedge::proxy

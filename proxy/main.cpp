// streamedge: edge caching proxy for HLS and DASH.
//   streamedge [-c FILE]      run (no -c: the embedded default config)
//   streamedge -t [-c FILE]   check a config and exit 0 (valid) or 1 (errors, with file:line)
//   streamedge token ...      mint a signed-URL token (proxy/token_command.h)
#include <event2/thread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "conf/config_loader.h"
#include "proxy/admin_auth.h"
#include "proxy/hot_upgrade.h"
#include "proxy/server.h"
#include "proxy/token_command.h"
#include "tls/self_signed.h"
#include "tls/tls_state.h"

namespace {

void printHelp() {
  std::printf(
      "streamedge %s — edge caching proxy for HLS and DASH video\n"
      "\n"
      "usage:\n"
      "  streamedge [-c FILE]        run with the config FILE (TOML); without -c the embedded\n"
      "                              default config runs (HTTP on 127.0.0.1:8080, HTTPS on\n"
      "                              127.0.0.1:8443 with a self-signed certificate generated in\n"
      "                              ./certs/ at first start, admin on 127.0.0.1:9901, origin\n"
      "                              http://127.0.0.1:8081)\n"
      "  streamedge -t [-c FILE]     check the config and exit: 0 valid, 1 invalid (errors as\n"
      "                              file:line: key: message)\n"
      "  streamedge token --key-file FILE --prefix PATH --ttl SECONDS [--key-id ID]\n"
      "                  [--client ADDR]\n"
      "                              print a signed-URL token for a route with token_auth\n"
      "                              (streamedge token --help)\n"
      "  streamedge --print-default-config\n"
      "                              print the embedded default config and exit\n"
      "  streamedge hash-token       read an admin bearer token on stdin (one line) and print\n"
      "                              its SHA-256 for [[admin.token]] sha256\n"
      "  streamedge --version | --help\n"
      "\n"
      "protocols: HTTP/1.1 on every listener; HTTP/2 (ALPN h2, preferred) on TLS listeners with\n"
      "[[listener]] http2 = true (the default), limits in [server] http2_max_concurrent_streams,\n"
      "http2_stream_window and http2_connection_window; flood limits (GOAWAY ENHANCE_YOUR_CALM)\n"
      "in http2_abuse_interval, http2_max_resets, http2_max_settings, http2_max_pings,\n"
      "http2_max_priority, http2_max_window_updates, http2_max_empty_data,\n"
      "http2_max_continuations, http2_max_header_block and http2_zero_window_timeout.\n"
      "\n"
      "signals: SIGHUP reloads the config (an invalid one changes nothing; listeners it adds are\n"
      "bound, removed ones stop accepting and drain, kept ones keep their sockets), SIGTERM/SIGINT\n"
      "stop gracefully (in-flight responses get [server] drain_timeout), SIGUSR1 reopens the\n"
      "access, security and audit logs and deletes rotated access/security logs older than\n"
      "[privacy] log_retention (also at start and hourly), SIGUSR2 upgrades the binary in place:\n"
      "it starts the binary it was started from (argv[0]; or [server] upgrade_binary) with the\n"
      "same arguments, hands it the listening sockets and the SSD store (sealed, with its\n"
      "checkpoint), and once the new process is ready stops accepting, drains and exits; a new\n"
      "process that fails its config or is not ready within [server] upgrade_timeout is stopped\n"
      "and this one serves on.\n"
      "cluster: [cluster] peers (every peer's viewer listener, this one included) and\n"
      "secret_file make the edges of a site one cache: a miss on a non-owner is fetched from the\n"
      "key's owner peer (signed Streamedge-Peer request, never forwarded again); mode =\n"
      "\"stay-small\" (default) or \"replicate-hot\"; a failed peer is skipped until its health\n"
      "check (GET /.well-known/streamedge/peer-health) passes.\n"
      "privacy: [privacy] client_address (log anonymisation) and log_retention; [[vhost]]\n"
      "retention keeps no object of the vhost longer than that after its fetch (both tiers).\n"
      "systemd: with NOTIFY_SOCKET set (Type=notify) it reports READY=1 once serving, RELOADING=1\n"
      "and READY=1 around a reload, STOPPING=1, STATUS= lines, WATCHDOG=1 pings while every\n"
      "worker loop runs, and MAINPID= from the new process after a hot upgrade (NotifyAccess=all).\n"
      "Started as root with [server] user set, it switches to that user after binding its\n"
      "listeners and opening the SSD store and keys. See streamedge(8).\n"
      "admin listener: /healthz /readyz (open), /status /metrics, POST /purge?url=URL,\n"
      "?host=HOST&prefix=PATH, ?tag=KEY, ?host=HOST (+ &soft=1); bearer tokens with scopes\n"
      "([[admin.token]]), refusals and purges in the audit log ([log] audit); TLS with\n"
      "[[admin.certificate]], client certificates required with [admin] client_ca; a hard\n"
      "?host= purge also destroys the vhost's SSD data key ([cache.ssd] keyring)\n",
      STREAMEDGE_VERSION);
}

// The embedded default serves HTTPS with a self-signed certificate made at first start, so that
// a newcomer sees TLS working at once (the path is relative to the working directory).
constexpr const char* kSelfSignedCert = "certs/streamedge-selfsigned.pem";
constexpr const char* kSelfSignedKey = "certs/streamedge-selfsigned.key";

bool ensureSelfSignedCertificate() {
  if (::access(kSelfSignedCert, R_OK) == 0 && ::access(kSelfSignedKey, R_OK) == 0) return true;
  ::mkdir("certs", 0700);
  streamedge::tls::CertificateSpec spec;
  spec.common_name = "streamedge self-signed (localhost)";
  spec.dns_names = {"localhost"};
  spec.ip_addresses = {"127.0.0.1", "::1"};
  spec.valid_until_seconds = 365L * 86400;
  streamedge::tls::GeneratedCertificate g = streamedge::tls::generateCertificate(spec);
  std::string error = g.error;
  if (error.empty()) error = streamedge::tls::writePem(kSelfSignedCert, kSelfSignedKey, g.cert.get(), g.key.get());
  if (!error.empty()) {
    std::fprintf(stderr,
                 "streamedge: cannot create the self-signed certificate for the default config "
                 "(%s); run from a writable directory or use -c with your own certificate\n",
                 error.c_str());
    return false;
  }
  char cwd[4096] = ".";
  if (!::getcwd(cwd, sizeof cwd)) std::strcpy(cwd, ".");
  std::fprintf(stderr,
               "streamedge: generated a self-signed certificate for localhost, 127.0.0.1 and ::1 "
               "(EC P-256, 1 year): %s/%s with key %s/%s; clients must trust it explicitly "
               "(curl --cacert %s/%s)\n",
               cwd, kSelfSignedCert, cwd, kSelfSignedKey, cwd, kSelfSignedCert);
  return true;
}

// streamedge hash-token: the SHA-256 (hex) of the token on stdin, for [[admin.token]] sha256.
// The token is read from stdin, never from the command line (which other users and the shell
// history can see). One line; its line ending is not part of the token.
int hashTokenCommand() {
  std::string token;
  int c = 0;
  while ((c = std::getchar()) != EOF && c != '\n') {
    token += static_cast<char>(c);
    if (token.size() > 4096) {
      std::fprintf(stderr, "streamedge: hash-token: the token is longer than 4096 bytes\n");
      return 1;
    }
  }
  if (!token.empty() && token.back() == '\r') token.pop_back();
  if (token.empty()) {
    std::fprintf(stderr, "streamedge: hash-token: no token on stdin (e.g. "
                         "`openssl rand -hex 32 | tee token.txt | streamedge hash-token`)\n");
    return 1;
  }
  for (unsigned char ch : token) {
    if (ch <= 0x20 || ch == 0x7F) {
      std::fprintf(stderr, "streamedge: hash-token: a bearer token has no spaces or control "
                           "characters\n");
      return 1;
    }
  }
  const std::string hex = streamedge::proxy::hashAdminToken(token);
  if (hex.empty()) {
    std::fprintf(stderr, "streamedge: hash-token: SHA-256 failed\n");
    return 1;
  }
  std::printf("%s\n", hex.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "hash-token") == 0) return hashTokenCommand();
  if (argc >= 2 && std::strcmp(argv[1], "token") == 0) {
    return streamedge::proxy::runTokenCommand(argc - 2, argv + 2);
  }
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    if (std::strcmp(arg, "-c") == 0 || std::strcmp(arg, "--config") == 0) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "streamedge: %s needs a file\n", arg);
        return 1;
      }
      config_path = argv[++i];
    } else if (std::strcmp(arg, "-t") == 0 || std::strcmp(arg, "--check") == 0) {
      check_only = true;
    } else if (std::strcmp(arg, "-h") == 0 || std::strcmp(arg, "--help") == 0) {
      printHelp();
      return 0;
    } else if (std::strcmp(arg, "-v") == 0 || std::strcmp(arg, "--version") == 0) {
      std::printf("streamedge %s (%s)\n", STREAMEDGE_VERSION, STREAMEDGE_GIT_COMMIT);
      return 0;
    } else if (std::strcmp(arg, "--print-default-config") == 0) {
      std::fwrite(streamedge::conf::defaultConfigText().data(), 1,
                  streamedge::conf::defaultConfigText().size(), stdout);
      return 0;
    } else {
      std::fprintf(stderr, "streamedge: unknown argument %s (see --help)\n", arg);
      return 1;
    }
  }

  // Started by a hot upgrade (SIGUSR2 to the running process): its sockets and control socket.
  // Read (and removed from the environment) before any thread exists.
  std::vector<std::string> inherit_warnings;
  streamedge::proxy::Inheritance inherited =
      check_only ? streamedge::proxy::Inheritance()
                 : streamedge::proxy::Inheritance::fromEnvironment(&inherit_warnings);
  for (const std::string& warning : inherit_warnings) {
    std::fprintf(stderr, "streamedge: warning: %s\n", warning.c_str());
  }
  // A start that fails before the server runs tells the old process why (it keeps serving).
  auto tellOldProcess = [&](const std::string& why) {
    if (inherited.upgrading()) {
      streamedge::proxy::sendControlMessage(inherited.controlFd(),
                                            streamedge::proxy::UpgradeMessage::kFailed, why);
    }
  };

  streamedge::conf::LoadResult loaded =
      config_path.empty()
          ? streamedge::conf::loadConfigText(streamedge::conf::defaultConfigText(),
                                             "<embedded default>")
          : streamedge::conf::loadConfigFile(config_path);
  for (const std::string& warning : loaded.warnings) {
    std::fprintf(stderr, "streamedge: warning: %s\n", warning.c_str());
  }
  if (!loaded.ok()) {
    for (const auto& error : loaded.errors) std::fprintf(stderr, "%s\n", error.toString().c_str());
    std::fprintf(stderr, "streamedge: %zu error(s) in %s\n", loaded.errors.size(),
                 config_path.empty() ? "<embedded default>" : config_path.c_str());
    tellOldProcess("the config is invalid: " + loaded.errors.front().toString() +
                   (loaded.errors.size() > 1
                        ? " (and " + std::to_string(loaded.errors.size() - 1) + " more errors)"
                        : std::string()));
    return 1;
  }
  const bool embedded = config_path.empty();
  if (embedded && !check_only && !ensureSelfSignedCertificate()) {
    tellOldProcess("cannot create the self-signed certificate of the embedded default config");
    return 1;
  }
  if (check_only) {
    // Certificates, keys and CA files are part of the config: open and check them too.
    if (embedded && ::access(kSelfSignedCert, R_OK) != 0) {
      std::printf("streamedge: note: %s does not exist yet; it is generated at first start\n",
                  kSelfSignedCert);
    } else {
      streamedge::tls::TlsState::Build tls =
          streamedge::tls::TlsState::build(*loaded.config, nullptr, std::time(nullptr));
      for (const std::string& w : tls.warnings) {
        std::fprintf(stderr, "streamedge: warning: %s\n", w.c_str());
      }
      if (!tls.ok()) {
        for (const std::string& e : tls.errors) std::fprintf(stderr, "%s: %s\n", loaded.config->source.c_str(), e.c_str());
        std::fprintf(stderr, "streamedge: %zu error(s) in %s\n", tls.errors.size(),
                     loaded.config->source.c_str());
        return 1;
      }
    }
    std::printf("streamedge: %s is valid\n",
                config_path.empty() ? "<embedded default>" : config_path.c_str());
    return 0;
  }

  setvbuf(stdout, nullptr, _IOLBF, 0);
  evthread_use_pthreads();
  streamedge::proxy::LaunchInfo launch;
  launch.executable = streamedge::proxy::startedExecutable(argv[0]);
  for (int i = 1; i < argc; ++i) launch.args.emplace_back(argv[i]);
  launch.inherited = std::move(inherited);
  streamedge::proxy::Server server(loaded.config, config_path, std::move(launch));
  return server.run();
}

// A blocking TLS client for scenario tests: one connection (SNI "localhost", no verification)
// over which several GETs go, so that a test can show which certificate a handshake got and
// that a connection opened before a reload still works after it.
//
// Thread-safety: one thread at a time. Ownership: owns its socket, SSL and SSL_CTX.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <string>

namespace streamedge::testsupport {

class TlsKeepAliveClient {
 public:
  TlsKeepAliveClient() = default;
  ~TlsKeepAliveClient();
  TlsKeepAliveClient(const TlsKeepAliveClient&) = delete;
  TlsKeepAliveClient& operator=(const TlsKeepAliveClient&) = delete;

  // Connects to 127.0.0.1:port and handshakes (reads time out after 10 s). False on failure.
  // `cert_file`/`key_file` (PEM, optional): a client certificate to present when asked.
  // `host`: another loopback address (IPv4) to connect to.
  bool connect(uint16_t port, const std::string& cert_file = "", const std::string& key_file = "",
               const std::string& host = "127.0.0.1");
  // The served certificate's subject ("/CN=name"), "" before a handshake.
  std::string subject() const;
  // One GET; returns the status line ("" when the connection broke). The answer must carry a
  // Content-Length.
  std::string get(const std::string& target);
  // One request with `extra_headers` (each line ending in \r\n); returns the status line
  // ("" when the connection broke) and keeps the whole answer for response().
  std::string request(const std::string& method, const std::string& target,
                      const std::string& extra_headers = "");
  // The last complete answer (head and body).
  const std::string& response() const { return response_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  std::string response_;
};

}  // namespace streamedge::testsupport

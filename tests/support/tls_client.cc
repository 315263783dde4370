#include "tests/support/tls_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

namespace streamedge::testsupport {

bool TlsKeepAliveClient::connect(uint16_t port, const std::string& cert_file,
                                 const std::string& key_file, const std::string& host) {
  ctx_ = SSL_CTX_new(TLS_client_method());
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (!ctx_ || fd_ < 0) return false;
  if (!cert_file.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx_, cert_file.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
    return false;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) return false;
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return false;
  timeval tv{10, 0};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssl_ = SSL_new(ctx_);
  SSL_set_tlsext_host_name(ssl_, "localhost");
  SSL_set_fd(ssl_, fd_);
  return SSL_connect(ssl_) == 1;
}

std::string TlsKeepAliveClient::subject() const {
  X509* peer = ssl_ ? SSL_get0_peer_certificate(ssl_) : nullptr;
  if (!peer) return "";
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(peer), buf, sizeof buf);
  return buf;
}

std::string TlsKeepAliveClient::get(const std::string& target) { return request("GET", target); }

std::string TlsKeepAliveClient::request(const std::string& method, const std::string& target,
                                        const std::string& extra_headers) {
  response_.clear();
  if (!ssl_) return "";
  const std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n" +
                          extra_headers + (method == "POST" ? "Content-Length: 0\r\n" : "") +
                          "\r\n";
  if (SSL_write(ssl_, req.data(), static_cast<int>(req.size())) <= 0) return "";
  std::string data;
  char buf[16384];
  for (;;) {
    const size_t head_end = data.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      const size_t cl = data.find("Content-Length: ");
      if (cl != std::string::npos && cl < head_end) {
        const size_t len = std::stoul(data.substr(cl + 16));
        if (data.size() >= head_end + 4 + len) {
          response_ = data.substr(0, head_end + 4 + len);
          return data.substr(0, data.find("\r\n"));
        }
      }
    }
    const int n = SSL_read(ssl_, buf, sizeof buf);
    if (n <= 0) return "";
    data.append(buf, static_cast<size_t>(n));
  }
}

TlsKeepAliveClient::~TlsKeepAliveClient() {
  if (ssl_) SSL_free(ssl_);
  if (ctx_) SSL_CTX_free(ctx_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace streamedge::testsupport

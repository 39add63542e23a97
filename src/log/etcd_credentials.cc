#include "log/etcd_credentials.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace k8shmir {

namespace {

// A file of the TLS options, named in errors by its role and the flag that sets it (the proxy is
// the main user; the flag tells the operator what to fix).
struct TlsFile {
  const char* role;
  const char* flag;
  const std::string& path;
};

Error FileError(const TlsFile& file, const std::string& why) {
  return Error{ErrorCode::kInvalid, std::string("etcd TLS: ") + file.role + " (" + file.flag +
                                        ") '" + file.path + "': " + why};
}

// The whole file. gRPC itself would accept garbage here and only fail every handshake later, with
// an error that does not name the file; hence the checks for emptiness and a PEM block.
Result<std::string> ReadPemFile(const TlsFile& file) {
  int fd = ::open(file.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return FileError(file, std::strerror(errno));
  std::string content;
  char buf[16 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;  // close() may overwrite it
      ::close(fd);
      return FileError(file, std::strerror(err));
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
    // Certificates and keys are a few KiB; a CA bundle a few hundred. Anything far larger is a
    // wrong path (a device, a log), not worth reading to the end.
    if (content.size() > (16u << 20)) {
      ::close(fd);
      return FileError(file, "larger than 16 MiB, not a PEM file");
    }
  }
  ::close(fd);
  if (content.empty()) return FileError(file, "the file is empty");
  if (content.find("-----BEGIN ") == std::string::npos) {
    return FileError(file, "no PEM block (-----BEGIN ...) in the file");
  }
  return content;
}

TlsFile CaFile(const EtcdTlsOptions& tls) { return {"CA file", "--etcd-ca-file", tls.ca_file}; }
TlsFile CertFile(const EtcdTlsOptions& tls) {
  return {"client certificate", "--etcd-cert-file", tls.cert_file};
}
TlsFile KeyFile(const EtcdTlsOptions& tls) {
  return {"client key", "--etcd-key-file", tls.key_file};
}

}  // namespace

bool EtcdTlsEnabled(const EtcdTlsOptions& tls) {
  return !tls.ca_file.empty() || !tls.cert_file.empty();
}

Status ValidateEtcdTlsOptions(const std::vector<std::string>& endpoints,
                              const EtcdTlsOptions& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return Error{ErrorCode::kInvalid,
                 "etcd TLS: --etcd-cert-file and --etcd-key-file must be given together"};
  }
  const bool enabled = EtcdTlsEnabled(tls);
  if (!enabled && !tls.server_name.empty()) {
    return Error{ErrorCode::kInvalid,
                 "etcd TLS: --etcd-server-name needs TLS (--etcd-ca-file or --etcd-cert-file)"};
  }
  if (!enabled) {
    for (const auto& endpoint : endpoints) {
      if (std::string_view(endpoint).substr(0, 8) == "https://") {
        return Error{ErrorCode::kInvalid,
                     "etcd endpoint '" + endpoint +
                         "': an https endpoint needs --etcd-ca-file (or --etcd-cert-file and "
                         "--etcd-key-file with the system's trusted roots)"};
      }
    }
    return OkStatus();
  }
  for (const TlsFile& file : {CaFile(tls), CertFile(tls), KeyFile(tls)}) {
    if (file.path.empty()) continue;
    auto content = ReadPemFile(file);
    if (!content) return content.error();
  }
  return OkStatus();
}

Result<std::shared_ptr<grpc::ChannelCredentials>> MakeEtcdChannelCredentials(
    const EtcdTlsOptions& tls) {
  if (!EtcdTlsEnabled(tls)) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  // Left empty, pem_root_certs means gRPC's default roots (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, else
  // the system's CA bundle, else gRPC's bundled roots).
  if (!tls.ca_file.empty()) {
    auto ca = ReadPemFile(CaFile(tls));
    if (!ca) return ca.error();
    ssl.pem_root_certs = std::move(*ca);
  }
  if (!tls.cert_file.empty() || !tls.key_file.empty()) {
    auto cert = ReadPemFile(CertFile(tls));
    if (!cert) return cert.error();
    auto key = ReadPemFile(KeyFile(tls));
    if (!key) return key.error();
    ssl.pem_cert_chain = std::move(*cert);
    ssl.pem_private_key = std::move(*key);
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace k8shmir

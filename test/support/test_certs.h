// Throwaway certificates for TLS tests, made with the openssl CLI (EC P-256, valid for 2 days) in
// a fresh temporary directory.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace k8shmir::testing {

struct CertPair {
  std::filesystem::path cert;  // PEM certificate
  std::filesystem::path key;   // PEM private key (PKCS#8, unencrypted)
};

class TestCerts {
 public:
  // Generates everything below. Throws std::runtime_error naming the openssl command and its
  // output when one fails.
  TestCerts();
  ~TestCerts();  // removes the directory
  TestCerts(const TestCerts&) = delete;
  TestCerts& operator=(const TestCerts&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  // The CA that signed every pair below.
  const std::filesystem::path& ca() const { return ca_.cert; }
  // Another CA, which signed nothing here: trusting it instead of ca() must fail verification.
  const std::filesystem::path& other_ca() const { return other_ca_.cert; }
  // SAN IP:127.0.0.1, DNS:localhost, DNS:etcd.test; usable as server and client certificate
  // (etcd's own gateway connects to itself with it).
  const CertPair& server() const { return server_; }
  // Only SAN DNS:etcd.test: connecting to 127.0.0.1 verifies only with a server name override.
  const CertPair& named_server() const { return named_server_; }
  // A client certificate (extendedKeyUsage clientAuth), CN k8shmir-test-client.
  const CertPair& client() const { return client_; }

  // A new pair signed by ca(): `san` as openssl writes it ("DNS:a,IP:127.0.0.1"), `usage` an
  // extendedKeyUsage value ("serverAuth", "clientAuth", "serverAuth,clientAuth").
  CertPair Issue(const std::string& name, const std::string& san, const std::string& usage);

 private:
  CertPair MakeCa(const std::string& name);
  // Runs openssl with `args`; throws with its output on failure.
  void OpenSsl(const std::vector<std::string>& args);

  std::filesystem::path dir_;
  int serial_ = 1;
  CertPair ca_, other_ca_, server_, named_server_, client_;
};

}  // namespace k8shmir::testing

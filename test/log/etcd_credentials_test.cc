// Unit tests of the TLS options of the etcd log: validation and credentials, with files that look
// like PEM (nothing here parses certificates; the integration test etcd_tls_test does handshakes).
#include "log/etcd_credentials.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace k8shmir {
namespace {

namespace fs = std::filesystem;

class EtcdCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "k8shmir-creds-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    ca_ = Write("ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    cert_ = Write("tls.crt", "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n");
    key_ = Write("tls.key", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  std::string Write(const std::string& name, const std::string& content) {
    const fs::path path = dir_ / name;
    std::ofstream(path) << content;
    return path.string();
  }

  // The error message of ValidateEtcdTlsOptions, "" when it accepts.
  std::string Check(const EtcdTlsOptions& tls,
                    std::vector<std::string> endpoints = {"127.0.0.1:2379"}) {
    Status s = ValidateEtcdTlsOptions(endpoints, tls);
    if (s) return "";
    EXPECT_EQ(s.error().code, ErrorCode::kInvalid);
    return s.error().message;
  }

  fs::path dir_;
  std::string ca_, cert_, key_;
};

TEST_F(EtcdCredentialsTest, TlsIsOnWithACaOrAClientCertificate) {
  EXPECT_FALSE(EtcdTlsEnabled({}));
  EXPECT_TRUE(EtcdTlsEnabled({ca_, "", "", ""}));
  EXPECT_TRUE(EtcdTlsEnabled({"", cert_, key_, ""}));
  EXPECT_FALSE(EtcdTlsEnabled({"", "", "", "etcd.test"}));
}

TEST_F(EtcdCredentialsTest, AcceptsEveryCompleteCombination) {
  EXPECT_EQ(Check({}), "");
  EXPECT_EQ(Check({ca_, "", "", ""}), "");
  EXPECT_EQ(Check({ca_, cert_, key_, ""}), "");
  // A client certificate without a CA file: the system's trusted roots verify the server.
  EXPECT_EQ(Check({"", cert_, key_, ""}), "");
  EXPECT_EQ(Check({ca_, cert_, key_, "etcd.test"}), "");
  // With TLS, http:// and https:// both mean TLS: the options decide, not the scheme.
  EXPECT_EQ(Check({ca_, "", "", ""}, {"https://a:2379", "http://b:2379", "c:2379"}), "");
}

TEST_F(EtcdCredentialsTest, CertificateAndKeyGoTogether) {
  for (const EtcdTlsOptions& tls :
       {EtcdTlsOptions{ca_, cert_, "", ""}, EtcdTlsOptions{ca_, "", key_, ""},
        EtcdTlsOptions{"", "", key_, ""}}) {
    EXPECT_EQ(Check(tls), "etcd TLS: --etcd-cert-file and --etcd-key-file must be given together");
  }
}

TEST_F(EtcdCredentialsTest, ServerNameNeedsTls) {
  EXPECT_EQ(Check({"", "", "", "etcd.test"}),
            "etcd TLS: --etcd-server-name needs TLS (--etcd-ca-file or --etcd-cert-file)");
}

TEST_F(EtcdCredentialsTest, HttpsEndpointNeedsTls) {
  const std::string message = Check({}, {"127.0.0.1:2379", "https://etcd-1:2379"});
  EXPECT_NE(message.find("'https://etcd-1:2379'"), std::string::npos) << message;
  EXPECT_NE(message.find("an https endpoint needs --etcd-ca-file"), std::string::npos) << message;
}

TEST_F(EtcdCredentialsTest, UnusableFilesAreNamedWithTheReason) {
  const std::string missing = (dir_ / "missing.crt").string();
  EXPECT_EQ(Check({missing, "", "", ""}),
            "etcd TLS: CA file (--etcd-ca-file) '" + missing + "': No such file or directory");
  const std::string empty = Write("empty.key", "");
  EXPECT_EQ(Check({ca_, cert_, empty, ""}),
            "etcd TLS: client key (--etcd-key-file) '" + empty + "': the file is empty");
  const std::string der = Write("der.crt", std::string("\x30\x82\x01\x0a", 4));
  EXPECT_EQ(Check({ca_, der, key_, ""}), "etcd TLS: client certificate (--etcd-cert-file) '" + der +
                                             "': no PEM block (-----BEGIN ...) in the file");
  EXPECT_EQ(Check({dir_.string(), "", "", ""}),
            "etcd TLS: CA file (--etcd-ca-file) '" + dir_.string() + "': Is a directory");
  if (::geteuid() != 0) {  // root reads anything
    const std::string unreadable = Write("unreadable.crt", "-----BEGIN CERTIFICATE-----\n");
    ::chmod(unreadable.c_str(), 0);
    EXPECT_EQ(Check({unreadable, "", "", ""}),
              "etcd TLS: CA file (--etcd-ca-file) '" + unreadable + "': Permission denied");
  }
}

TEST_F(EtcdCredentialsTest, CredentialsFollowTheOptions) {
  auto insecure = MakeEtcdChannelCredentials({});
  ASSERT_TRUE(insecure.ok());
  EXPECT_NE(*insecure, nullptr);
  auto tls = MakeEtcdChannelCredentials({ca_, cert_, key_, ""});
  ASSERT_TRUE(tls.ok()) << tls.error().message;
  EXPECT_NE(*tls, nullptr);
  auto missing = MakeEtcdChannelCredentials({(dir_ / "gone.crt").string(), "", "", ""});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kInvalid);
  EXPECT_NE(missing.error().message.find("No such file or directory"), std::string::npos);
}

}  // namespace
}  // namespace k8shmir

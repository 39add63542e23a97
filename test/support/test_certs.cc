#include "support/test_certs.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "support/util.h"

extern char** environ;

namespace k8shmir::testing {
namespace {

const char* const kCurve[] = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"};

void WriteFile(const std::filesystem::path& path, const std::string& content) {
  std::ofstream out(path);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

}  // namespace

TestCerts::TestCerts() : dir_(MakeTempDir("k8shmir-certs-")) {
  try {
    ca_ = MakeCa("ca");
    other_ca_ = MakeCa("other-ca");
    server_ = Issue("server", "IP:127.0.0.1,DNS:localhost,DNS:etcd.test", "serverAuth,clientAuth");
    named_server_ = Issue("named-server", "DNS:etcd.test", "serverAuth,clientAuth");
    client_ = Issue("client", "DNS:k8shmir-test-client", "clientAuth");
  } catch (...) {
    RemoveTree(dir_);
    throw;
  }
}

TestCerts::~TestCerts() { RemoveTree(dir_); }

void TestCerts::OpenSsl(const std::vector<std::string>& args) {
  const std::filesystem::path log = dir_ / "openssl.log";
  std::vector<std::string> argv = {"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);

  // Synchronous and without the ChildProcess machinery: openssl finishes in milliseconds.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  int err = posix_spawnp(&pid, "openssl", &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  std::string command;
  for (const auto& a : argv) command += (command.empty() ? "" : " ") + a;
  if (err != 0) throw std::runtime_error(command + ": " + std::strerror(err));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(command + " failed:\n" + TailFile(log, 20));
  }
}

CertPair TestCerts::MakeCa(const std::string& name) {
  CertPair ca{dir_ / (name + ".crt"), dir_ / (name + ".key")};
  std::vector<std::string> args = {"req", "-x509"};
  args.insert(args.end(), std::begin(kCurve), std::end(kCurve));
  args.insert(args.end(),
              {"-nodes", "-keyout", ca.key.string(), "-out", ca.cert.string(), "-days", "2",
               "-subj", "/CN=k8shmir-test-" + name, "-addext", "basicConstraints=critical,CA:TRUE",
               "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  OpenSsl(args);
  return ca;
}

CertPair TestCerts::Issue(const std::string& name, const std::string& san,
                          const std::string& usage) {
  CertPair pair{dir_ / (name + ".crt"), dir_ / (name + ".key")};
  const std::filesystem::path csr = dir_ / (name + ".csr");
  const std::filesystem::path ext = dir_ / (name + ".ext");
  std::vector<std::string> args = {"req", "-new"};
  args.insert(args.end(), std::begin(kCurve), std::end(kCurve));
  args.insert(args.end(), {"-nodes", "-keyout", pair.key.string(), "-out", csr.string(), "-subj",
                           "/CN=k8shmir-test-" + name});
  OpenSsl(args);
  // Go (etcd) ignores the CN and wants the names in the SAN; the extended key usage must allow
  // the role the certificate plays.
  WriteFile(ext,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "subjectAltName=" +
                san + "\nextendedKeyUsage=" + usage + "\n");
  OpenSsl({"x509", "-req", "-in", csr.string(), "-CA", ca_.cert.string(), "-CAkey",
           ca_.key.string(), "-set_serial", std::to_string(++serial_), "-days", "2", "-out",
           pair.cert.string(), "-extfile", ext.string()});
  return pair;
}

}  // namespace k8shmir::testing

// TLS to etcd: checking EtcdTlsOptions and turning them into gRPC channel credentials. Kept out of
// etcd_log_core.cc so that the log's RPC code does not deal with files, and out of etcd_log.h so
// that the public header stays free of gRPC.
#pragma once

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>
#include <vector>

#include "k8shmir/result.h"
#include "log/etcd_log.h"

namespace k8shmir {

// True when `tls` asks for TLS: a CA file or a client certificate is set.
bool EtcdTlsEnabled(const EtcdTlsOptions& tls);

// kInvalid with the reason when `tls` cannot be used with `endpoints`: a certificate without its
// key (or the reverse), a server name without TLS, an "https://" endpoint without TLS, or a file
// that cannot be read, is empty or holds no PEM block. Reads the files, so that a bad path is
// reported at startup rather than as handshake failures later.
Status ValidateEtcdTlsOptions(const std::vector<std::string>& endpoints, const EtcdTlsOptions& tls);

// Insecure credentials when TLS is off; otherwise SSL credentials with the CA (or gRPC's default
// roots when no CA file is given) and the client key pair, if any. kInvalid naming the file and the
// reason when a file cannot be read. The server name override is a channel argument, not part of
// the credentials: see EtcdTlsOptions::server_name.
Result<std::shared_ptr<grpc::ChannelCredentials>> MakeEtcdChannelCredentials(
    const EtcdTlsOptions& tls);

}  // namespace k8shmir

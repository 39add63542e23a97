// A small synchronous etcd client for k8shmirctl: one gRPC channel per endpoint, every call with
// its own deadline, answered by that endpoint alone (the caller decides which member to ask and
// what a failure means). A CLI waits anyway; the blocking API keeps it free of callbacks.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "k8shmir/result.h"
#include "log/etcd_log.h"

namespace k8shmir::ctl {

class EtcdClient {
 public:
  // kInvalid when an endpoint or a TLS file cannot be used (the message names it).
  static Result<std::unique_ptr<EtcdClient>> Create(const std::vector<std::string>& endpoints,
                                                    const EtcdTlsOptions& tls,
                                                    std::chrono::milliseconds timeout);

  std::size_t size() const { return endpoints_.size(); }
  // As the user gave it.
  const std::string& endpoint(std::size_t i) const { return endpoints_[i]; }

  // kUnavailable with "etcd endpoint E: <gRPC status>[; hint]" on failure. Safe to call from
  // several threads at once.
  Result<etcdserverpb::StatusResponse> Status(std::size_t i) const;
  Result<etcdserverpb::MemberListResponse> MemberList(std::size_t i) const;
  Result<etcdserverpb::AlarmResponse> Alarms(std::size_t i) const;
  Result<etcdserverpb::RangeResponse> Range(std::size_t i,
                                            const etcdserverpb::RangeRequest& request) const;
  Result<etcdserverpb::TxnResponse> Txn(std::size_t i,
                                        const etcdserverpb::TxnRequest& request) const;

 private:
  struct Endpoint {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
    std::unique_ptr<etcdserverpb::Cluster::Stub> cluster;
  };
  EtcdClient(std::vector<std::string> endpoints, bool tls, std::chrono::milliseconds timeout)
      : endpoints_(std::move(endpoints)), tls_(tls), timeout_(timeout) {}
  void Prepare(grpc::ClientContext& context) const;
  Error Failed(std::size_t i, const grpc::Status& status) const;

  std::vector<std::string> endpoints_;
  std::vector<Endpoint> stubs_;
  bool tls_ = false;
  std::chrono::milliseconds timeout_;
};

// Whether a call's error looks like a TLS failure (handshake, certificate), for the message.
bool LooksLikeTlsFailure(const std::string& message);

}  // namespace k8shmir::ctl

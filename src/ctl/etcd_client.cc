#include "ctl/etcd_client.h"

#include <algorithm>
#include <cctype>

#include "log/etcd_credentials.h"
#include "log/etcd_errors.h"

namespace k8shmir::ctl {

bool LooksLikeTlsFailure(const std::string& message) {
  std::string lower = message;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* word : {"ssl", "tls", "handshake", "certificate"}) {
    if (lower.find(word) != std::string::npos) return true;
  }
  return false;
}

Result<std::unique_ptr<EtcdClient>> EtcdClient::Create(const std::vector<std::string>& endpoints,
                                                       const EtcdTlsOptions& tls,
                                                       std::chrono::milliseconds timeout) {
  if (k8shmir::Status s = ValidateEtcdTlsOptions(endpoints, tls); !s) return s.error();
  auto credentials = MakeEtcdChannelCredentials(tls);
  if (!credentials) return credentials.error();
  grpc::ChannelArguments args;
  // Snapshot key listings and --log-bytes pages can exceed gRPC's 4 MiB default.
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (!tls.server_name.empty()) args.SetSslTargetNameOverride(tls.server_name);
  std::unique_ptr<EtcdClient> client(new EtcdClient(endpoints, EtcdTlsEnabled(tls), timeout));
  for (const auto& endpoint : endpoints) {
    auto normalized = NormalizeEndpoint(endpoint);
    if (!normalized) return normalized.error();
    Endpoint e;
    e.channel = grpc::CreateCustomChannel("dns:///" + *normalized, *credentials, args);
    e.kv = etcdserverpb::KV::NewStub(e.channel);
    e.maintenance = etcdserverpb::Maintenance::NewStub(e.channel);
    e.cluster = etcdserverpb::Cluster::NewStub(e.channel);
    client->stubs_.push_back(std::move(e));
  }
  return client;
}

void EtcdClient::Prepare(grpc::ClientContext& context) const {
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
}

Error EtcdClient::Failed(std::size_t i, const grpc::Status& status) const {
  std::string message = status.error_message();
  std::string text = "etcd endpoint " + endpoints_[i] + ": ";
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    text += "no answer within " + std::to_string(timeout_.count()) + " ms";
  } else {
    text += DescribeGrpcStatus(status.error_code(), message);
  }
  if (LooksLikeTlsFailure(message)) {
    text +=
        " (TLS failure: check --etcd-ca-file, --etcd-cert-file/--etcd-key-file and "
        "--etcd-server-name)";
  } else if (!tls_ && status.error_code() == grpc::StatusCode::UNAVAILABLE &&
             message.find("onnection refused") == std::string::npos) {
    // A member that expects TLS closes a plaintext connection without saying why.
    text += " (if the member serves TLS, give --etcd-ca-file)";
  }
  return Error{ErrorCode::kUnavailable, std::move(text)};
}

Result<etcdserverpb::StatusResponse> EtcdClient::Status(std::size_t i) const {
  grpc::ClientContext context;
  Prepare(context);
  etcdserverpb::StatusResponse response;
  grpc::Status s = stubs_[i].maintenance->Status(&context, {}, &response);
  if (!s.ok()) return Failed(i, s);
  return response;
}

Result<etcdserverpb::MemberListResponse> EtcdClient::MemberList(std::size_t i) const {
  grpc::ClientContext context;
  Prepare(context);
  etcdserverpb::MemberListResponse response;
  grpc::Status s = stubs_[i].cluster->MemberList(&context, {}, &response);
  if (!s.ok()) return Failed(i, s);
  return response;
}

Result<etcdserverpb::AlarmResponse> EtcdClient::Alarms(std::size_t i) const {
  grpc::ClientContext context;
  Prepare(context);
  etcdserverpb::AlarmRequest request;
  request.set_action(etcdserverpb::AlarmRequest::GET);
  etcdserverpb::AlarmResponse response;
  grpc::Status s = stubs_[i].maintenance->Alarm(&context, request, &response);
  if (!s.ok()) return Failed(i, s);
  return response;
}

Result<etcdserverpb::RangeResponse> EtcdClient::Range(
    std::size_t i, const etcdserverpb::RangeRequest& request) const {
  grpc::ClientContext context;
  Prepare(context);
  etcdserverpb::RangeResponse response;
  grpc::Status s = stubs_[i].kv->Range(&context, request, &response);
  if (!s.ok()) return Failed(i, s);
  return response;
}

Result<etcdserverpb::TxnResponse> EtcdClient::Txn(std::size_t i,
                                                  const etcdserverpb::TxnRequest& request) const {
  grpc::ClientContext context;
  Prepare(context);
  etcdserverpb::TxnResponse response;
  grpc::Status s = stubs_[i].kv->Txn(&context, request, &response);
  if (!s.ok()) return Failed(i, s);
  return response;
}

}  // namespace k8shmir::ctl

// An AdminServer on 127.0.0.1 in process, on a fake replica, with its own io thread: shared by
// the admin server's tests and the accept loop's (test/common/accept_loop_test.cc).
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <thread>

#include "admin/admin_server.h"
#include "fakes/fake_replica.h"

namespace k8shmir::testing {

class AdminServerFakeReplicaTest : public ::testing::Test {
 protected:
  AdminServerFakeReplicaTest()
      : work_(boost::asio::make_work_guard(ioc_)),
        replica_(std::make_shared<FakeReplica>(ioc_.get_executor())) {
    replica_->status.replica_id = "r1";
    replica_->status.group = "g";
  }

  void Start(std::chrono::milliseconds liveness = std::chrono::seconds(1)) {
    admin_ = std::make_unique<AdminServer>(ioc_, "127.0.0.1", 0, replica_, liveness);
    ASSERT_TRUE(admin_->Listen());
    admin_->Start();
    thread_ = std::thread([this] { ioc_.run(); });
  }

  ~AdminServerFakeReplicaTest() override {
    if (admin_) admin_->Stop();
    work_.reset();
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }

  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::shared_ptr<FakeReplica> replica_;
  std::unique_ptr<AdminServer> admin_;
  std::thread thread_;
};

}  // namespace k8shmir::testing

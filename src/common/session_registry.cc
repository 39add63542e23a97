#include "common/session_registry.h"

#include <boost/asio/post.hpp>

namespace k8shmir {

SessionRegistry::Registration::Registration(SessionRegistry& registry,
                                            boost::beast::tcp_stream& stream)
    : registry_(registry), entry_(std::make_shared<Entry>()) {
  entry_->stream = &stream;
  entry_->executor = stream.get_executor();
  MutexLock lock(registry_.mutex_);
  registry_.entries_.insert(entry_);
}

SessionRegistry::Registration::~Registration() {
  entry_->stream = nullptr;
  MutexLock lock(registry_.mutex_);
  registry_.entries_.erase(entry_);
}

bool SessionRegistry::Registration::SetIdle(bool idle) {
  entry_->idle = idle;
  return !(idle && registry_.stopping_);
}

void SessionRegistry::CloseIdle() {
  stopping_ = true;
  MutexLock lock(mutex_);
  for (const auto& entry : entries_) {
    boost::asio::post(entry->executor, [entry] {
      if (entry->stream != nullptr && entry->idle) entry->stream->cancel();
    });
  }
}

}  // namespace k8shmir

#include "cache/ssd_io_engine.h"

#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace streamedge::cache {

// ---------------------------------------------------------------------------------------------
// IoEngine

IoEngine::~IoEngine() {
  if (event_fd_ >= 0) ::close(event_fd_);
}

Status IoEngine::read(uint64_t offset, void* buf, size_t len, Callback done) {
  return start(false, offset, buf, len, std::move(done));
}

Status IoEngine::write(uint64_t offset, const void* buf, size_t len, Callback done) {
  return start(true, offset, buf, len, std::move(done));
}

Status IoEngine::start(bool is_write, uint64_t offset, const void* buf, size_t len,
                       Callback done) {
  Status s = device_.checkIo(offset, buf, len);
  if (!s.isOk()) return s;
  auto* req = new Request;
  req->is_write = is_write;
  req->offset = offset;
  req->buf = static_cast<uint8_t*>(const_cast<void*>(buf));
  req->len = len;
  req->callback = std::move(done);
  ++in_flight_;
  submitImpl(req);
  return Status::ok();
}

void IoEngine::post(Callback done) {
  posted_.push_back(std::move(done));
  const uint64_t one = 1;
  // A full eventfd counter (2^64-2) cannot happen: poll() drains it.
  [[maybe_unused]] ssize_t n = ::write(event_fd_, &one, sizeof(one));
}

void IoEngine::complete(Request* req, Status status) {
  finished_.emplace_back(std::move(req->callback), status);
  delete req;
  --in_flight_;
}

void IoEngine::dropCallbacks() {
  posted_.clear();
  finished_.clear();
}

size_t IoEngine::poll() {
  uint64_t counter = 0;
  [[maybe_unused]] ssize_t n = ::read(event_fd_, &counter, sizeof(counter));  // EAGAIN: fine
  reapImpl();
  // Callbacks may start new I/O or post: run only what is due now, from local copies.
  std::deque<std::pair<Callback, Status>> finished;
  finished.swap(finished_);
  std::deque<Callback> posted;
  posted.swap(posted_);
  size_t ran = 0;
  for (auto& [cb, status] : finished) {
    if (cb) cb(status);
    ++ran;
  }
  for (Callback& cb : posted) {
    if (cb) cb(Status::ok());
    ++ran;
  }
  return ran;
}

size_t IoEngine::wait(std::chrono::milliseconds timeout) {
  if (posted_.empty() && finished_.empty()) {
    struct pollfd pfd{event_fd_, POLLIN, 0};
    int rc;
    do {
      rc = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    } while (rc < 0 && errno == EINTR);
  }
  return poll();
}

namespace {

int makeEventFd() { return ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

// ---------------------------------------------------------------------------------------------
// io_uring

class UringEngine final : public IoEngine {
 public:
  UringEngine(Device& device, int event_fd, unsigned depth) : IoEngine(device, event_fd), depth_(depth) {}

  // Returns 0 or -errno.
  int init() {
    const int rc = io_uring_queue_init(depth_, &ring_, 0);
    if (rc < 0) return rc;
    ring_ok_ = true;
    return io_uring_register_eventfd(&ring_, event_fd_);
  }

  ~UringEngine() override {
    dropCallbacks();
    if (!ring_ok_) return;
    // Buffers belong to the callbacks: they may be freed only once the kernel is done.
    while (ring_inflight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(&ring_, &cqe) != 0) break;
      delete static_cast<Request*>(io_uring_cqe_get_data(cqe));
      io_uring_cqe_seen(&ring_, cqe);
      --ring_inflight_;
    }
    for (Request* r : backlog_) delete r;
    io_uring_queue_exit(&ring_);
  }

  const char* backendName() const override { return "io_uring"; }

 protected:
  void submitImpl(Request* req) override {
    backlog_.push_back(req);
    pump();
  }

  void reapImpl() override {
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
      auto* req = static_cast<Request*>(io_uring_cqe_get_data(cqe));
      const int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      --ring_inflight_;
      if (res == -EINTR || res == -EAGAIN) {
        backlog_.push_front(req);
        continue;
      }
      if (res <= 0) {
        device_.recordIo(req->is_write, req->len, false);
        complete(req, Status(Code::kIo, Source::kStorage,
                             res == 0 ? "SSD I/O made no progress" : "SSD I/O failed"));
        continue;
      }
      req->done_bytes += static_cast<size_t>(res);
      if (req->done_bytes < req->len) {  // short transfer: go on from where it stopped
        backlog_.push_front(req);
        continue;
      }
      device_.recordIo(req->is_write, req->len, true);
      complete(req, Status::ok());
    }
    pump();
  }

 private:
  void pump() {
    unsigned queued = 0;
    while (!backlog_.empty() && ring_inflight_ < depth_) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (!sqe) break;
      Request* req = backlog_.front();
      backlog_.pop_front();
      const size_t left = req->len - req->done_bytes;
      const uint64_t off = req->offset + req->done_bytes;
      if (req->is_write) {
        io_uring_prep_write(sqe, device_.fd(), req->buf + req->done_bytes,
                            static_cast<unsigned>(left), off);
      } else {
        io_uring_prep_read(sqe, device_.fd(), req->buf + req->done_bytes,
                           static_cast<unsigned>(left), off);
      }
      io_uring_sqe_set_data(sqe, req);
      ++ring_inflight_;
      ++queued;
    }
    if (queued > 0) io_uring_submit(&ring_);
  }

  const unsigned depth_;
  io_uring ring_{};
  bool ring_ok_ = false;
  unsigned ring_inflight_ = 0;   // SQEs handed to the kernel, CQE not yet seen
  std::deque<Request*> backlog_;  // waiting for room in the ring (or resuming a short transfer)
};

// ---------------------------------------------------------------------------------------------
// Thread pool

class ThreadPoolEngine final : public IoEngine {
 public:
  ThreadPoolEngine(Device& device, int event_fd) : IoEngine(device, event_fd) {}

  void start(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
  }

  ~ThreadPoolEngine() override {
    dropCallbacks();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      for (Request* r : queue_) delete r;
      queue_.clear();
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
    for (auto& [r, s] : done_) delete r;
  }

  const char* backendName() const override { return "threads"; }

 protected:
  void submitImpl(Request* req) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(req);
    }
    cv_.notify_one();
  }

  void reapImpl() override {
    std::vector<std::pair<Request*, Status>> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done.swap(done_);
    }
    for (auto& [req, status] : done) complete(req, status);
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      Request* req = queue_.front();
      queue_.pop_front();
      lock.unlock();
      const Status s = req->is_write ? device_.write(req->offset, req->buf, req->len)
                                     : device_.read(req->offset, req->buf, req->len);
      lock.lock();
      done_.emplace_back(req, s);
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(event_fd_, &one, sizeof(one));
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request*> queue_;                     // guarded by mu_
  std::vector<std::pair<Request*, Status>> done_;  // guarded by mu_
  bool stop_ = false;                              // guarded by mu_
  std::vector<std::thread> threads_;
};

}  // namespace

Result<std::unique_ptr<IoEngine>> makeUringEngine(Device& device, unsigned queue_depth,
                                                  std::string* why) {
  if (device.fd() < 0) {
    if (why) *why = "the device has no file descriptor";
    return Status(Code::kUnavailable, Source::kStorage, "io_uring needs a file device");
  }
  const int efd = makeEventFd();
  if (efd < 0) {
    if (why) *why = std::string("eventfd: ") + std::strerror(errno);
    return Status(Code::kIo, Source::kStorage, "eventfd failed");
  }
  auto engine = std::make_unique<UringEngine>(device, efd, queue_depth == 0 ? 1 : queue_depth);
  const int rc = engine->init();
  if (rc < 0) {
    if (why) *why = std::string("io_uring setup: ") + std::strerror(-rc);
    return Status(Code::kUnavailable, Source::kStorage, "io_uring cannot be set up");
  }
  return std::unique_ptr<IoEngine>(std::move(engine));
}

Result<std::unique_ptr<IoEngine>> makeThreadPoolEngine(Device& device, unsigned threads) {
  const int efd = makeEventFd();
  if (efd < 0) return Status(Code::kIo, Source::kStorage, "eventfd failed");
  auto engine = std::make_unique<ThreadPoolEngine>(device, efd);
  engine->start(threads == 0 ? 1 : threads);
  return std::unique_ptr<IoEngine>(std::move(engine));
}

Result<std::unique_ptr<IoEngine>> makeIoEngine(Device& device, const IoEngineOptions& options) {
  if (options.backend == conf::IoBackend::kThreads) {
    return makeThreadPoolEngine(device, options.threads);
  }
  std::string why;
  auto uring = makeUringEngine(device, options.queue_depth, &why);
  if (uring.isOk() || options.backend == conf::IoBackend::kIoUring) {
    if (!uring.isOk() && options.log) {
      options.log("io_uring required by cache.ssd.io_backend but unavailable: " + why);
    }
    return uring;
  }
  if (options.log_fallback && options.log) {
    options.log("io_uring unavailable (" + why +
                "): SSD I/O goes through a pread/pwrite thread pool");
  }
  return makeThreadPoolEngine(device, options.threads);
}

}  // namespace streamedge::cache

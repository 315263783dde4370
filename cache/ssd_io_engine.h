// IoEngine: asynchronous reads and writes on a Device, completed on the thread that calls
// poll(). Two backends with one contract (and one conformance suite):
//   - "io_uring": a ring per engine (one per worker), its completion eventfd registered with
//     io_uring_register_eventfd; needs a Device with an fd.
//   - "threads":  a small pread/pwrite pool (Device::read/write) that signals the same kind of
//     eventfd; used when io_uring cannot be set up (old kernel, seccomp) or when forced.
// The owner registers completionFd() for readability in its event loop (proxy/: one EV_READ|
// EV_PERSIST event per worker) and calls poll() when it fires; callbacks run inside poll().
//
// Thread-safety: an engine belongs to one thread (the one that submits and polls); different
// engines on one Device may run on different threads. Ownership: buffers passed to read/write
// must stay valid until their callback has run (or the engine is destroyed); the usual way is to
// move the buffer into the callback. Destruction waits for I/O in flight and drops the pending
// callbacks without calling them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>

#include "cache/ssd_device.h"
#include "conf/config.h"
#include "conf/status.h"

namespace streamedge::cache {

class IoEngine {
 public:
  // Status ok: all `len` bytes were transferred. Else kIo (device error or short transfer).
  using Callback = std::function<void(Status)>;

  virtual ~IoEngine();
  IoEngine(const IoEngine&) = delete;
  IoEngine& operator=(const IoEngine&) = delete;

  // "io_uring" or "threads" (a static string, for logs and the metrics label).
  virtual const char* backendName() const = 0;

  // Start an I/O. Returns kInvalid (misaligned, out of bounds) without calling `done`; when ok,
  // `done` runs exactly once, from a later poll().
  Status read(uint64_t offset, void* buf, size_t len, Callback done);
  Status write(uint64_t offset, const void* buf, size_t len, Callback done);
  // Runs `done` (with ok) from the next poll(): lets a result that needed no I/O complete the
  // same way as one that did.
  void post(Callback done);

  // Readable when completions are waiting. Owned by the engine.
  int completionFd() const { return event_fd_; }
  // Runs the callbacks of every finished I/O, never blocking. Returns how many ran.
  size_t poll();
  // Blocks up to `timeout` for a completion, then poll(). For the store's writer thread and tests.
  size_t wait(std::chrono::milliseconds timeout);

  // I/Os submitted and not yet delivered, plus posted callbacks.
  size_t pending() const { return in_flight_ + posted_.size(); }
  Device& device() const { return device_; }

 protected:
  struct Request {
    bool is_write = false;
    uint64_t offset = 0;
    uint8_t* buf = nullptr;
    size_t len = 0;
    size_t done_bytes = 0;  // io_uring: progress over short transfers
    Callback callback;
  };

  IoEngine(Device& device, int event_fd) : device_(device), event_fd_(event_fd) {}
  // Takes ownership of `req` until it is handed back through complete().
  virtual void submitImpl(Request* req) = 0;
  // Hands every finished request to complete().
  virtual void reapImpl() = 0;
  // Called by reapImpl(): accounts and queues the callback.
  void complete(Request* req, Status status);
  // Derived destructors call this first: after it, no callback runs.
  void dropCallbacks();

  Device& device_;
  const int event_fd_;

 private:
  Status start(bool is_write, uint64_t offset, const void* buf, size_t len, Callback done);

  size_t in_flight_ = 0;
  std::deque<Callback> posted_;
  std::deque<std::pair<Callback, Status>> finished_;
};

struct IoEngineOptions {
  conf::IoBackend backend = conf::IoBackend::kAuto;
  unsigned queue_depth = 64;  // io_uring entries; more requests wait in the engine
  unsigned threads = 2;       // the fallback pool
  SsdLogFn log = ssdLogToStderr;
  // Logs why io_uring was not used (once per process is enough: the first engine says it).
  bool log_fallback = true;
};

// kAuto: io_uring, else (logged) the thread pool. kIoUring: io_uring or kUnavailable.
// kThreads: the pool. Errors: kUnavailable, kIo (eventfd or thread creation failed).
Result<std::unique_ptr<IoEngine>> makeIoEngine(Device& device, const IoEngineOptions& options);

// Each backend on its own, for the conformance tests. makeUringEngine fails with kUnavailable
// when the device has no fd or the ring cannot be set up (`why`: strerror of the setup).
Result<std::unique_ptr<IoEngine>> makeUringEngine(Device& device, unsigned queue_depth,
                                                  std::string* why = nullptr);
Result<std::unique_ptr<IoEngine>> makeThreadPoolEngine(Device& device, unsigned threads);

}  // namespace streamedge::cache

// Errors as values: Status for operations that return nothing, Result<T> for
// operations that return a T or fail. Cheap on success, no exceptions.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace meridian {

class Status {
 public:
  enum class Code {
    kOk,
    kNotFound,            // the thing asked for does not exist
    kCorruption,          // stored or received bytes fail verification
    kInvalidArgument,     // the caller's input is malformed
    kIOError,             // the operating system or a library failed
    kAlreadyExists,       // a different value already sits under that name
    kPermissionDenied,    // not signed / not authorised
    kFailedPrecondition,  // valid input, but the state forbids it (missing chunks, illegal transition)
    kUnavailable,         // a peer could not be reached
    kResourceExhausted,   // a limit was hit
    kDeadlineExceeded,    // a wait ran out
    kInsufficientStorage, // the disk is full: nothing was written; retry once space is freed
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status Corruption(std::string m) { return Status(Code::kCorruption, std::move(m)); }
  static Status InvalidArgument(std::string m) { return Status(Code::kInvalidArgument, std::move(m)); }
  static Status IOError(std::string m) { return Status(Code::kIOError, std::move(m)); }
  static Status AlreadyExists(std::string m) { return Status(Code::kAlreadyExists, std::move(m)); }
  static Status PermissionDenied(std::string m) { return Status(Code::kPermissionDenied, std::move(m)); }
  static Status FailedPrecondition(std::string m) { return Status(Code::kFailedPrecondition, std::move(m)); }
  static Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
  static Status ResourceExhausted(std::string m) { return Status(Code::kResourceExhausted, std::move(m)); }
  static Status DeadlineExceeded(std::string m) { return Status(Code::kDeadlineExceeded, std::move(m)); }
  static Status InsufficientStorage(std::string m) { return Status(Code::kInsufficientStorage, std::move(m)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // "not found: <message>", or "ok".
  std::string ToString() const;
  // The same code, its message prefixed with what was being done ("context: message").
  Status WithContext(std::string_view context) const {
    return ok() ? *this : Status(code_, std::string(context) + ": " + message_);
  }
  // A stable lowercase name for the code ("not_found"), used in JSON error bodies.
  static std::string_view CodeName(Code code);

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Holds either a T or a non-OK Status.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok() && "a Result built from a Status must carry an error");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

// Within a catch block: the exception being handled as a Status naming
// `what`: ResourceExhausted for std::bad_alloc, IOError for any other.
Status StatusOfCurrentException(std::string_view what);

// body(), or the Status of the exception it lets out: for work one failure
// of which must not end the process (a store call, a background thread's
// round), where handlers answer errors and an exception is a bug or memory
// running out.
template <typename F>
auto CatchExceptions(std::string_view what, F&& body) noexcept -> decltype(body()) {
  try {
    return body();
  } catch (...) {
    return StatusOfCurrentException(what);
  }
}

}  // namespace meridian

// Returns the status from the enclosing function when `expr` is not OK.
#define MERIDIAN_RETURN_IF_ERROR(expr)             \
  do {                                             \
    ::meridian::Status _st = (expr);               \
    if (!_st.ok()) return _st;                     \
  } while (0)

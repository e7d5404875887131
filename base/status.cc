// Status names and formatting.
#include "base/status.h"

#include <exception>
#include <new>

namespace meridian {

std::string_view Status::CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kNotFound: return "not_found";
    case Code::kCorruption: return "corruption";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kIOError: return "io_error";
    case Code::kAlreadyExists: return "already_exists";
    case Code::kPermissionDenied: return "permission_denied";
    case Code::kFailedPrecondition: return "failed_precondition";
    case Code::kUnavailable: return "unavailable";
    case Code::kResourceExhausted: return "resource_exhausted";
    case Code::kDeadlineExceeded: return "deadline_exceeded";
    case Code::kInsufficientStorage: return "insufficient_storage";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string s(CodeName(code_));
  for (char& c : s) if (c == '_') c = ' ';
  return s + ": " + message_;
}

Status StatusOfCurrentException(std::string_view what) {
  const std::string prefix = std::string(what) + ": ";
  try {
    throw;
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted(prefix + "out of memory");
  } catch (const std::exception& e) {
    return Status::IOError(prefix + e.what());
  } catch (...) {
    return Status::IOError(prefix + "unknown exception");
  }
}

}  // namespace meridian

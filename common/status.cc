#include "common/status.h"

#include <cerrno>
#include <cstring>

namespace dpmfs {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "Invalid argument";
    case StatusCode::kNotFound: return "Not found";
    case StatusCode::kAlreadyExists: return "Already exists";
    case StatusCode::kCorruption: return "Corruption";
    case StatusCode::kIOError: return "IO error";
    case StatusCode::kNotSupported: return "Not supported";
    case StatusCode::kTimedOut: return "Timed out";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kPermissionDenied: return "Permission denied";
    case StatusCode::kOutOfRange: return "Out of range";
    case StatusCode::kResourceExhausted: return "Resource exhausted";
    case StatusCode::kFailedPrecondition: return "Failed precondition";
    case StatusCode::kAborted: return "Aborted";
    case StatusCode::kInternal: return "Internal error";
  }
  return "Unknown";
}

Status Status::FromErrno(int err, std::string_view what) {
  Status s = IOError(std::string(what) + ": " + std::strerror(err));
  s.errno_ = err;
  return s;
}

StatusCode StatusCodeOfErrno(int err) {
  switch (err) {
    case 0: return StatusCode::kOk;
    case ENOENT: case ENODATA: return StatusCode::kNotFound;
    case EEXIST: return StatusCode::kAlreadyExists;
    case EPERM: case EACCES: case EROFS: return StatusCode::kPermissionDenied;
    case EINVAL: case ENAMETOOLONG: case E2BIG: case EBADF: return StatusCode::kInvalidArgument;
    case ERANGE: case EFBIG: case EOVERFLOW: return StatusCode::kOutOfRange;
    case ENOSPC: case EDQUOT: case EMLINK: case ENOMEM: return StatusCode::kResourceExhausted;
    case ENOTDIR: case EISDIR: case ENOTEMPTY: case EBUSY: case EXDEV: case ELOOP:
      return StatusCode::kFailedPrecondition;
    case EOPNOTSUPP: case ENOSYS: return StatusCode::kNotSupported;
    case ETIMEDOUT: return StatusCode::kTimedOut;
    case ENOTCONN: case ECONNREFUSED: case ECONNRESET: case EHOSTUNREACH:
      return StatusCode::kUnavailable;
    case EINTR: case ECANCELED: return StatusCode::kAborted;
    default: return StatusCode::kIOError;
  }
}

Status Status::Posix(int err, std::string message) {
  if (err == 0) return Status();
  Status s(StatusCodeOfErrno(err), std::move(message));
  s.errno_ = err;
  return s;
}

int Status::ToErrno() const {
  if (errno_ != 0) return errno_;
  switch (code_) {
    case StatusCode::kOk: return 0;
    case StatusCode::kInvalidArgument: return EINVAL;
    case StatusCode::kNotFound: return ENOENT;
    case StatusCode::kAlreadyExists: return EEXIST;
    case StatusCode::kNotSupported: return EOPNOTSUPP;
    case StatusCode::kTimedOut: return ETIMEDOUT;
    case StatusCode::kUnavailable: return ENOTCONN;
    case StatusCode::kPermissionDenied: return EACCES;
    case StatusCode::kOutOfRange: return ERANGE;
    case StatusCode::kResourceExhausted: return ENOSPC;
    case StatusCode::kAborted: return ECANCELED;
    case StatusCode::kCorruption:
    case StatusCode::kIOError:
    case StatusCode::kFailedPrecondition:
    case StatusCode::kInternal:
      return EIO;
  }
  return EIO;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(StatusCodeName(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  Status s(code_, std::string(context) + ": " + message_);
  s.errno_ = errno_;
  return s;
}

}  // namespace dpmfs

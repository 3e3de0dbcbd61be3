// Status and Result<T>: errors are values in dpmfs; exceptions never cross a module
// boundary. A Status carries a code and a message that names what failed, on which
// object, and (where there is one) what to do about it.
//
// POSIX: a Status can carry the errno a file system operation fails with (Posix(),
// FromErrno()); ToErrno() gives it back, or for a Status without one the errno its
// code stands for. That is the one error currency from the metadata namespace through
// MetaClient to the FUSE operations, which turn it into the kernel's errno once, at the
// edge, and log its message there.
//
// Thread-safety: values; a const Status/Result may be read from any thread.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace dpmfs {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,    // bad input from a user, a flag or the wire
  kNotFound,           // a named object does not exist
  kAlreadyExists,      // refusing to overwrite something that exists
  kCorruption,         // on-media or on-wire data fails validation
  kIOError,            // the OS or a device failed an operation
  kNotSupported,       // valid request this build/device cannot do
  kTimedOut,           // a deadline passed
  kUnavailable,        // peer unreachable / connection lost; retrying may help
  kPermissionDenied,   // access flags or rights refuse the operation
  kOutOfRange,         // offsets/lengths outside an object's bounds
  kResourceExhausted,  // a queue, buffer or pool is full
  kFailedPrecondition, // object in the wrong state (e.g. a QP in error)
  kAborted,            // an operation stopped because something else failed first
  kInternal,           // a bug: an invariant did not hold
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status Corruption(std::string m) { return {StatusCode::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {StatusCode::kIOError, std::move(m)}; }
  static Status NotSupported(std::string m) { return {StatusCode::kNotSupported, std::move(m)}; }
  static Status TimedOut(std::string m) { return {StatusCode::kTimedOut, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status PermissionDenied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
  static Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
  static Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
  static Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
  static Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  // An IOError whose message ends with strerror(err); carries err (ToErrno).
  static Status FromErrno(int err, std::string_view what);
  // A failure with POSIX errno `err` (> 0): the code is the one the errno falls under
  // (ENOENT: kNotFound, EEXIST: kAlreadyExists, EACCES/EPERM: kPermissionDenied, ...),
  // the message says what failed. Posix(0, ...) is OK.
  static Status Posix(int err, std::string message);

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // The errno carried by Posix()/FromErrno(), or 0.
  int posix_errno() const { return errno_; }
  // 0 when OK; the carried errno; else the errno the code stands for (kNotFound: ENOENT,
  // kTimedOut: ETIMEDOUT, kUnavailable: ENOTCONN, ..., EIO for data and internal errors).
  int ToErrno() const;
  // "Corruption: pool header checksum mismatch in /pm/data0 ..."
  std::string ToString() const;
  // Prefixes context: "opening /pm/data0: <old message>".
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  int errno_ = 0;  // sits in what was padding: a Status is as big as before
  std::string message_;
};

// The StatusCode a POSIX errno falls under (kIOError for those without a closer one).
StatusCode StatusCodeOfErrno(int err);

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                         // NOLINT(implicit)
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { assert(ok()); return std::get<T>(v_); }
  const T& value() const& { assert(ok()); return std::get<T>(v_); }
  T&& value() && { assert(ok()); return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace dpmfs

#define DPMFS_CONCAT_INNER(a, b) a##b
#define DPMFS_CONCAT(a, b) DPMFS_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define DPMFS_RETURN_IF_ERROR(expr)                 \
  do {                                              \
    ::dpmfs::Status _dpmfs_st = (expr);             \
    if (!_dpmfs_st.ok()) return _dpmfs_st;          \
  } while (0)

// `lhs = value of expr` or return its Status.
#define DPMFS_ASSIGN_OR_RETURN(lhs, expr) \
  DPMFS_ASSIGN_OR_RETURN_IMPL(DPMFS_CONCAT(_dpmfs_res_, __LINE__), lhs, expr)
#define DPMFS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

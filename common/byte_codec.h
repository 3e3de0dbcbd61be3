// The one little-endian byte codec of dpmfs: every wire message and every on-PM record is
// encoded and decoded through it, so bounds checks and error messages are the same
// everywhere ("<message>.<field> (byte N of M) <what>").
//
// A variable-size message is described once, by a `Fields(io, message)` function template that
// names its fields in wire order; three "io" classes walk that description:
//   - ByteSizer counts the encoded bytes (so encoding reserves exactly once),
//   - ByteWriter appends the bytes to a buffer of that size,
//   - ByteReader parses and validates them.
// Writing the layout once means encoder and decoder cannot drift apart. Fields functions
// take the message by non-const reference so one definition serves all three; the
// encoder passes a const_cast message, which ByteSizer and ByteWriter only read.
//
// ByteReader never reads outside its span and never allocates from an unchecked
// length: a string length is checked against the bytes left and the field's cap, a
// vector count against its cap and against (bytes left / smallest element size) before
// anything is reserved. The first failure is kept (with the field name and byte offset)
// and makes every later read a no-op returning zeros, so a Fields function needs no
// error handling of its own.
//
// A fixed layout (a header, a descriptor, a journal record) uses the same classes: a
// FixedWriter writes into a buffer of known size, and ByteReader's U32/U64... read it.
//
// Thread-safety: the classes are values used by one thread at a time.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace dpmfs::codec {

// Serialized sizes of the fixed-width pieces.
inline constexpr size_t kLengthPrefix = 4;  // u32 length of a string / count of a vector

class ByteSizer {
 public:
  static constexpr bool kDecoding = false;
  void U8(const char*, uint8_t) { n_ += 1; }
  void U16(const char*, uint16_t) { n_ += 2; }
  void U32(const char*, uint32_t) { n_ += 4; }
  void U64(const char*, uint64_t) { n_ += 8; }
  void I32(const char*, int32_t) { n_ += 4; }
  void I64(const char*, int64_t) { n_ += 8; }
  void Bool(const char*, bool) { n_ += 1; }
  void Bytes(const char*, const std::string& s, size_t /*cap*/) { n_ += kLengthPrefix + s.size(); }
  template <size_t N>
  void Fixed(const char*, const std::array<uint8_t, N>&) {
    n_ += N;
  }
  template <class T, class Fn>
  void Vector(const char*, std::vector<T>& v, size_t /*cap*/, size_t /*min_size*/, Fn&& each) {
    n_ += kLengthPrefix;
    for (T& e : v) each(*this, e);
  }
  void Require(bool, const char*, const char*) {}
  bool ok() const { return true; }
  size_t size() const { return n_; }

 private:
  size_t n_ = 0;
};

// Writes into a buffer already sized by ByteSizer; never allocates.
class ByteWriter {
 public:
  static constexpr bool kDecoding = false;
  explicit ByteWriter(uint8_t* out) : p_(out) {}
  void U8(const char*, uint8_t v) { *p_++ = v; }
  void U16(const char*, uint16_t v) { Put(v, 2); }
  void U32(const char*, uint32_t v) { Put(v, 4); }
  void U64(const char*, uint64_t v) { Put(v, 8); }
  void I32(const char*, int32_t v) { Put(static_cast<uint32_t>(v), 4); }
  void I64(const char*, int64_t v) { Put(static_cast<uint64_t>(v), 8); }
  void Bool(const char*, bool v) { *p_++ = v ? 1 : 0; }
  // The cap is a decoder's business: encoding what the peer will refuse is allowed
  // (tests and CallRaw build such messages on purpose).
  void Bytes(const char*, const std::string& s, size_t /*cap*/) {
    Put(static_cast<uint32_t>(s.size()), 4);
    if (!s.empty()) std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  template <size_t N>
  void Fixed(const char*, const std::array<uint8_t, N>& a) {
    std::memcpy(p_, a.data(), N);
    p_ += N;
  }
  template <class T, class Fn>
  void Vector(const char*, std::vector<T>& v, size_t /*cap*/, size_t /*min_size*/, Fn&& each) {
    Put(static_cast<uint32_t>(v.size()), 4);
    for (T& e : v) each(*this, e);
  }
  void Require(bool, const char*, const char*) {}
  bool ok() const { return true; }
  uint8_t* position() const { return p_; }

 private:
  void Put(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) p_[i] = static_cast<uint8_t>(v >> (8 * i));
    p_ += bytes;
  }
  uint8_t* p_;
};

class ByteReader {
 public:
  static constexpr bool kDecoding = true;
  // `message` names the message type in errors ("LookupRequest").
  ByteReader(std::span<const uint8_t> in, const char* message) : in_(in), message_(message) {}

  void U8(const char* field, uint8_t& v) { v = static_cast<uint8_t>(Get(field, 1)); }
  void U16(const char* field, uint16_t& v) { v = static_cast<uint16_t>(Get(field, 2)); }
  void U32(const char* field, uint32_t& v) { v = static_cast<uint32_t>(Get(field, 4)); }
  void U64(const char* field, uint64_t& v) { v = Get(field, 8); }
  void I32(const char* field, int32_t& v) {
    v = static_cast<int32_t>(static_cast<uint32_t>(Get(field, 4)));
  }
  void I64(const char* field, int64_t& v) { v = static_cast<int64_t>(Get(field, 8)); }
  void Bool(const char* field, bool& v) {
    uint64_t b = Get(field, 1);
    if (b > 1) Fail(field, "is a boolean byte of value " + std::to_string(b) + " (must be 0 or 1)");
    v = b == 1;
  }
  // A u32 length (at most `cap`, and at most what is left) followed by the bytes.
  void Bytes(const char* field, std::string& s, size_t cap) {
    uint64_t len = Get(field, 4);
    if (!ok_) return;
    if (len > cap) {
      Fail(field, "has length " + std::to_string(len) + ", over its limit of " +
                      std::to_string(cap) + " bytes");
      return;
    }
    if (len > left()) {
      Fail(field, "has length " + std::to_string(len) + " but only " + std::to_string(left()) +
                      " bytes are left");
      return;
    }
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), len);
    pos_ += len;
  }
  template <size_t N>
  void Fixed(const char* field, std::array<uint8_t, N>& a) {
    if (!Need(field, N)) return;
    std::memcpy(a.data(), in_.data() + pos_, N);
    pos_ += N;
  }
  // A u32 count (at most `cap`) followed by that many elements. `min_size` is the
  // smallest encoded size of one element: count * min_size must fit in what is left
  // before the vector is sized, so a forged count cannot make us allocate.
  template <class T, class Fn>
  void Vector(const char* field, std::vector<T>& v, size_t cap, size_t min_size, Fn&& each) {
    uint64_t count = Get(field, 4);
    if (!ok_) return;
    if (count > cap) {
      Fail(field,
           "has " + std::to_string(count) + " elements, over its limit of " + std::to_string(cap));
      return;
    }
    if (count * min_size > left()) {
      Fail(field, "has " + std::to_string(count) + " elements but only " + std::to_string(left()) +
                      " bytes are left");
      return;
    }
    v.clear();
    v.resize(count);
    for (T& e : v) {
      each(*this, e);
      if (!ok_) return;
    }
  }
  // A semantic check on what was just read (nsec < 1e9, a valid name...): fails with
  // "<message>.<field> (byte N of M) <what>".
  void Require(bool cond, const char* field, const char* what) {
    if (ok_ && !cond) Fail(field, what);
  }

  bool ok() const { return ok_; }
  size_t left() const { return in_.size() - pos_; }
  // OK when every read succeeded and every byte was consumed.
  Status Finish() {
    if (ok_ && pos_ != in_.size()) {
      Fail(nullptr, "is followed by " + std::to_string(in_.size() - pos_) + " trailing bytes");
    }
    return ok_ ? Status::OK() : Status::InvalidArgument(std::move(error_));
  }
  void Fail(const char* field, std::string_view what) {
    if (!ok_) return;
    ok_ = false;
    error_ = std::string(message_);
    if (field != nullptr) {
      error_ += ".";
      error_ += field;
    }
    error_ += " (byte ";
    error_ += std::to_string(pos_);
    error_ += " of ";
    error_ += std::to_string(in_.size());
    error_ += ") ";
    error_ += what;
  }

 private:
  bool Need(const char* field, size_t n) {
    if (!ok_) return false;
    if (n > left()) {
      Fail(field, "is truncated: needs " + std::to_string(n) + " bytes, " + std::to_string(left()) +
                      " left");
      return false;
    }
    return true;
  }
  uint64_t Get(const char* field, int bytes) {
    if (!Need(field, static_cast<size_t>(bytes))) return 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t{in_[pos_ + i]} << (8 * i);
    pos_ += static_cast<size_t>(bytes);
    return v;
  }

  std::span<const uint8_t> in_;
  const char* message_;
  size_t pos_ = 0;
  bool ok_ = true;
  std::string error_;
};

}  // namespace dpmfs::codec

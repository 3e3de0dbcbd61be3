#include "fs/inode_table.h"

#include <atomic>
#include <tuple>

namespace dpmfs::fs {

using meta::InodeAttr;
using meta::Timespec;

namespace {
std::atomic<uint64_t> g_attr_seq{0};
constexpr uint64_t kAuthoritative = ~uint64_t{0};

bool Later(const Timespec& a, const Timespec& b) {
  return std::tie(a.sec, a.nsec) > std::tie(b.sec, b.nsec);
}
}  // namespace

uint64_t AttrSequence() { return g_attr_seq.load(); }

InodeAttr Inode::attr() const {
  MutexLock lock(mu_);
  InodeAttr a = attr_;
  if (pending_mtime_ && Later(pending_mtime_value_, a.mtime)) {
    a.mtime = pending_mtime_value_;
    a.ctime = pending_mtime_value_;
  }
  if (pending_atime_ && Later(pending_atime_value_, a.atime)) a.atime = pending_atime_value_;
  return a;
}

bool Inode::has_attr() const {
  MutexLock lock(mu_);
  return has_attr_;
}

InodeAttr Inode::server_attr() const {
  MutexLock lock(mu_);
  return attr_;
}

uint64_t Inode::size() const {
  MutexLock lock(mu_);
  return attr_.size;
}

void Inode::SetAttr(const InodeAttr& attr) { UpdateAttr(attr, kAuthoritative); }

void Inode::UpdateAttr(const InodeAttr& attr, uint64_t seq_before) {
  UpdateAttrAsOf(attr, seq_before, Clock::time_point::max());
}

void Inode::UpdateAttrAsOf(const InodeAttr& attr, uint64_t seq_before, Clock::time_point as_of) {
  bool other_file = false;
  {
    MutexLock lock(mu_);
    if (has_attr_ && attr_updated_at_ >= as_of) return;  // fresher than `attr` already
    attr_updated_at_ = Clock::now();
    other_file = has_attr_ && attr.generation != attr_.generation;
    if (seq_before == kAuthoritative) {
      attr_ = attr;
      size_seq_ = g_attr_seq.fetch_add(1) + 1;
    } else if (!has_attr_ || other_file || size_seq_ <= seq_before) {
      attr_ = attr;
    } else {
      // Older than this client's last size change: everything but the size.
      uint64_t size = attr_.size, blocks = attr_.blocks;
      attr_ = attr;
      attr_.size = size;
      attr_.blocks = blocks;
    }
    has_attr_ = true;
    dir_attr_valid_until_ = {};
    if (other_file) {
      pending_mtime_ = false;
      capability_absent_ = false;
      ++xattr_epoch_;
    }
  }
  if (other_file) layout_.Clear();
}

void Inode::NoteChangedDir(const InodeAttr& attr, Clock::time_point valid_until) {
  MutexLock lock(mu_);
  const bool same_dir = has_attr_ && attr.generation == attr_.generation;
  if (same_dir && Later(attr_.ctime, attr.ctime)) return;  // an older change's reply
  attr_updated_at_ = Clock::now();
  attr_ = attr;
  has_attr_ = true;
  dir_attr_valid_until_ = valid_until;
}

bool Inode::FreshDirAttr(InodeAttr* attr, std::chrono::duration<double>* remaining) const {
  MutexLock lock(mu_);
  auto now = Clock::now();
  if (!has_attr_ || now >= dir_attr_valid_until_) return false;
  *attr = attr_;
  *remaining = dir_attr_valid_until_ - now;
  return true;
}

bool Inode::capability_absent() const {
  MutexLock lock(mu_);
  return capability_absent_;
}

void Inode::XattrChanged() {
  MutexLock lock(mu_);
  ++xattr_epoch_;
  capability_absent_ = false;
}

uint64_t Inode::xattr_epoch() const {
  MutexLock lock(mu_);
  return xattr_epoch_;
}

void Inode::MarkCapabilityAbsent(uint64_t epoch) {
  MutexLock lock(mu_);
  if (epoch == xattr_epoch_) capability_absent_ = true;
}

bool Inode::RefreshAtOpen(const InodeAttr& fresh, uint64_t seq_before) {
  bool keep = false;
  {
    MutexLock lock(mu_);
    keep = has_attr_ && attr_.generation == fresh.generation && attr_.size == fresh.size &&
           attr_.mtime == fresh.mtime;
  }
  UpdateAttr(fresh, seq_before);
  layout_.Clear();
  XattrChanged();  // revalidated at open, like attributes and layout
  return keep;
}

void Inode::GrowSize(uint64_t new_size) {
  MutexLock lock(mu_);
  if (new_size > attr_.size) attr_.size = new_size;
}

void Inode::NoteOverwrite(const Timespec& now) {
  MutexLock lock(mu_);
  if (!pending_mtime_ || Later(now, pending_mtime_value_)) pending_mtime_value_ = now;
  pending_mtime_ = true;
}

bool Inode::TakePendingMtime(Timespec* mtime) {
  MutexLock lock(mu_);
  if (!pending_mtime_) return false;
  *mtime = pending_mtime_value_;
  pending_mtime_ = false;
  return true;
}

void Inode::ClearPendingMtime() {
  MutexLock lock(mu_);
  pending_mtime_ = false;
}

bool Inode::NoteAccess(const Timespec& now, AtimePolicy policy) {
  MutexLock lock(mu_);
  // The rule looks at what this client shows: server attributes with its own pending
  // mtime and atime laid over.
  InodeAttr shown = attr_;
  if (pending_mtime_ && Later(pending_mtime_value_, shown.mtime)) {
    shown.mtime = shown.ctime = pending_mtime_value_;
  }
  if (pending_atime_ && Later(pending_atime_value_, shown.atime)) shown.atime = pending_atime_value_;
  if (!has_attr_ || !AtimeUpdateDue(policy, shown, now) || !Later(now, shown.atime)) return false;
  pending_atime_value_ = now;
  pending_atime_ = true;
  return true;
}

bool Inode::PendingAtime(Timespec* atime) const {
  MutexLock lock(mu_);
  if (!pending_atime_) return false;
  *atime = pending_atime_value_;
  return true;
}

void Inode::AtimeCommitted(const Timespec& atime) {
  MutexLock lock(mu_);
  if (pending_atime_ && pending_atime_value_ == atime) pending_atime_ = false;
}

InodeTable::InodeTable() {
  auto root = std::make_shared<Inode>(meta::kRootInode);
  root->nlookup_ = 1;  // the kernel never forgets the root
  MutexLock lock(mu_);  // nobody else sees the table yet
  inodes_.emplace(meta::kRootInode, std::move(root));
}

std::shared_ptr<Inode> InodeTable::Get(meta::InodeId ino) {
  MutexLock lock(mu_);
  auto& slot = inodes_[ino];
  if (!slot) slot = std::make_shared<Inode>(ino);
  return slot;
}

std::shared_ptr<Inode> InodeTable::Find(meta::InodeId ino) const {
  MutexLock lock(mu_);
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second;
}

std::shared_ptr<Inode> InodeTable::AddLookup(const InodeAttr& attr, uint64_t seq_before,
                                             Inode::Clock::time_point as_of) {
  std::shared_ptr<Inode> inode;
  {
    MutexLock lock(mu_);
    auto& slot = inodes_[attr.ino];
    if (!slot) slot = std::make_shared<Inode>(attr.ino);
    ++slot->nlookup_;
    inode = slot;
  }
  inode->UpdateAttrAsOf(attr, seq_before, as_of);
  return inode;
}

void InodeTable::Forget(meta::InodeId ino, uint64_t n) {
  MutexLock lock(mu_);
  auto it = inodes_.find(ino);
  if (it == inodes_.end()) return;
  Inode& inode = *it->second;
  inode.nlookup_ = n >= inode.nlookup_ ? 0 : inode.nlookup_ - n;
  MaybeEraseLocked(ino);
}

void InodeTable::Opened(const std::shared_ptr<Inode>& inode) {
  MutexLock lock(mu_);
  ++inode->open_count_;
  // Re-attach an entry a racing forget removed while the open was in flight.
  auto& slot = inodes_[inode->ino()];
  if (!slot) slot = inode;
}

bool InodeTable::Closed(const std::shared_ptr<Inode>& inode) {
  MutexLock lock(mu_);
  if (inode->open_count_ > 0) --inode->open_count_;
  bool last = inode->open_count_ == 0;
  auto it = inodes_.find(inode->ino());
  if (it != inodes_.end() && it->second == inode) MaybeEraseLocked(inode->ino());
  return last;
}

bool InodeTable::IsOpen(meta::InodeId ino) const {
  MutexLock lock(mu_);
  auto it = inodes_.find(ino);
  return it != inodes_.end() && it->second->open_count_ > 0;
}

void InodeTable::MaybeEraseLocked(meta::InodeId ino) {
  if (ino == meta::kRootInode) return;
  auto it = inodes_.find(ino);
  if (it == inodes_.end()) return;
  if (it->second->nlookup_ == 0 && it->second->open_count_ == 0) inodes_.erase(it);
}

size_t InodeTable::size() const {
  MutexLock lock(mu_);
  return inodes_.size();
}

}  // namespace dpmfs::fs

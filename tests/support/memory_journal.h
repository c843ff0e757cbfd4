// An in-memory Journal for tests: records every append, and lets a test decide when records become
// durable (or makes them durable at once).
#ifndef TOLLGATE_TESTS_SUPPORT_MEMORY_JOURNAL_H_
#define TOLLGATE_TESTS_SUPPORT_MEMORY_JOURNAL_H_

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "tollgate/journal.h"

namespace tollgate::testing {

class MemoryJournal : public Journal {
 public:
  struct Reg {
    uint64_t fence;
    std::string value;
  };

  uint64_t AppendLeasePut(std::string_view key, const StoredLease& lease) override {
    std::lock_guard<std::mutex> l(mu_);
    leases_[std::string(key)] = lease;
    return ++seq_;
  }
  uint64_t AppendLeaseDelete(std::string_view key) override {
    std::lock_guard<std::mutex> l(mu_);
    leases_.erase(std::string(key));
    return ++seq_;
  }
  uint64_t AppendPermitPut(std::string_view key, std::string_view permit_id,
                           const StoredPermit& permit) override {
    std::lock_guard<std::mutex> l(mu_);
    permits_[{std::string(key), std::string(permit_id)}] = permit;
    return ++seq_;
  }
  uint64_t AppendPermitDelete(std::string_view key, std::string_view permit_id) override {
    std::lock_guard<std::mutex> l(mu_);
    permits_.erase({std::string(key), std::string(permit_id)});
    return ++seq_;
  }
  uint64_t AppendRegisterPut(std::string_view resource, uint64_t fence,
                             std::string_view value) override {
    std::lock_guard<std::mutex> l(mu_);
    regs_[std::string(resource)] = Reg{fence, std::string(value)};
    return ++seq_;
  }
  uint64_t LastAppended() const override {
    std::lock_guard<std::mutex> l(mu_);
    return seq_;
  }
  uint64_t LastDurable() const override { return LastAppended(); }
  absl::Status WaitDurable(uint64_t) override { return absl::OkStatus(); }

  std::map<std::string, StoredLease> leases() const {
    std::lock_guard<std::mutex> l(mu_);
    return leases_;
  }
  // Permits by (semaphore key, permit id).
  std::map<std::pair<std::string, std::string>, StoredPermit> permits() const {
    std::lock_guard<std::mutex> l(mu_);
    return permits_;
  }
  std::map<std::string, Reg> registers() const {
    std::lock_guard<std::mutex> l(mu_);
    return regs_;
  }

 private:
  mutable std::mutex mu_;
  uint64_t seq_ = 0;
  std::map<std::string, StoredLease> leases_;
  std::map<std::string, Reg> regs_;
  std::map<std::pair<std::string, std::string>, StoredPermit> permits_;
};

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_MEMORY_JOURNAL_H_

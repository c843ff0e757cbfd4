// ApplyRecovered (store.h): apart from recovery.cc, which the fuzzers build without the cores.
#include "tollgate/store.h"

namespace tollgate {

void ApplyRecovered(const RecoveredState& recovered, LeaseManager& leases,
                    FencedRegisters& registers) {
  leases.RestoreFence(recovered.max_fence);
  for (const auto& [key, lease] : recovered.leases) leases.RestoreLease(key, lease);
  for (const auto& p : recovered.permits) leases.RestorePermit(p.key, p.permit_id, p.permit);
  for (const auto& r : recovered.registers) registers.Restore(r.resource, r.fence, r.value);
}

}  // namespace tollgate

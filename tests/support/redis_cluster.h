// Runs a throwaway 3-master Redis Cluster (no replicas) as child processes for tests: 127.0.0.1,
// free ports (each node's cluster bus port, port + 10000, free too), data and cluster config files
// in one temporary directory, no persistence. Formed with `redis-cli --cluster create`, which
// spreads the 16384 slots evenly over the three masters.
#ifndef TOLLGATE_TESTS_SUPPORT_REDIS_CLUSTER_H_
#define TOLLGATE_TESTS_SUPPORT_REDIS_CLUSTER_H_

#include <sys/types.h>

#include <array>
#include <string>

namespace tollgate::testing {

class RedisCluster {
 public:
  static constexpr int kNodes = 3;

  RedisCluster() = default;
  // Kills the nodes that still run and removes the directory.
  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // Starts the three nodes, joins them into a cluster and waits (up to 30 s) until every node
  // reports cluster_state:ok. Retries with other ports if a port was taken. False if it could not
  // (no redis-server/redis-cli, or they failed; their logs are in the directory until destruction).
  bool Start();
  // SIGTERM to every node, then waits for them to exit (SIGKILL after 10 s).
  void Stop();

  // Node i in [0, kNodes).
  int port(int i) const { return ports_[i]; }
  pid_t pid(int i) const { return pids_[i]; }
  // "redis://127.0.0.1:<port(i)>": any node is a seed for the Redis backend.
  std::string url(int i = 0) const;
  // The node's cluster id (CLUSTER MYID), e.g. for CLUSTER SETSLOT; empty before Start().
  const std::string& node_id(int i) const { return ids_[i]; }
  // The node (index) that serves `slot` according to node 0; -1 if unknown.
  int OwnerOfSlot(int slot) const;

 private:
  bool StartOnce();  // one attempt on freshly picked ports; cleans up after itself on failure
  void Kill();

  std::array<pid_t, kNodes> pids_{-1, -1, -1};
  std::array<int, kNodes> ports_{};
  std::array<std::string, kNodes> ids_;
  std::string dir_;
};

}  // namespace tollgate::testing

#endif  // TOLLGATE_TESTS_SUPPORT_REDIS_CLUSTER_H_

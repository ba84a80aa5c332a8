// A Curator 5.4 peer for tests/zk_curator.rs: takes part in one lock or election, printing
// what it does on stdout, one line per step, so that the Rust test can follow it.
//
//   hold  CONNECT PATH N      acquire an InterProcessMutex; print "HOLDING <node>"; release
//                             once N participants are queued ("RELEASING", "RELEASED")
//   try   CONNECT PATH MS     acquire(MS ms): print "ACQUIRED" (then release) or "TIMEOUT"
//   latch CONNECT PATH ID MS N  start a LeaderLatch with participant id ID; print
//                             "STARTED <node>" and "SEES <leader id>"; await leadership for
//                             MS ms: "LEADER" then "SEES <leader id>", or "NOT-LEADER"; once
//                             leading, close the latch when N participants are there ("CLOSING")
//   semhold CONNECT PATH P K FILE  take K leases of an InterProcessSemaphoreV2 of P leases;
//                             print "HOLDING"; return them once FILE exists ("RELEASING",
//                             "RELEASED")
//   semtry CONNECT PATH P MS  acquire(MS ms) one lease of P: "ACQUIRED" (then return it) or
//                             "TIMEOUT"
//   semloop CONNECT PATH P R DIR  R times: take a lease of P, create an ephemeral sequential
//                             mark under DIR, count DIR's children ("OVER n" if more than P),
//                             delete the mark, return the lease; then "DONE <most seen>"
import java.util.Collection;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.zookeeper.CreateMode;
import org.apache.curator.retry.RetryNTimes;

public final class CuratorPeer {
    public static void main(String[] args) throws Exception {
        try (CuratorFramework client =
                CuratorFrameworkFactory.newClient(args[1], 10000, 5000, new RetryNTimes(3, 100))) {
            client.start();
            if (!client.blockUntilConnected(20, TimeUnit.SECONDS)) {
                throw new IllegalStateException("no connection to " + args[1]);
            }
            switch (args[0]) {
                case "hold": hold(client, args[2], Integer.parseInt(args[3])); break;
                case "try": tryLock(client, args[2], Long.parseLong(args[3])); break;
                case "latch":
                    latch(client, args[2], args[3], Long.parseLong(args[4]), Integer.parseInt(args[5]));
                    break;
                case "semhold":
                    semHold(client, args[2], Integer.parseInt(args[3]), Integer.parseInt(args[4]),
                            args[5]);
                    break;
                case "semtry":
                    semTry(client, args[2], Integer.parseInt(args[3]), Long.parseLong(args[4]));
                    break;
                case "semloop":
                    semLoop(client, args[2], Integer.parseInt(args[3]), Integer.parseInt(args[4]), args[5]);
                    break;
                default: throw new IllegalArgumentException("unknown mode " + args[0]);
            }
        }
        System.exit(0);
    }

    private static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static void hold(CuratorFramework client, String path, int n) throws Exception {
        InterProcessMutex mutex = new InterProcessMutex(client, path);
        mutex.acquire();
        Collection<String> nodes = mutex.getParticipantNodes();
        say("HOLDING " + nodes.iterator().next());
        while (mutex.getParticipantNodes().size() < n) {
            Thread.sleep(20);
        }
        say("RELEASING");
        mutex.release();
        say("RELEASED");
    }

    private static void tryLock(CuratorFramework client, String path, long ms) throws Exception {
        InterProcessMutex mutex = new InterProcessMutex(client, path);
        if (mutex.acquire(ms, TimeUnit.MILLISECONDS)) {
            say("ACQUIRED");
            mutex.release();
        } else {
            say("TIMEOUT");
        }
    }

    private static void latch(CuratorFramework client, String path, String id, long ms, int n)
            throws Exception {
        try (LeaderLatch latch = new LeaderLatch(client, path, id)) {
            latch.start();
            while (latch.getOurPath() == null) {
                Thread.sleep(10);
            }
            say("STARTED " + latch.getOurPath());
            say("SEES " + latch.getLeader().getId());
            if (latch.await(ms, TimeUnit.MILLISECONDS)) {
                say("LEADER");
                say("SEES " + latch.getLeader().getId());
                while (latch.getParticipants().size() < n) {
                    Thread.sleep(20);
                }
                say("CLOSING");
            } else {
                say("NOT-LEADER");
            }
        }
    }

    private static void semHold(CuratorFramework client, String path, int permits, int k, String file)
            throws Exception {
        InterProcessSemaphoreV2 sem = new InterProcessSemaphoreV2(client, path, permits);
        Collection<Lease> leases = sem.acquire(k);
        say("HOLDING");
        while (!new java.io.File(file).exists()) {
            Thread.sleep(20);
        }
        say("RELEASING");
        sem.returnAll(leases);
        say("RELEASED");
    }

    private static void semTry(CuratorFramework client, String path, int permits, long ms)
            throws Exception {
        InterProcessSemaphoreV2 sem = new InterProcessSemaphoreV2(client, path, permits);
        Lease lease = sem.acquire(ms, TimeUnit.MILLISECONDS);
        if (lease == null) {
            say("TIMEOUT");
        } else {
            say("ACQUIRED");
            sem.returnLease(lease);
        }
    }

    private static void semLoop(CuratorFramework client, String path, int permits, int rounds, String dir)
            throws Exception {
        InterProcessSemaphoreV2 sem = new InterProcessSemaphoreV2(client, path, permits);
        int most = 0;
        for (int i = 0; i < rounds; i++) {
            Lease lease = sem.acquire();
            String mark = client.create().creatingParentsIfNeeded()
                    .withMode(CreateMode.EPHEMERAL_SEQUENTIAL).forPath(dir + "/java-");
            int now = client.getChildren().forPath(dir).size();
            most = Math.max(most, now);
            if (now > permits) {
                say("OVER " + now);
            }
            client.delete().forPath(mark);
            sem.returnLease(lease);
        }
        say("DONE " + most);
    }
}

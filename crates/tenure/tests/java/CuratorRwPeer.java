// A Curator 5.4 InterProcessReadWriteLock peer for tests/zk_curator_rwlock.rs: one holder of
// the read or the write side, printing each step on stdout so that the Rust test can follow it.
//
//   CONNECT PATH read|write STATE RELEASE
//
// Acquires the side (no timeout), reads the data of node STATE ("" if absent), a writer then
// sets STATE to "curator-writer"; prints "HELD <what it read, - if nothing>"; waits until node
// RELEASE exists; a writer sets STATE to "free"; releases and prints "RELEASED".
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.retry.RetryNTimes;

public final class CuratorRwPeer {
    public static void main(String[] args) throws Exception {
        String path = args[1], mode = args[2], state = args[3], release = args[4];
        try (CuratorFramework client =
                CuratorFrameworkFactory.newClient(args[0], 10000, 5000, new RetryNTimes(3, 100))) {
            client.start();
            if (!client.blockUntilConnected(20, TimeUnit.SECONDS)) {
                throw new IllegalStateException("no connection to " + args[0]);
            }
            InterProcessReadWriteLock rw = new InterProcessReadWriteLock(client, path);
            InterProcessMutex side = mode.equals("read") ? rw.readLock() : rw.writeLock();
            side.acquire();
            String seen = "";
            if (client.checkExists().forPath(state) != null) {
                seen = new String(client.getData().forPath(state), StandardCharsets.UTF_8);
            }
            if (mode.equals("write")) {
                set(client, state, "curator-writer");
            }
            say("HELD " + (seen.isEmpty() ? "-" : seen));
            while (client.checkExists().forPath(release) == null) {
                Thread.sleep(20);
            }
            if (mode.equals("write")) {
                set(client, state, "free");
            }
            side.release();
            say("RELEASED");
        }
        System.exit(0);
    }

    private static void set(CuratorFramework client, String path, String value) throws Exception {
        byte[] data = value.getBytes(StandardCharsets.UTF_8);
        if (client.checkExists().forPath(path) == null) {
            client.create().creatingParentsIfNeeded().forPath(path, data);
        } else {
            client.setData().forPath(path, data);
        }
    }

    private static void say(String line) {
        System.out.println(line);
        System.out.flush();
    }
}

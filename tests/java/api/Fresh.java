import java.security.SecureRandom;
import java.util.SplittableRandom;
import java.util.UUID;
import java.util.concurrent.ThreadLocalRandom;
import jdk.crac.Core;

/**
 * Test program: uses every default random generator before the checkpoint, checkpoints with
 * the API, then prints values that must differ between two copies restored from one image,
 * and the environment variable RESTORE_ENV.
 */
public class Fresh {
    public static void main(String[] args) throws Exception {
        SecureRandom secure = new SecureRandom();
        secure.nextLong();
        // The JDK's other engines, seeded by the JDK before the checkpoint (a CRaC JDK reseeds
        // them at restore): SHA1PRNG used once, SHA1PRNG not used yet (it will draw from the
        // JDK's seeder), DRBG, and the strong (blocking NativePRNG) one.
        SecureRandom sha1 = SecureRandom.getInstance("SHA1PRNG");
        sha1.nextLong();
        SecureRandom sha1Unused = SecureRandom.getInstance("SHA1PRNG");
        SecureRandom drbg = SecureRandom.getInstance("DRBG");
        drbg.nextLong();
        SecureRandom strong = SecureRandom.getInstanceStrong();
        strong.nextInt();
        UUID.randomUUID();
        ThreadLocalRandom.current().nextLong();
        new SplittableRandom().nextLong();
        Math.random();
        // A thread drawing from a SHA1PRNG all through the checkpoint: its first draw after
        // the restore must already come from the copy's own seed (the thread runs again at
        // once; nothing of the program may run before the copy is reseeded).
        SecureRandom racer = SecureRandom.getInstance("SHA1PRNG");
        racer.nextLong();
        Thread raceThread = new Thread(() -> {
            long previous = System.nanoTime();
            while (true) {
                long now = System.nanoTime();
                if (now - previous > 500_000_000L) {
                    System.out.println("racer " + racer.nextLong());
                    return;
                }
                previous = now;
                racer.nextLong();
                try {
                    Thread.sleep(1);
                } catch (InterruptedException e) {
                    return;
                }
            }
        });
        raceThread.setDaemon(true);
        raceThread.start();
        System.out.println("env before " + System.getenv("RESTORE_ENV"));
        System.out.println("checkpointing");
        Core.checkpointRestore();
        System.out.println("env " + System.getenv("RESTORE_ENV") + " " + System.getenv().get("RESTORE_ENV"));
        System.out.println("secure " + secure.nextLong());
        System.out.println("sha1 " + sha1.nextLong());
        System.out.println("sha1-unused " + sha1Unused.nextLong());
        System.out.println("drbg " + drbg.nextLong());
        System.out.println("strong " + strong.nextInt());
        System.out.println("uuid " + UUID.randomUUID());
        System.out.println("tlr " + ThreadLocalRandom.current().nextLong());
        Thread t = new Thread(() -> System.out.println("tlr-new-thread " + ThreadLocalRandom.current().nextLong()));
        t.start();
        t.join();
        System.out.println("splittable " + new SplittableRandom().nextLong());
        System.out.println("math " + Math.random());
        raceThread.join(10_000);
        System.out.println("done");
        Thread.sleep(100_000);
    }
}

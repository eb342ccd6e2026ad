/**
 * Test program: sleeps 50 ms in a loop and prints how long each sleep took by System.nanoTime(),
 * and the wall clock, so that a test can see both across a checkpoint and a later restore.
 */
public class Clock {
    public static void main(String[] args) throws Exception {
        long before = System.nanoTime();
        for (int i = 1; ; i++) {
            Thread.sleep(50);
            long now = System.nanoTime();
            System.out.println("delta " + (now - before) / 1_000_000 + " wall " + System.currentTimeMillis() + " tick " + i);
            before = now;
        }
    }
}

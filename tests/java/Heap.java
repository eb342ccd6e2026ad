import java.util.Random;

/**
 * Holds MiB of random bytes and prints, every 300 ms, "tick N sum S" where S sums a byte of
 * every 64 (touching every page): a restore that lost or mixed up pages changes the sum.
 */
public class Heap {
    public static void main(String[] args) throws Exception {
        int mib = Integer.parseInt(args[0]);
        // Quarter-MiB arrays: a small heap's regions take them without humongous waste.
        byte[][] data = new byte[mib * 4][];
        Random random = new Random(42);
        for (int i = 0; i < data.length; i++) {
            data[i] = new byte[1 << 18];
            random.nextBytes(data[i]);
        }
        for (int tick = 1; ; tick++) {
            long sum = 0;
            for (byte[] d : data) {
                for (int j = 0; j < d.length; j += 64) {
                    sum += d[j];
                }
            }
            System.out.println("tick " + tick + " sum " + sum);
            Thread.sleep(300);
        }
    }
}

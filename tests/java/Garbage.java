/**
 * Benchmark program (scripts/bench-dump): keeps args[0] MiB live, makes args[1] MiB of garbage
 * four times over, prints "ready" and idles.
 */
public class Garbage {
    public static void main(String[] args) throws Exception {
        int live = Integer.parseInt(args[0]);
        int garbage = Integer.parseInt(args[1]);
        byte[][] keep = new byte[live * 4][];
        for (int i = 0; i < keep.length; i++) {
            keep[i] = new byte[1 << 18];
            keep[i][7] = (byte) i;
        }
        for (int round = 0; round < 4; round++) {
            byte[][] junk = new byte[garbage * 4][];
            for (int i = 0; i < junk.length; i++) {
                junk[i] = new byte[1 << 18];
                junk[i][3] = 1;
            }
        }
        System.out.println("ready");
        while (keep.length > 0) {
            Thread.sleep(1000);
        }
    }
}

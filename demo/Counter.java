import java.util.HashMap;
import java.util.Map;

/**
 * The crac-shim demo: warms up (a little number crunching the JIT compiles), then prints a
 * counter every 200 ms. After a restore the counter goes on from where it was.
 */
public class Counter {
    public static void main(String[] args) throws Exception {
        long start = System.nanoTime();
        long warm = warmUp();
        System.out.printf("ready in %d ms (warm-up result %d)%n",
                (System.nanoTime() - start) / 1_000_000, warm);
        int limit = args.length > 0 ? Integer.parseInt(args[0]) : Integer.MAX_VALUE;
        for (int i = 1; i <= limit; i++) {
            System.out.println("counter " + i);
            Thread.sleep(200);
        }
        System.out.println("done");
    }

    static long warmUp() {
        Map<Integer, Long> memo = new HashMap<>();
        long sum = 0;
        for (int round = 0; round < 200; round++) {
            for (int n = 1; n < 2_000; n++) {
                sum += collatz(n, memo);
            }
            memo.clear();
        }
        return sum;
    }

    static long collatz(long n, Map<Integer, Long> memo) {
        long steps = 0;
        while (n != 1) {
            if (n < Integer.MAX_VALUE) {
                Long known = memo.get((int) n);
                if (known != null) {
                    return steps + known;
                }
            }
            n = (n & 1) == 0 ? n / 2 : 3 * n + 1;
            steps++;
        }
        return steps;
    }
}

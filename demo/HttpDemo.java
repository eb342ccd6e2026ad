import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A small HTTP server on the JDK's HttpServer: GET /?n=N answers with the N-th prime and a
 * request counter. Arguments: the port (default 8080); for the benchmarks, optionally a number
 * of idle threads to keep and a number of MiB of random data to hold, which GET /sum reads
 * whole (a byte of every 64, every page: a restore that lost pages answers differently).
 * Prints "listening on PORT" when ready.
 */
public class HttpDemo {
    static final AtomicLong requests = new AtomicLong();
    static final Map<Integer, Integer> cache = new TreeMap<>();

    public static void main(String[] args) throws Exception {
        int port = args.length > 0 ? Integer.parseInt(args[0]) : 8080;
        int idleThreads = args.length > 1 ? Integer.parseInt(args[1]) : 0;
        int heapMib = args.length > 2 ? Integer.parseInt(args[2]) : 0;
        for (int i = 0; i < idleThreads; i++) {
            Thread t = new Thread(() -> {
                while (true) {
                    java.util.concurrent.locks.LockSupport.park();
                }
            }, "idle-" + i);
            t.setDaemon(true);
            t.start();
        }
        // Quarter-MiB arrays: the heap's regions take them without humongous waste.
        byte[][] data = new byte[heapMib * 4][];
        java.util.Random random = new java.util.Random(42);
        for (int i = 0; i < data.length; i++) {
            data[i] = new byte[1 << 18];
            random.nextBytes(data[i]);
        }
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 50);
        server.createContext("/sum", exchange -> {
            long sum = 0;
            for (byte[] d : data) {
                for (int j = 0; j < d.length; j += 64) {
                    sum += d[j];
                }
            }
            byte[] body = ("sum " + sum + "\n").getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.createContext("/", exchange -> {
            String query = exchange.getRequestURI().getQuery();
            int n = 1000;
            if (query != null && query.startsWith("n=")) {
                n = Integer.parseInt(query.substring(2));
            }
            byte[] body = ("prime " + n + " = " + prime(n) + ", request " + requests.incrementAndGet() + "\n")
                    .getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.setExecutor(Executors.newFixedThreadPool(4));
        server.start();
        System.out.println("listening on " + port);
    }

    static synchronized int prime(int n) {
        Integer known = cache.get(n);
        if (known != null) {
            return known;
        }
        int count = 0;
        int candidate = 1;
        while (count < n) {
            candidate++;
            boolean isPrime = true;
            for (int d = 2; (long) d * d <= candidate; d++) {
                if (candidate % d == 0) {
                    isPrime = false;
                    break;
                }
            }
            if (isPrime) {
                count++;
            }
        }
        cache.put(n, candidate);
        return candidate;
    }
}

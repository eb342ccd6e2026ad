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
 * request counter. Argument: the port (default 8080). Prints "listening on PORT" when ready.
 */
public class HttpDemo {
    static final AtomicLong requests = new AtomicLong();
    static final Map<Integer, Integer> cache = new TreeMap<>();

    public static void main(String[] args) throws Exception {
        int port = args.length > 0 ? Integer.parseInt(args[0]) : 8080;
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 50);
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

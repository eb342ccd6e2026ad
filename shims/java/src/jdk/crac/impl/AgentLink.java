package jdk.crac.impl;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import jdk.crac.Core;

/**
 * The link to the crac-shim agent in this JVM: a connection to its control socket, which is
 * part of the process on both ends and therefore part of the image. In the restored JVM the
 * agent answers on it with what changed (properties from the restore command line, its new
 * socket, the restore time).
 */
public final class AgentLink {
    /** Set by crac-java; absent when the JVM was not started with -XX:CRaCCheckpointTo. */
    public static final String SOCKET_PROPERTY = "jdk.crac.shim.socket";
    private static final int MAX_ANSWER = 64 * 1024;

    private static volatile String socket = System.getProperty(SOCKET_PROPERTY);
    private static volatile long restoreTime = -1;
    private static volatile long restoreNanos = -1;
    /** The main class and arguments given to the last restore, run after afterRestore. */
    private static volatile java.util.List<String> newMain = java.util.List.of();
    /** What the last restore could not give back (files a policy reopens that are gone). */
    private static volatile java.util.List<String> restoreErrors = java.util.List.of();

    private AgentLink() {
    }

    public static boolean isConfigured() {
        return socket != null;
    }

    public static long restoreTime() {
        return restoreTime;
    }

    public static long restoreNanos() {
        return restoreNanos;
    }

    /** Takes what the last restore could not give back (empty if nothing, or taken). */
    public static java.util.List<String> takeRestoreErrors() {
        java.util.List<String> e = restoreErrors;
        restoreErrors = java.util.List.of();
        return e;
    }

    /** Takes the main class and arguments of the last restore (empty if none or taken). */
    public static java.util.List<String> takeNewMain() {
        java.util.List<String> m = newMain;
        newMain = java.util.List.of();
        return m;
    }

    /**
     * Has the agent checkpoint this JVM. Returns null in the restored JVM (or when the JVM
     * kept running), otherwise why the checkpoint did not happen.
     */
    public static String checkpoint() {
        String path = socket;
        if (path == null) {
            return "C/R is not configured";
        }
        trimHeap();
        String answer;
        java.io.FileInputStream pipe = null;
        try {
            // The agent answers through a pipe of its own, opened here by /proc/self/fd: the
            // pipe (unlike this connection) goes into the image without a name.
            try (SocketChannel channel = SocketChannel.open(UnixDomainSocketAddress.of(path))) {
                timing("checkpoint-connected");
                long maxHeap = maxHeap();
                String request = maxHeap > 0 ? "checkpoint-java max_heap=" + maxHeap + "\n" : "checkpoint-java\n";
                channel.write(ByteBuffer.wrap(request.getBytes(StandardCharsets.UTF_8)));
                String offer = readLine(channel);
                if (!offer.startsWith("pipe ")) {
                    return "unexpected answer from the crac-shim agent: " + offer;
                }
                pipe = new java.io.FileInputStream("/proc/self/fd/" + Integer.parseInt(offer.substring(5).trim()));
                channel.write(ByteBuffer.wrap("ok\n".getBytes(StandardCharsets.UTF_8)));
            }
            answer = readAnswer(pipe);
        } catch (IOException | RuntimeException e) {
            return "cannot reach the crac-shim agent at " + path + ": " + e;
        } finally {
            if (pipe != null) {
                try {
                    pipe.close();
                } catch (IOException ignored) {
                    // nothing to do
                }
            }
        }
        String[] lines = answer.split("\n");
        String kind = lines.length > 0 ? lines[0] : "";
        switch (kind) {
            case "restored":
                applyRestore(lines);
                return null;
            case "kept":
                return null;
            case "failed":
                for (String l : lines) {
                    if (l.startsWith("error=")) {
                        return unescape(l.substring(6));
                    }
                }
                return "the checkpoint failed";
            default:
                return "unexpected answer from the crac-shim agent: " + kind;
        }
    }

    /** The MaxHeapSize flag (CRaC's %m in CRaCCheckpointTo), or 0. */
    private static long maxHeap() {
        try {
            return Long.parseLong(java.lang.management.ManagementFactory.getPlatformMXBean(
                    com.sun.management.HotSpotDiagnosticMXBean.class)
                    .getVMOption("MaxHeapSize").getValue());
        } catch (Throwable t) {
            return 0;
        }
    }

    /**
     * Less heap, smaller image, faster restore: a full GC with the heap's free-ratio limits
     * lowered for the moment (they are manageable flags), so that the GC also gives back the
     * memory it freed. {@code -Djdk.crac.shim.trim=gc} only collects, {@code none} skips both.
     */
    private static void trimHeap() {
        timing("checkpoint-gc");
        try {
            trimHeap0();
        } finally {
            timing("checkpoint-gc-done");
        }
    }

    private static void trimHeap0() {
        String mode = System.getProperty("jdk.crac.shim.trim", "shrink");
        if (mode.equals("none")) {
            return;
        }
        if (!mode.equals("shrink")) {
            System.gc();
            return;
        }
        com.sun.management.HotSpotDiagnosticMXBean hotspot = null;
        String min = null;
        String max = null;
        try {
            hotspot = java.lang.management.ManagementFactory.getPlatformMXBean(
                    com.sun.management.HotSpotDiagnosticMXBean.class);
            min = hotspot.getVMOption("MinHeapFreeRatio").getValue();
            max = hotspot.getVMOption("MaxHeapFreeRatio").getValue();
            hotspot.setVMOption("MinHeapFreeRatio", "0");
            hotspot.setVMOption("MaxHeapFreeRatio", "1");
        } catch (Throwable t) {
            hotspot = null;
        }
        long committedBefore = Runtime.getRuntime().totalMemory();
        System.gc();
        if (hotspot != null) {
            try {
                hotspot.setVMOption("MaxHeapFreeRatio", max);
                hotspot.setVMOption("MinHeapFreeRatio", min);
            } catch (Throwable ignored) {
                // the limits stay low; the heap grows again as needed
            }
        }
        waitForUncommit(committedBefore);
        waitForZgcUncommit(hotspot);
    }

    /**
     * ZGC gives freed heap back only once it has gone unused for ZUncommitDelay seconds (300
     * by default), never because of a GC: dumped before that, all of it goes into the image
     * (1.5 GiB instead of 0.35 for tests/java/Garbage.java). crac-java starts a checkpointable
     * JVM with -XX:ZUncommitDelay=1 unless the user chose a delay; with a delay of at most 5 s
     * the checkpoint waits until the committed heap is down to what ZGC keeps (the used heap,
     * or MinHeapSize if larger). Not until it merely pauses: JDK 17's uncommitter wakes on
     * whole seconds and gives back only the pages whose delay has run out, JDK 25's spreads
     * the uncommit over a few cycles of the delay, so it comes in steps up to 2 s apart (a
     * rule of "300 ms without a drop" left half the heap in the image on a loaded machine).
     * It stops waiting when less than an eighth of the excess is left (JDK 25 halves it in each
     * cycle, 1.5 s apart with a 1 s delay), after twice the delay and 1 s without a drop, or
     * after four times the delay and 4 s in all.
     */
    private static void waitForZgcUncommit(com.sun.management.HotSpotDiagnosticMXBean hotspot) {
        long delaySeconds;
        long minHeap;
        try {
            if (hotspot == null || !hotspot.getVMOption("UseZGC").getValue().equals("true")
                    || !hotspot.getVMOption("ZUncommit").getValue().equals("true")) {
                return;
            }
            delaySeconds = Long.parseLong(hotspot.getVMOption("ZUncommitDelay").getValue());
            minHeap = Long.parseLong(hotspot.getVMOption("MinHeapSize").getValue());
        } catch (Throwable t) {
            return;
        }
        if (delaySeconds > 5) {
            return;
        }
        Runtime rt = Runtime.getRuntime();
        long second = 1_000_000_000L;
        long deadline = System.nanoTime() + (4 * delaySeconds + 4) * second;
        long patience = (2 * delaySeconds + 1) * second;
        long last = rt.totalMemory();
        long lastDrop = System.nanoTime();
        long excessAtStart = -1;
        while (System.nanoTime() < deadline && System.nanoTime() - lastDrop < patience) {
            long committed = rt.totalMemory();
            long excess = committed - Math.max(committed - rt.freeMemory(), minHeap);
            if (excessAtStart < 0) {
                excessAtStart = excess;
            }
            // Nothing (much) left to give back: JDK 25 halves what is left in each cycle.
            if (excess < (32L << 20) || excess < excessAtStart / 8) {
                return;
            }
            if (committed < last) {
                last = committed;
                lastDrop = System.nanoTime();
            }
            try {
                Thread.sleep(20);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /**
     * G1 gives the regions the full GC freed back to the kernel in the background, some
     * 100 ms after the GC returns ("Uncommittable regions after shrink"): dumped before that,
     * they go into the image (and are uncommitted again in every restored copy). When the GC
     * shrank the heap, waits until the process's resident memory has started falling and then
     * stopped (60 ms without a drop of 1 MiB); at most 300 ms for it to start, 2 s in all.
     */
    private static void waitForUncommit(long committedBefore) {
        long shrunk = committedBefore - Runtime.getRuntime().totalMemory();
        if (shrunk < (8L << 20)) {
            return;
        }
        long start = System.nanoTime();
        long first = residentPages();
        if (first < 0) {
            return;
        }
        long last = first;
        long lastDrop = -1;
        long pagesPerMiB = 256;
        while (true) {
            long elapsed = System.nanoTime() - start;
            if (elapsed > 2_000_000_000L) {
                return;
            }
            if (lastDrop < 0 && elapsed > 300_000_000L) {
                return;
            }
            if (lastDrop >= 0 && System.nanoTime() - lastDrop > 60_000_000L) {
                return;
            }
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            long now = residentPages();
            if (now < 0) {
                return;
            }
            if (last - now >= pagesPerMiB) {
                lastDrop = System.nanoTime();
                last = now;
            }
        }
    }

    private static long residentPages() {
        try {
            String[] f = new String(java.nio.file.Files.readAllBytes(
                    java.nio.file.Path.of("/proc/self/statm"))).trim().split(" ");
            return Long.parseLong(f[1]);
        } catch (Exception e) {
            return -1;
        }
    }

    /**
     * The agent's reason as exceptions: one per refused descriptor ("FD fd=N type=T ..."
     * lines, typed as CRaC types them), or one RuntimeException.
     */
    public static java.util.List<Exception> problems(String problem) {
        java.util.List<Exception> out = new java.util.ArrayList<>();
        for (String line : problem.split("\n")) {
            if (!line.startsWith("FD ")) {
                continue;
            }
            if (line.contains(" type=socket ")) {
                out.add(new CheckpointOpenSocketException(line));
            } else if (line.contains(" type=regular ")) {
                out.add(new CheckpointOpenFileException(line));
            } else {
                out.add(new CheckpointOpenResourceException(line));
            }
        }
        if (out.isEmpty()) {
            out.add(new RuntimeException(problem));
        }
        return out;
    }

    private static String readLine(SocketChannel channel) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteBuffer one = ByteBuffer.allocate(1);
        while (out.size() < 4096) {
            one.clear();
            if (channel.read(one) <= 0) {
                break;
            }
            if (one.get(0) == '\n') {
                break;
            }
            out.write(one.get(0));
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    private static String readAnswer(java.io.InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[4096];
        while (out.size() < MAX_ANSWER) {
            int n = in.read(buf);
            if (n < 0) {
                break;
            }
            out.write(buf, 0, n);
            String s = out.toString(StandardCharsets.UTF_8);
            if (s.endsWith("\n\n")) {
                return s.substring(0, s.length() - 2);
            }
        }
        return out.toString(StandardCharsets.UTF_8);
    }

    private static void applyRestore(String[] lines) {
        restoreNanos = System.nanoTime();
        restoreTime = System.currentTimeMillis();
        java.util.List<String> main = new java.util.ArrayList<>();
        java.util.List<String> errors = new java.util.ArrayList<>();
        for (String l : lines) {
            int eq = l.indexOf('=');
            if (eq < 0) {
                continue;
            }
            String key = l.substring(0, eq);
            String value = unescape(l.substring(eq + 1));
            switch (key) {
                case "prop": {
                    int peq = value.indexOf('=');
                    if (peq < 0) {
                        System.setProperty(value, "");
                    } else {
                        System.setProperty(value.substring(0, peq), value.substring(peq + 1));
                    }
                    break;
                }
                case "new_main":
                    main.add(value);
                    break;
                case "restore_error":
                    errors.add(value);
                    break;
                case "socket":
                    socket = value;
                    System.setProperty(SOCKET_PROPERTY, value);
                    break;
                case "restore_time":
                    try {
                        restoreTime = Long.parseLong(value);
                    } catch (NumberFormatException ignored) {
                        // keep the local clock's value
                    }
                    break;
                case "restore_ms":
                    // Uptime since restore counts from when the restore was started, as in
                    // CRaC: CRIU's time and the launcher's belong to it.
                    try {
                        restoreNanos -= Long.parseLong(value) * 1_000_000L;
                    } catch (NumberFormatException ignored) {
                        // count from now
                    }
                    break;
                default:
                    break;
            }
        }
        newMain = java.util.List.copyOf(main);
        restoreErrors = java.util.List.copyOf(errors);
    }

    private static String unescape(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\\' && i + 1 < s.length()) {
                char n = s.charAt(++i);
                b.append(n == 'n' ? '\n' : n);
            } else {
                b.append(c);
            }
        }
        return b.toString();
    }

    /**
     * Called by the agent (through JNI) for {@code crac-jcmd PID JDK.checkpoint}: the same
     * notifications as {@link Core#checkpointRestore()}. Returns null on success, otherwise the
     * exception as jcmd would print it.
     */
    /**
     * {@code CRAC_SHIM_TIMING} in the (restoring) environment: one stderr line with the moment,
     * for {@code scripts/bench --breakdown} (format: the launcher's src/timing.rs).
     */
    public static void timing(String event) {
        if (System.getenv("CRAC_SHIM_TIMING") == null) {
            return;
        }
        java.time.Instant now = java.time.Instant.now();
        System.err.println("crac-shim: timing " + event + " " + (now.getEpochSecond() * 1_000_000L + now.getNano() / 1_000));
    }

    public static String checkpointFromAgent() {
        try {
            Core.checkpointRestore();
            return null;
        } catch (Throwable t) {
            StringWriter text = new StringWriter();
            PrintWriter w = new PrintWriter(text);
            w.println(t);
            for (Throwable s : t.getSuppressed()) {
                w.println("\tSuppressed: " + s);
            }
            w.flush();
            return text.toString().stripTrailing();
        }
    }
}

import java.io.IOException;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import javax.management.ObjectName;

/**
 * Test stand-in for a Spring Boot 3.2+ application (Spring's jars cannot be downloaded here),
 * following Spring Boot's published start-up sequence with CRaC:
 * <ul>
 * <li>SpringApplication.run() picks its CRaC start-up timer when both
 * jdk.crac.management.CRaCMXBean and org.crac.management.CRaCMXBean load, and asks the
 * org.crac facade for the MXBean right away;</li>
 * <li>the context's lifecycle processor registers itself through org.crac's global context,
 * stops the lifecycle beans (here: a web server on 127.0.0.1) before a checkpoint and starts
 * them again after the restore, in registration order;</li>
 * <li>with -Dspring.context.checkpoint=onRefresh, the main thread checkpoints when the
 * context is refreshed, before the lifecycle beans start (org.crac's Core, or its CRaCMXBean
 * with -Dstandin.checkpoint=mxbean, org.crac 1.5's preferred call);</li>
 * <li>after the restore it logs "Restored ... in N seconds" from getUptimeSinceRestore().</li>
 * </ul>
 */
public class SpringLikeApp {
    static final List<String> events = new ArrayList<>();
    static volatile ServerSocket server;
    static String state;

    public static void main(String[] args) throws Exception {
        long start = System.nanoTime();
        boolean cracStartup = present("jdk.crac.management.CRaCMXBean")
                && present("org.crac.management.CRaCMXBean");
        org.crac.management.CRaCMXBean mx =
                cracStartup ? org.crac.management.CRaCMXBean.getCRaCMXBean() : null;
        System.out.println("startup timer: " + (mx != null ? "crac" : "standard"));
        System.out.println("platform mbean registered: " + ManagementFactory.getPlatformMBeanServer()
                .isRegistered(new ObjectName("jdk.management:type=CRaC")));

        // Beans: the "repository" computes state once, as a warm-up would.
        long sum = 0;
        for (int i = 1; i <= 1000; i++) {
            sum += i;
        }
        state = "state " + sum;
        org.crac.Core.getGlobalContext().register(new Lifecycle("lifecycle-processor"));
        org.crac.Core.getGlobalContext().register(new Lifecycle("data-source"));

        // The context is refreshed.
        if ("onRefresh".equals(System.getProperty("spring.context.checkpoint"))) {
            System.out.println("checkpointing on refresh");
            if ("mxbean".equals(System.getProperty("standin.checkpoint"))) {
                org.crac.management.CRaCMXBean.getCRaCMXBean().checkpointRestore();
            } else {
                checkpointThroughCore();
            }
            System.out.println("events " + String.join(",", events));
        }
        startWebServer();
        org.crac.management.CRaCMXBean now = org.crac.management.CRaCMXBean.getCRaCMXBean();
        long uptimeSinceRestore = now.getUptimeSinceRestore();
        if (uptimeSinceRestore >= 0) {
            System.out.printf("Restored SpringLikeApp in %.3f seconds%n", uptimeSinceRestore / 1000.0);
            System.out.println("restored in " + uptimeSinceRestore + " ms, restore time "
                    + now.getRestoreTime());
        } else {
            System.out.printf("Started SpringLikeApp in %.3f seconds%n",
                    (System.nanoTime() - start) / 1e9);
        }
        System.out.println("listening on " + server.getLocalPort());
        serve();
    }

    @SuppressWarnings("deprecation")
    static void checkpointThroughCore() throws Exception {
        org.crac.Core.checkpointRestore();
    }

    static boolean present(String name) {
        try {
            Class.forName(name, false, SpringLikeApp.class.getClassLoader());
            return true;
        } catch (ClassNotFoundException e) {
            return false;
        }
    }

    static void startWebServer() throws IOException {
        ServerSocket s = new ServerSocket();
        s.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
        server = s;
    }

    static void serve() {
        while (true) {
            try (Socket c = server.accept(); OutputStream out = c.getOutputStream()) {
                out.write((state + "\n").getBytes(StandardCharsets.UTF_8));
            } catch (IOException e) {
                return;
            }
        }
    }

    static final class Lifecycle implements org.crac.Resource {
        final String name;

        Lifecycle(String name) {
            this.name = name;
        }

        @Override
        public void beforeCheckpoint(org.crac.Context<? extends org.crac.Resource> c) {
            events.add("before " + name);
        }

        @Override
        public void afterRestore(org.crac.Context<? extends org.crac.Resource> c) {
            events.add("after " + name);
        }
    }
}

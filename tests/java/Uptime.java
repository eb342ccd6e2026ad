import java.lang.management.ManagementFactory;
import java.lang.management.RuntimeMXBean;

/**
 * Test program: prints "uptime START UPTIME" (RuntimeMXBean's start time and uptime, ms) every
 * 200 ms, the MXBean made before any checkpoint.
 */
public class Uptime {
    public static void main(String[] args) throws Exception {
        RuntimeMXBean runtime = ManagementFactory.getRuntimeMXBean();
        while (true) {
            System.out.println("uptime " + runtime.getStartTime() + " " + runtime.getUptime());
            Thread.sleep(200);
        }
    }
}

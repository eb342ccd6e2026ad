/**
 * Test program: starts a child process (sleep 1000), prints "child PID", then ticks.
 *   exit=N:CODE   exit with CODE after tick N (the child goes on, as children of java do)
 */
public class Parent {
    public static void main(String[] args) throws Exception {
        int exitAt = -1, exitCode = 0;
        for (String a : args) {
            if (a.startsWith("exit=")) {
                String[] p = a.substring(5).split(":");
                exitAt = Integer.parseInt(p[0]);
                exitCode = Integer.parseInt(p[1]);
            }
        }
        Process child = new ProcessBuilder("sleep", "1000").start();
        System.out.println("child " + child.pid());
        for (int i = 1; ; i++) {
            System.out.println("tick " + i);
            if (i == exitAt) {
                System.exit(exitCode);
            }
            Thread.sleep(50);
        }
    }
}

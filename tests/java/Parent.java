/**
 * Test program: starts a child process (sleep 1000), prints "child PID", then ticks.
 */
public class Parent {
    public static void main(String[] args) throws Exception {
        Process child = new ProcessBuilder("sleep", "1000").start();
        System.out.println("child " + child.pid());
        for (int i = 1; ; i++) {
            System.out.println("tick " + i);
            Thread.sleep(50);
        }
    }
}

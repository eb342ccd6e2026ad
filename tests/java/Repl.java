import java.io.BufferedReader;
import java.io.InputStreamReader;

/**
 * Test program: a line reader. Prints "repl pid N", then a "> " prompt; answers each line with
 * "you said: LINE"; Ctrl-C (SIGINT) prints "interrupted" and goes on; "quit" exits with 3.
 */
public class Repl {
    public static void main(String[] args) throws Exception {
        sun.misc.Signal.handle(new sun.misc.Signal("INT"), s -> System.out.println("interrupted"));
        System.out.println("repl pid " + ProcessHandle.current().pid());
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        System.out.print("> ");
        System.out.flush();
        String line;
        while ((line = in.readLine()) != null) {
            if (line.equals("quit")) {
                System.exit(3);
            }
            System.out.println("you said: " + line);
            System.out.print("> ");
            System.out.flush();
        }
    }
}

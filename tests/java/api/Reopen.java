import java.io.FileOutputStream;
import java.nio.charset.StandardCharsets;
import jdk.crac.Core;
import jdk.crac.RestoreException;

/**
 * Test program (CRaC's reopen case): makes the file args[0] itself, writes "hello ", checkpoints
 * with the API (a policy rule reopens the file), then writes "world!" and says how it went.
 */
public class Reopen {
    public static void main(String[] args) throws Exception {
        FileOutputStream out = new FileOutputStream(args[0]);
        out.write("hello ".getBytes(StandardCharsets.UTF_8));
        out.flush();
        System.out.println("checkpointing");
        try {
            Core.checkpointRestore();
            System.out.println("restored");
        } catch (RestoreException e) {
            for (Throwable t : e.getSuppressed()) {
                System.out.println("RestoreException: " + t.getMessage());
            }
        }
        try {
            out.write("world!".getBytes(StandardCharsets.UTF_8));
            out.flush();
            System.out.println("wrote");
        } catch (java.io.IOException e) {
            System.out.println("write failed: " + e);
        }
        Thread.sleep(100_000);
    }
}

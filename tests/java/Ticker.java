import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.RandomAccessFile;

/**
 * Test program: prints "tick N" every 50 ms. Options:
 *   exit=N:CODE   exit with CODE after tick N
 *   echo          echo stdin lines as "echo: LINE"
 *   hold=FILE     keep FILE open for reading
 *   hup           print "got HUP" on SIGHUP
 *   pid           print "pid N" first
 *   load=LIB      copy LIB to java.io.tmpdir, load it, delete the copy (as Netty, JNA and
 *                 sqlite-jdbc do with their native libraries), print "loaded"
 *   loadhere=LIB  load LIB where it is (it stays mapped), print "loaded"
 *   loadkeep=LIB  copy LIB to java.io.tmpdir, load it, delete it at exit (deleteOnExit, as
 *                 lz4-java does), print "loaded PATH"
 */
public class Ticker {
    public static void main(String[] args) throws Exception {
        int exitAt = -1, exitCode = 0;
        RandomAccessFile held = null;
        for (String a : args) {
            if (a.startsWith("exit=")) {
                String[] p = a.substring(5).split(":");
                exitAt = Integer.parseInt(p[0]);
                exitCode = Integer.parseInt(p[1]);
            } else if (a.equals("echo")) {
                Thread t = new Thread(Ticker::echo, "echo");
                t.setDaemon(true);
                t.start();
            } else if (a.startsWith("hold=")) {
                held = new RandomAccessFile(a.substring(5), "r");
            } else if (a.equals("hup")) {
                sun.misc.Signal.handle(new sun.misc.Signal("HUP"), s -> System.out.println("got HUP"));
            } else if (a.startsWith("load=")) {
                java.nio.file.Path lib = java.nio.file.Files.createTempFile("libcrac-shim-test", ".so");
                java.nio.file.Files.copy(java.nio.file.Path.of(a.substring(5)), lib,
                        java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                System.load(lib.toString());
                java.nio.file.Files.delete(lib);
                System.out.println("loaded");
            } else if (a.startsWith("loadkeep=")) {
                // As lz4-java does: unpacked to the temp directory, loaded, deleted at exit.
                java.io.File lib = java.io.File.createTempFile("liblz4-java-", ".so");
                java.nio.file.Files.copy(java.nio.file.Path.of(a.substring(9)), lib.toPath(),
                        java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                lib.deleteOnExit();
                System.load(lib.getAbsolutePath());
                System.out.println("loaded " + lib);
            } else if (a.startsWith("loadhere=")) {
                System.load(a.substring(9));
                System.out.println("loaded");
            } else if (a.equals("pid")) {
                System.out.println("pid " + ProcessHandle.current().pid());
            }
        }
        Runtime.getRuntime().addShutdownHook(new Thread(() -> System.out.println("shutdown hook")));
        for (int i = 1; ; i++) {
            System.out.println("tick " + i);
            if (i == exitAt) {
                System.exit(exitCode);
            }
            Thread.sleep(50);
        }
    }

    static void echo() {
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in))) {
            String line;
            while ((line = in.readLine()) != null) {
                System.out.println("echo: " + line);
            }
            System.out.println("echo: EOF");
        } catch (Exception e) {
            System.out.println("echo failed: " + e);
        }
    }
}

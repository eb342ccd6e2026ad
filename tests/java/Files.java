import java.io.BufferedReader;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/**
 * Test program: writes "line N" to a file every 50 ms and prints "tick N".
 *   read=PATH     the file is opened for reading and kept open (only ticks)
 *   write=PATH    the file is opened for writing (truncated, not append)
 *   append=PATH   the file is opened for appending (a log)
 *   rewrite=PATH  a 16-byte record is rewritten in place at offset 0 every 20 ms (RandomAccessFile)
 *   then "lock"   the program locks the whole file (FileChannel.lock(), a POSIX lock)
 * A line "close" on stdin closes the file (then only ticks go on).
 */
public class Files {
    static volatile OutputStream out;

    public static void main(String[] args) throws Exception {
        String spec = args[0];
        if (spec.startsWith("rewrite=")) {
            java.io.RandomAccessFile record = new java.io.RandomAccessFile(spec.substring(8), "rw");
            for (int i = 1; ; i++) {
                record.seek(0);
                record.write(String.format("record %08d\n", i).getBytes(StandardCharsets.UTF_8));
                if (i % 5 == 0) {
                    System.out.println("tick " + (i / 5));
                }
                Thread.sleep(20);
            }
        }
        if (spec.startsWith("read=")) {
            java.io.FileInputStream kept = new java.io.FileInputStream(spec.substring(5));
            for (int i = 1; kept.getFD().valid(); i++) {
                System.out.println("tick " + i);
                Thread.sleep(50);
            }
        }
        boolean append = spec.startsWith("append=");
        String path = spec.substring(spec.indexOf('=') + 1);
        FileOutputStream file = new FileOutputStream(path, append);
        if (args.length > 1 && args[1].equals("lock")) {
            file.getChannel().lock();
            System.out.println("locked");
        }
        out = file;
        Thread commands = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in))) {
                String line;
                while ((line = in.readLine()) != null) {
                    if (line.equals("close")) {
                        OutputStream o = out;
                        out = null;
                        o.close();
                        System.out.println("closed");
                    }
                }
            } catch (Exception e) {
                System.out.println("commands failed: " + e);
            }
        });
        commands.setDaemon(true);
        commands.start();
        for (int i = 1; ; i++) {
            OutputStream o = out;
            if (o != null) {
                o.write(("line " + i + "\n").getBytes(StandardCharsets.UTF_8));
                o.flush();
            }
            System.out.println("tick " + i);
            Thread.sleep(50);
        }
    }
}

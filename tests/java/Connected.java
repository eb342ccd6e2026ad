import java.net.ServerSocket;
import java.net.Socket;

/**
 * Test program: holds an established loopback TCP connection (to itself), or with
 * {@code unix=PATH} a unix socket connection to another process; prints ticks.
 */
public class Connected {
    static Object keep;
    static Object pipe;

    public static void main(String[] args) throws Exception {
        if (args.length > 0 && args[0].startsWith("unix=")) {
            keep = java.nio.channels.SocketChannel.open(java.net.UnixDomainSocketAddress.of(args[0].substring(5)));
            for (int i = 1; ; i++) {
                System.out.println("tick " + i);
                Thread.sleep(50);
            }
        }
        if (args.length > 0 && args[0].equals("pipe")) {
            pipe = java.nio.channels.Pipe.open();
        }
        ServerSocket server = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress());
        Socket client = new Socket(server.getInetAddress(), server.getLocalPort());
        Socket accepted = server.accept();
        System.out.println("connected " + client.getLocalPort() + " " + accepted.getLocalPort());
        for (int i = 1; ; i++) {
            System.out.println("tick " + i);
            Thread.sleep(50);
            if (args.length > 0 && args[0].equals("close") && i == 1) {
                System.out.println("closing");
            }
        }
    }
}

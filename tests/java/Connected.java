import java.net.ServerSocket;
import java.net.Socket;

/** Test program: holds an established loopback TCP connection (CRIU refuses to dump it), ticks. */
public class Connected {
    public static void main(String[] args) throws Exception {
        ServerSocket server = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress());
        Socket client = new Socket(server.getInetAddress(), server.getLocalPort());
        Socket accepted = server.accept();
        System.out.println("connected " + client.getLocalPort() + " " + accepted.getLocalPort());
        for (int i = 1; ; i++) {
            System.out.println("tick " + i);
            Thread.sleep(50);
            if (args.length > 0 && i == 1) {
                System.out.println("closing");
            }
        }
    }
}

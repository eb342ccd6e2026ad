/** Test program: prints its pid, arguments, a property and stdin's first line; exits with a code. */
public class Args {
    public static void main(String[] args) throws Exception {
        System.out.println("pid=" + ProcessHandle.current().pid());
        for (String a : args) {
            System.out.println("arg=[" + a + "]");
        }
        System.out.println("prop=" + System.getProperty("prop"));
        if (args.length > 0 && args[0].equals("stdin")) {
            System.out.println("stdin=" + new java.io.BufferedReader(new java.io.InputStreamReader(System.in)).readLine());
        }
        System.err.println("to stderr");
        System.exit(Integer.getInteger("code", 0));
    }
}

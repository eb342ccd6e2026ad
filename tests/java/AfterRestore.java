/**
 * Test program: the main class given after -XX:CRaCRestoreFrom=DIR, run in the restored JVM
 * once afterRestore is done (CRaC's restore-time main class).
 */
public class AfterRestore {
    public static void main(String[] args) {
        System.out.println("after-restore main " + String.join("|", args) + " who="
                + System.getProperty("who") + " on " + Thread.currentThread().getName());
    }
}

import java.math.BigInteger;
import java.security.MessageDigest;
import java.util.Arrays;
import java.util.Random;
import java.util.zip.CRC32C;

/**
 * A JIT-heavy mix for measuring what restricting CPU features costs: SHA-256 and CRC32C
 * (intrinsics that use SHA/AVX/CLMUL), BigInteger arithmetic (BMI2/ADX), a floating-point
 * loop the JIT vectorizes (AVX/FMA), bit counting (POPCNT/LZCNT), sorting and string search.
 * Warms up for SECONDS, then prints "rounds N" after SECONDS more.
 */
public class Crunch {
    static long sink;

    public static void main(String[] args) throws Exception {
        double seconds = Double.parseDouble(args[0]);
        round(); // classes loaded
        long end = System.nanoTime() + (long) (seconds * 1e9);
        while (System.nanoTime() < end) {
            round();
        }
        long rounds = 0;
        end = System.nanoTime() + (long) (seconds * 1e9);
        while (System.nanoTime() < end) {
            round();
            rounds++;
        }
        System.out.println("rounds " + rounds + " sink " + (sink & 1));
    }

    static final byte[] DATA = new byte[1 << 18];
    static final double[] A = new double[1 << 14];
    static final double[] B = new double[1 << 14];
    static final int[] INTS = new int[1 << 14];
    static final String TEXT;

    static {
        Random r = new Random(7);
        r.nextBytes(DATA);
        for (int i = 0; i < A.length; i++) {
            A[i] = r.nextDouble();
            B[i] = r.nextDouble();
            INTS[i] = r.nextInt();
        }
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < 4000; i++) {
            b.append((char) ('a' + r.nextInt(26)));
        }
        TEXT = b.append("needle").toString();
    }

    static void round() throws Exception {
        sink += MessageDigest.getInstance("SHA-256").digest(DATA)[0];
        CRC32C crc = new CRC32C();
        crc.update(DATA);
        sink += crc.getValue();
        BigInteger x = BigInteger.valueOf(3).pow(2000).add(BigInteger.ONE);
        sink += x.multiply(x).modPow(BigInteger.valueOf(65537), BigInteger.TWO.pow(1024).subtract(BigInteger.ONE)).bitLength();
        double dot = 0;
        for (int i = 0; i < A.length; i++) {
            dot += A[i] * B[i];
            A[i] = A[i] * 0.999 + B[i] * 0.001;
        }
        sink += (long) dot;
        long bits = 0;
        for (int v : INTS) {
            bits += Integer.bitCount(v) + Integer.numberOfLeadingZeros(v) + Long.numberOfTrailingZeros(v);
        }
        sink += bits;
        int[] copy = Arrays.copyOf(INTS, 4096);
        Arrays.sort(copy);
        sink += copy[17] + TEXT.indexOf("needle");
    }
}

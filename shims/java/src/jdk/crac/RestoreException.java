package jdk.crac;

/** Something failed after a restore; the causes are the suppressed exceptions. */
public class RestoreException extends Exception {
    private static final long serialVersionUID = 1L;

    public RestoreException() {
        super();
    }

    public RestoreException(String message) {
        super(message);
    }
}

package jdk.crac;

/** A checkpoint did not happen; the causes are the suppressed exceptions. */
public class CheckpointException extends Exception {
    private static final long serialVersionUID = 1L;

    public CheckpointException() {
        super();
    }

    public CheckpointException(String message) {
        super(message);
    }
}

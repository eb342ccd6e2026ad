package jdk.crac;

/** A checkpoint did not happen; the causes are the nested (also suppressed) exceptions. */
public final class CheckpointException extends ExceptionBase {
    private static final long serialVersionUID = 1L;

    public CheckpointException() {
        super();
    }

    /** With the failures already known. */
    public CheckpointException(Throwable[] nested) {
        super(nested);
    }

    /** Kept from older CRaC builds, whose exceptions could carry a message. */
    public CheckpointException(String message) {
        super(message);
    }
}

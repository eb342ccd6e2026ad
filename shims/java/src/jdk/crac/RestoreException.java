package jdk.crac;

/** Something failed after a restore; the causes are the nested (also suppressed) exceptions. */
public final class RestoreException extends ExceptionBase {
    private static final long serialVersionUID = 1L;

    public RestoreException() {
        super();
    }

    /** With the failures already known. */
    public RestoreException(Throwable[] nested) {
        super(nested);
    }

    /** Kept from older CRaC builds, whose exceptions could carry a message. */
    public RestoreException(String message) {
        super(message);
    }
}

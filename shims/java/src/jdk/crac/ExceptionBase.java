package jdk.crac;

/**
 * What {@link CheckpointException} and {@link RestoreException} have in common: they gather
 * every failure of one checkpoint or restore as nested exceptions.
 *
 * <p>crac-shim: nested exceptions are also the exception's suppressed exceptions, because
 * the org.crac facade (and code written for older CRaC builds) reads them from there.
 */
public abstract class ExceptionBase extends Exception {
    private static final long serialVersionUID = 1L;

    ExceptionBase() {
        super();
    }

    ExceptionBase(String message) {
        super(message);
    }

    ExceptionBase(Throwable[] nested) {
        super();
        if (nested != null) {
            for (Throwable t : nested) {
                addNestedException(t);
            }
        }
    }

    /** Adds one failure. */
    public void addNestedException(Throwable throwable) {
        addSuppressed(throwable);
    }

    /** Every failure gathered, in the order they were added. */
    public Throwable[] getNestedExceptions() {
        return getSuppressed();
    }
}

package org.crac;

/** Stand-in for org.crac's RestoreException: the failures are its suppressed exceptions. */
public class RestoreException extends Exception {
    private static final long serialVersionUID = 1L;

    public RestoreException() {
    }
}

package org.crac;

/** Stand-in for org.crac's CheckpointException: the failures are its suppressed exceptions. */
public class CheckpointException extends Exception {
    private static final long serialVersionUID = 1L;

    public CheckpointException() {
    }
}

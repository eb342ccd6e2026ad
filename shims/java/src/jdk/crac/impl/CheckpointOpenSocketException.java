package jdk.crac.impl;

/** A checkpoint found an open socket it cannot save; the message describes it. */
public class CheckpointOpenSocketException extends Exception {
    private static final long serialVersionUID = 1L;

    public CheckpointOpenSocketException(String details) {
        super(details);
    }

    public CheckpointOpenSocketException(String details, Throwable cause) {
        super(details, cause);
    }
}

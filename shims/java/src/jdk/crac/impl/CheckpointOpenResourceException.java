package jdk.crac.impl;

/** A checkpoint found an open resource it cannot save; the message describes it. */
public class CheckpointOpenResourceException extends Exception {
    private static final long serialVersionUID = 1L;

    public CheckpointOpenResourceException(String details) {
        super(details);
    }

    public CheckpointOpenResourceException(String details, Throwable cause) {
        super(details, cause);
    }
}

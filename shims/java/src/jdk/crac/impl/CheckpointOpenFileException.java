package jdk.crac.impl;

/** A checkpoint found an open file it cannot save; the message describes it. */
public class CheckpointOpenFileException extends Exception {
    private static final long serialVersionUID = 1L;

    public CheckpointOpenFileException(String details) {
        super(details);
    }

    public CheckpointOpenFileException(String details, Throwable cause) {
        super(details, cause);
    }
}

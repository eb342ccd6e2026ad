package jdk.crac;

/**
 * A resource that notifies the resources registered in it. Contexts can be registered in
 * other contexts, making hierarchies.
 */
public abstract class Context<R extends Resource> implements Resource {
    protected Context() {
    }

    @Override
    public abstract void beforeCheckpoint(Context<? extends Resource> context) throws CheckpointException;

    @Override
    public abstract void afterRestore(Context<? extends Resource> context) throws RestoreException;

    /** Registers a resource to be notified by this context. */
    public abstract void register(R resource);
}

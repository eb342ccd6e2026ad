package jdk.crac;

/** Something that must be told before a checkpoint and after a restore. */
public interface Resource {
    /** Called before the checkpoint; release what cannot be checkpointed. */
    void beforeCheckpoint(Context<? extends Resource> context) throws Exception;

    /** Called after the restore (or after a failed checkpoint); reacquire it. */
    void afterRestore(Context<? extends Resource> context) throws Exception;
}

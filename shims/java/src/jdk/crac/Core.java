package jdk.crac;

import jdk.crac.impl.AgentLink;
import jdk.crac.impl.OrderedContext;

/**
 * The entry point of the API: the global context, and the checkpoint itself.
 *
 * <p>crac-shim implementation: the checkpoint is done by the crac-shim agent preloaded by
 * {@code crac-java -XX:CRaCCheckpointTo=DIR}; this class runs the notifications around it.
 */
public class Core {
    private static final Context<Resource> GLOBAL = new OrderedContext<>("global context", true);
    private static final Object LOCK = new Object();
    private static Thread checkpointing;

    private Core() {
    }

    /** The context every resource can be registered in; it holds resources weakly. */
    public static Context<Resource> getGlobalContext() {
        return GLOBAL;
    }

    /**
     * Notifies resources, checkpoints, and (in the restored process, or after a failed
     * checkpoint) notifies them again. Concurrent callers are served one after another.
     */
    public static void checkpointRestore() throws CheckpointException, RestoreException {
        synchronized (LOCK) {
            if (checkpointing == Thread.currentThread()) {
                CheckpointException e = new CheckpointException();
                e.addSuppressed(new IllegalStateException("Recursive checkpoint is not allowed"));
                throw e;
            }
            checkpointing = Thread.currentThread();
            try {
                checkpointRestore0();
            } finally {
                checkpointing = null;
            }
        }
    }

    /**
     * A main class given after {@code -XX:CRaCRestoreFrom=DIR}: its main runs here, on the
     * checkpointing thread, once afterRestore is done, as in CRaC. What it throws becomes
     * part of the RestoreException.
     */
    private static RestoreException runNewMain(RestoreException failure) {
        java.util.List<String> main = AgentLink.takeNewMain();
        if (main.isEmpty()) {
            return failure;
        }
        String[] args = main.subList(1, main.size()).toArray(new String[0]);
        try {
            Class<?> c = Class.forName(main.get(0), true, ClassLoader.getSystemClassLoader());
            java.lang.reflect.Method m = c.getDeclaredMethod("main", String[].class);
            m.setAccessible(true);
            m.invoke(null, (Object) args);
        } catch (java.lang.reflect.InvocationTargetException e) {
            return withFailure(failure, e.getCause());
        } catch (ReflectiveOperationException | RuntimeException e) {
            return withFailure(failure, e);
        }
        return failure;
    }

    private static RestoreException withFailure(RestoreException failure, Throwable t) {
        RestoreException e = failure != null ? failure : new RestoreException();
        e.addNestedException(t);
        return e;
    }

    private static void checkpointRestore0() throws CheckpointException, RestoreException {
        CheckpointException failure = null;
        try {
            GLOBAL.beforeCheckpoint(null);
        } catch (CheckpointException e) {
            failure = e;
        }
        if (failure == null) {
            String problem = AgentLink.checkpoint();
            if (problem != null) {
                failure = new CheckpointException();
                if (!AgentLink.isConfigured()) {
                    failure.addSuppressed(new RuntimeException("C/R is not configured"));
                } else {
                    for (Exception e : AgentLink.problems(problem)) {
                        failure.addSuppressed(e);
                    }
                }
            }
        } else if (!AgentLink.isConfigured()) {
            failure.addSuppressed(new RuntimeException("C/R is not configured"));
        }
        RestoreException restoreFailure = null;
        try {
            GLOBAL.afterRestore(null);
        } catch (RestoreException e) {
            restoreFailure = e;
        }
        // Files a policy reopens that the restore did not find, as a CRaC JDK reports them.
        for (String error : AgentLink.takeRestoreErrors()) {
            restoreFailure = withFailure(restoreFailure, new java.io.IOException(error));
        }
        if (failure == null) {
            AgentLink.timing("notified");
            restoreFailure = runNewMain(restoreFailure);
        }
        if (failure != null) {
            if (restoreFailure != null) {
                for (Throwable t : restoreFailure.getSuppressed()) {
                    failure.addSuppressed(t);
                }
            }
            throw failure;
        }
        if (restoreFailure != null) {
            throw restoreFailure;
        }
    }
}

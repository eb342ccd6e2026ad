package jdk.crac.impl;

import java.lang.ref.WeakReference;
import java.util.ArrayList;
import java.util.List;
import jdk.crac.CheckpointException;
import jdk.crac.Context;
import jdk.crac.Resource;
import jdk.crac.RestoreException;

/**
 * A context that notifies its resources in reverse registration order before a checkpoint
 * and in registration order after a restore, collecting every failure.
 */
public class OrderedContext<R extends Resource> extends Context<R> {
    private final String name;
    private final boolean weak;
    private final List<Object> entries = new ArrayList<>();

    public OrderedContext(String name, boolean weak) {
        this.name = name;
        this.weak = weak;
    }

    @Override
    public synchronized void register(R resource) {
        if (resource == null) {
            throw new NullPointerException("resource");
        }
        entries.add(weak ? new WeakReference<>(resource) : resource);
    }

    @SuppressWarnings("unchecked")
    private synchronized List<R> snapshot() {
        List<R> live = new ArrayList<>();
        entries.removeIf(e -> e instanceof WeakReference && ((WeakReference<?>) e).get() == null);
        for (Object e : entries) {
            Object r = e instanceof WeakReference ? ((WeakReference<?>) e).get() : e;
            if (r != null) {
                live.add((R) r);
            }
        }
        return live;
    }

    @Override
    public void beforeCheckpoint(Context<? extends Resource> context) throws CheckpointException {
        List<R> resources = snapshot();
        CheckpointException failure = null;
        for (int i = resources.size() - 1; i >= 0; i--) {
            try {
                resources.get(i).beforeCheckpoint(this);
            } catch (Exception e) {
                if (failure == null) {
                    failure = new CheckpointException();
                }
                addAll(failure, e, CheckpointException.class);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    @Override
    public void afterRestore(Context<? extends Resource> context) throws RestoreException {
        RestoreException failure = null;
        for (R r : snapshot()) {
            try {
                r.afterRestore(this);
            } catch (Exception e) {
                if (failure == null) {
                    failure = new RestoreException();
                }
                addAll(failure, e, RestoreException.class);
            }
        }
        if (failure != null) {
            throw failure;
        }
    }

    /** A nested context's collected failures are flattened into ours. */
    private static void addAll(Exception into, Exception e, Class<? extends Exception> collector) {
        if (collector.isInstance(e) && e.getSuppressed().length > 0 && e.getMessage() == null) {
            for (Throwable t : e.getSuppressed()) {
                into.addSuppressed(t);
            }
        } else {
            into.addSuppressed(e);
        }
    }

    @Override
    public String toString() {
        return "OrderedContext[" + name + "]";
    }
}

package org.crac;

/** Stand-in for org.crac's Context (see Resource). */
public abstract class Context<R extends Resource> implements Resource {
    protected Context() {
    }

    public abstract void register(R resource);
}

package org.crac;

/**
 * Test stand-in for the org.crac facade (org.crac 1.5 as published; frameworks cannot be
 * downloaded here). Written from its documented behaviour, not copied.
 */
public interface Resource {
    void beforeCheckpoint(Context<? extends Resource> context) throws Exception;

    void afterRestore(Context<? extends Resource> context) throws Exception;
}

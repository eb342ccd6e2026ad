package jdk.crac.impl;

import javax.management.MalformedObjectNameException;
import javax.management.ObjectName;
import jdk.crac.CheckpointException;
import jdk.crac.Core;
import jdk.crac.RestoreException;
import jdk.crac.management.CRaCMXBean;

/** The one {@link CRaCMXBean}. */
public final class CRaCImpl implements CRaCMXBean {
    /** CRaC's name for it. */
    public static final String OBJECT_NAME = "jdk.management:type=CRaC";
    public static final CRaCImpl INSTANCE = new CRaCImpl();

    private CRaCImpl() {
    }

    @Override
    public long getUptimeSinceRestore() {
        long started = AgentLink.restoreNanos();
        return started < 0 ? -1 : (System.nanoTime() - started) / 1_000_000;
    }

    @Override
    public long getRestoreTime() {
        return AgentLink.restoreTime();
    }

    @Override
    public void checkpointRestore() throws CheckpointException, RestoreException {
        Core.checkpointRestore();
    }

    @Override
    public ObjectName getObjectName() {
        try {
            return new ObjectName(OBJECT_NAME);
        } catch (MalformedObjectNameException e) {
            throw new IllegalStateException(e);
        }
    }
}
